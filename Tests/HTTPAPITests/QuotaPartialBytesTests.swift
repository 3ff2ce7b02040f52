import Access
import Backends
import RegistryStore
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import Testing
@testable import HTTPAPI

/// `GET /api/v1/quotas` shows, per quota, the bytes imports' partial copies (private upload
/// sessions kept for a re-run) hold under it, apart from the stored bytes.
@Suite struct QuotaPartialBytesTests {
    @Test func aQuotaShowsThePartialBytesKeptUnderIt() async throws {
        let (app, _, registry) = try await makeSecuredServer()
        try await app.test(.router) { client in
            func quotas() async throws -> [String: BerthAPIContract.QuotaView] {
                let answer = try await client.execute(uri: "/api/v1/quotas", method: .get, headers: owner)
                #expect(answer.status == .ok)
                let list = try JSONDecoder().decode([BerthAPIContract.QuotaView].self, from: Data(buffer: answer.body))
                return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
            }
            for (name, prefix) in [("team", "team/"), ("others", "others/")] {
                let created = try await client.execute(uri: "/api/v1/quotas", method: .post, headers: owner,
                                                       body: ByteBuffer(string: #"{"name":"\#(name)","prefix":"\#(prefix)","limitBytes":1000000}"#))
                #expect(created.status == .created)
            }
            let repository = try RepositoryName("team/app")
            let id = Digest.compute(Array("a partial copy".utf8)).hex
            _ = try await registry.openPrivateUpload(repository, id: id)
            let bytes = [UInt8](repeating: 7, count: 123_456)
            _ = try await registry.appendUpload(repository, id, rangeStart: 0, privately: true, body: AsyncStream { c in
                c.yield(ByteBuffer(bytes: bytes))
                c.finish()
            })
            // An ordinary (/v2/) upload is not a kept partial copy.
            let ordinary = try await registry.startUpload(repository)
            _ = try await registry.appendUpload(repository, ordinary.id, rangeStart: 0, body: AsyncStream { c in
                c.yield(ByteBuffer(bytes: [1, 2, 3]))
                c.finish()
            })
            var shown = try await quotas()
            #expect(shown["team"]?.partialBytes == 123_456 && shown["team"]?.usedBytes == 0)
            #expect(shown["others"]?.partialBytes == 0)
            try await registry.cancelUpload(repository, id, privately: true)
            shown = try await quotas()
            #expect(shown["team"]?.partialBytes == 0)
        }
    }
}
