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
            let id = try await registry.openPrivateUpload(repository, digest: Digest.compute(Array("a partial copy".utf8))).id
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

    /// A partial copy of a blob that a client then pushes into the same repository counts once,
    /// as stored; and `/v2/` cannot reach the private session by its id.
    @Test func aPartialCopyOfABlobPushedSinceCountsOnce() async throws {
        let (app, _, registry) = try await makeSecuredServer()
        try await app.test(.router) { client in
            func team() async throws -> BerthAPIContract.QuotaView? {
                let answer = try await client.execute(uri: "/api/v1/quotas", method: .get, headers: owner)
                #expect(answer.status == .ok)
                return try JSONDecoder().decode([BerthAPIContract.QuotaView].self, from: Data(buffer: answer.body)).first { $0.name == "team" }
            }
            let created = try await client.execute(uri: "/api/v1/quotas", method: .post, headers: owner,
                                                   body: ByteBuffer(string: #"{"name":"team","prefix":"team/","limitBytes":1000000}"#))
            #expect(created.status == .created)
            let repository = try RepositoryName("team/app")
            let layer = [UInt8](repeating: 5, count: 200_000)
            let digest = Digest.compute(layer)
            let id = try await registry.openPrivateUpload(repository, digest: digest).id
            _ = try await registry.appendUpload(repository, id, rangeStart: 0, privately: true, body: AsyncStream { c in
                c.yield(ByteBuffer(bytes: layer.prefix(80_000)))
                c.finish()
            })
            #expect(try await team()?.partialBytes == 80_000)
            for method in [HTTPRequest.Method.get, .patch, .put, .delete] {
                let reached = try await client.execute(uri: "/v2/team/app/blobs/uploads/\(id)?digest=\(digest)", method: method,
                                                       headers: owner, body: ByteBuffer(bytes: [1]))
                #expect(reached.status == .notFound, "\(method)")
                #expect(String(buffer: reached.body).contains("BLOB_UPLOAD_UNKNOWN"), "\(method)")
            }
            #expect(try await registry.uploadStatus(repository, id, privately: true).size == 80_000)
            let pushed = try await client.execute(uri: "/v2/team/app/blobs/uploads/?digest=\(digest)", method: .post, headers: owner,
                                                  body: ByteBuffer(bytes: layer))
            #expect(pushed.status == .created)
            let view = try await team()
            #expect(view?.usedBytes == 200_000 && view?.partialBytes == 0)
        }
    }
}
