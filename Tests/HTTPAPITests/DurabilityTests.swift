import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Testing
@testable import HTTPAPI

@Suite struct RestartAndConcurrencyTests {
    @Test func contentAndUploadSessionsSurviveARestart() async throws {
        let dir = tempDataDir()
        let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        let (location, image) = try await makeApp(dataDir: dir).test(.router) { client in
            let image = try await V2(client: client).pushImage("keep", tag: "v1", seed: "k")
            let location = try await V2(client: client).startUpload("keep")
            _ = try await client.execute(uri: location, method: .patch, body: buf(Array(data[..<100_000])))
            return (location, image)
        }
        try await makeApp(dataDir: dir).test(.router) { client in
            let get = try await client.execute(uri: "/v2/keep/manifests/v1", method: .get)
            #expect(Array(buffer: get.body) == image.bytes)
            let status = try await client.execute(uri: location, method: .get)
            #expect(status.status == .noContent && status.headers[.testRange] == "0-99999")
            _ = try await client.execute(uri: location, method: .patch, headers: [.testContentRange: "100000-299999"],
                                         body: buf(Array(data[100_000...])))
            #expect(try await client.execute(uri: location + "?digest=\(sha256(data))", method: .put).status == .created)
            #expect(Array(buffer: try await client.execute(uri: "/v2/keep/blobs/\(sha256(data))", method: .get).body) == data)
        }
    }

    @Test func concurrentPushesOfTheSameBlobAndTagHaveOneConsistentWinner() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let big = (0..<120_000).map { UInt8(truncatingIfNeeded: $0 &* 11) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await v2.pushBlob("race", big) }
                    group.addTask { try await v2.pushBlob("race", Array("small".utf8)) }
                }
                try await group.waitForAll()
            }
            #expect(Array(buffer: try await client.execute(uri: "/v2/race/blobs/\(sha256(big))", method: .get).body) == big)

            let digests = try await withThrowingTaskGroup(of: String.self) { group in
                for i in 0..<10 {
                    group.addTask { try await v2.pushImage("race", tag: "latest", seed: "\(i)").digest }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            let winner = try await client.execute(uri: "/v2/race/manifests/latest", method: .get)
            #expect(winner.status == .ok)
            let served = winner.headers[.testDigest]!
            #expect(digests.contains(served))
            #expect(sha256(Array(buffer: winner.body)) == served)
        }
    }
}
