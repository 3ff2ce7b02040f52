import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Testing
@testable import HTTPAPI

@Suite struct BaseAndHealthTests {
    @Test func baseEndpointAndProbes() async throws {
        try await makeApp().test(.router) { client in
            let r = try await client.execute(uri: "/v2/", method: .get)
            #expect(r.status == .ok)
            #expect(r.headers[.testAPIVersion] == "registry/2.0")
            #expect(try await client.execute(uri: "/v2", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/readyz", method: .get).status == .ok)
            let unknown = try await client.execute(uri: "/v3/", method: .get)
            #expect(unknown.status == .notFound)
        }
    }

    @Test func metricsExposeRequestsAndStoredBytes() async throws {
        try await makeApp().test(.router) { client in
            try await V2(client: client).pushBlob("m", Array("12345".utf8))
            _ = try await client.execute(uri: "/v2/", method: .get)
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(text.contains("berth_http_requests_total{route=\"base\",method=\"GET\",status=\"200\"} 1"))
            #expect(text.contains("berth_http_request_duration_seconds_bucket{route=\"upload_start\""))
            #expect(text.contains("berth_stored_bytes 5"))
            #expect(text.contains("berth_upload_sessions_open 0"))
            #expect(text.contains("berth_http_request_bytes_total 5"))
        }
    }

    @Test func metricsCarryTheBuildVersion() async throws {
        try await makeApp().test(.router) { client in
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(text.contains("berth_build_info{version=\"\(BerthVersion.string)\"} 1"))
            #expect(!BerthVersion.string.isEmpty)
        }
    }
}

@Suite struct BlobTests {
    @Test func monolithicPushThenGetHeadRangeDelete() async throws {
        try await makeApp().test(.router) { client in
            let data = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }   // above the inline threshold
            let small = Array("tiny".utf8)
            for bytes in [data, small] {
                let d = try await V2(client: client).pushBlob("lib/x", bytes)
                let get = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .get)
                #expect(get.status == .ok)
                #expect(Array(buffer: get.body) == bytes)
                #expect(get.headers[.testDigest] == d)
                #expect(get.headers[.contentLength] == String(bytes.count))
                let head = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .head)
                #expect(head.status == .ok && head.body.readableBytes == 0)
                #expect(head.headers[.contentLength] == String(bytes.count))
                let part = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .get, headers: [.testRange: "bytes=1-3"])
                #expect(part.status == .partialContent)
                #expect(Array(buffer: part.body) == Array(bytes[1...3]))
                #expect(part.headers[.testContentRange] == "bytes 1-3/\(bytes.count)")
                let suffix = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .get, headers: [.testRange: "bytes=-2"])
                #expect(Array(buffer: suffix.body) == Array(bytes.suffix(2)))
                let bad = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .get, headers: [.testRange: "bytes=\(bytes.count)-"])
                #expect(bad.status == .rangeNotSatisfiable)
                #expect(bad.headers[.testContentRange] == "bytes */\(bytes.count)")
                // a blob is only readable in repositories it was pushed or mounted into
                #expect(try await client.execute(uri: "/v2/other/blobs/\(d)", method: .get).status == .notFound)
                let del = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .delete)
                #expect(del.status == .accepted)
                let gone = try await client.execute(uri: "/v2/lib/x/blobs/\(d)", method: .get)
                #expect(gone.status == .notFound && errorCode(gone) == "BLOB_UNKNOWN")
            }
        }
    }

    @Test func chunkedUploadWithStatusAndOutOfOrderChunks() async throws {
        try await makeApp().test(.router) { client in
            let data = (0..<150_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            let location = try await V2(client: client).startUpload("chunky")
            let first = try await client.execute(uri: location, method: .patch,
                                                 headers: [.testContentRange: "0-99999", .contentLength: "100000"],
                                                 body: buf(Array(data[0..<100_000])))
            #expect(first.status == .accepted)
            #expect(first.headers[.testRange] == "0-99999")
            #expect(first.headers[.testUploadUUID] != nil)
            let status = try await client.execute(uri: location, method: .get)
            #expect(status.status == .noContent && status.headers[.testRange] == "0-99999")
            // overlapping and out-of-order chunks are refused with 416
            let overlap = try await client.execute(uri: location, method: .patch,
                                                   headers: [.testContentRange: "50000-50009"], body: buf(Array(repeating: 1, count: 10)))
            #expect(overlap.status == .rangeNotSatisfiable)
            // with the upload's current Range, to resume from
            #expect(overlap.headers[.testRange] == "0-99999")
            let gap = try await client.execute(uri: location, method: .patch,
                                               headers: [.testContentRange: "100010-100019"], body: buf(Array(repeating: 1, count: 10)))
            #expect(gap.status == .rangeNotSatisfiable && gap.headers[.testRange] == "0-99999")
            // final chunk carried by the PUT
            let done = try await client.execute(uri: location + "?digest=\(sha256(data))", method: .put,
                                                headers: [.testContentRange: "100000-149999", .contentLength: "50000"],
                                                body: buf(Array(data[100_000...])))
            #expect(done.status == .created)
            #expect(done.headers[.location] == "/v2/chunky/blobs/\(sha256(data))")
            let get = try await client.execute(uri: "/v2/chunky/blobs/\(sha256(data))", method: .get)
            #expect(Array(buffer: get.body) == data)
            // the session is finished: PATCH and status now answer BLOB_UPLOAD_UNKNOWN
            let after = try await client.execute(uri: location, method: .patch, body: buf([1]))
            #expect(after.status == .notFound && errorCode(after) == "BLOB_UPLOAD_UNKNOWN")
        }
    }

    @Test func streamedPatchWithoutContentRangeAndEmptyPut() async throws {
        try await makeApp().test(.router) { client in
            let data = Array("streamed-body".utf8)
            let location = try await V2(client: client).startUpload("s")
            #expect(try await client.execute(uri: location, method: .patch, body: buf(data)).status == .accepted)
            let done = try await client.execute(uri: location + "?digest=\(sha256(data))", method: .put)
            #expect(done.status == .created)
            #expect(Array(buffer: try await client.execute(uri: "/v2/s/blobs/\(sha256(data))", method: .get).body) == data)
        }
    }

    @Test func digestMismatchRemovesTheUploadAndNothingIsVisible() async throws {
        try await makeApp().test(.router) { client in
            let data = Array(repeating: UInt8(9), count: 100_000)
            let claimed = sha256(Array("something else".utf8))
            let location = try await V2(client: client).startUpload("mm")
            _ = try await client.execute(uri: location, method: .patch, body: buf(data))
            let put = try await client.execute(uri: location + "?digest=\(claimed)", method: .put)
            #expect(put.status == .badRequest && errorCode(put) == "DIGEST_INVALID")
            #expect(try await client.execute(uri: "/v2/mm/blobs/\(claimed)", method: .head).status == .notFound)
            #expect(try await client.execute(uri: "/v2/mm/blobs/\(sha256(data))", method: .head).status == .notFound)
            #expect(try await client.execute(uri: location, method: .get).status == .notFound)
            // monolithic variant, small body
            let mono = try await client.execute(uri: "/v2/mm/blobs/uploads/?digest=\(claimed)", method: .post,
                                                headers: [.contentLength: "3"], body: buf([1, 2, 3]))
            #expect(mono.status == .badRequest && errorCode(mono) == "DIGEST_INVALID")
            #expect(try await client.execute(uri: "/v2/mm/blobs/\(claimed)", method: .head).status == .notFound)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            #expect(metrics.contains("berth_upload_sessions_open 0"))
        }
    }

    @Test func badDigestsAndSizes() async throws {
        try await makeApp().test(.router) { client in
            let location = try await V2(client: client).startUpload("d")
            for bad in ["sha256:xyz", "nonsense", "sha256:" + String(repeating: "A", count: 64)] {
                let r = try await client.execute(uri: location + "?digest=\(bad)", method: .put)
                #expect(r.status == .badRequest && errorCode(r) == "DIGEST_INVALID")
            }
            let unsupported = try await client.execute(uri: "/v2/d/blobs/sha384:" + String(repeating: "a", count: 96), method: .get)
            #expect(unsupported.status == .badRequest && errorCode(unsupported) == "UNSUPPORTED")
            let missing = try await client.execute(uri: location, method: .put)
            #expect(missing.status == .badRequest && errorCode(missing) == "DIGEST_INVALID")
            // a body shorter or longer than its declared size
            let data = Array(repeating: UInt8(1), count: 10)
            let short = try await client.execute(uri: "/v2/d/blobs/uploads/?digest=\(sha256(data))", method: .post,
                                                 headers: [.contentLength: "10"], body: buf(Array(data[0..<5])))
            #expect(short.status.code >= 400)
            #expect(try await client.execute(uri: "/v2/d/blobs/\(sha256(data))", method: .head).status == .notFound)
            let mismatch = try await client.execute(uri: location, method: .patch,
                                                    headers: [.testContentRange: "0-9", .contentLength: "5"], body: buf([1, 2, 3, 4, 5]))
            #expect(mismatch.status == .rangeNotSatisfiable)
        }
    }

    @Test func unknownSessionsAndCancel() async throws {
        try await makeApp().test(.router) { client in
            let unknown = "/v2/u/blobs/uploads/00000000-0000-0000-0000-000000000000"
            for method in [HTTPRequest.Method.get, .patch, .put, .delete] {
                let r = try await client.execute(uri: unknown + (method == .put ? "?digest=\(sha256([]))" : ""), method: method)
                #expect(r.status == .notFound && errorCode(r) == "BLOB_UPLOAD_UNKNOWN")
            }
            let hostile = try await client.execute(uri: "/v2/u/blobs/uploads/..%2F..%2Fetc", method: .get)
            #expect(hostile.status == .notFound)
            let location = try await V2(client: client).startUpload("u")
            // a session belongs to the repository that opened it
            let foreign = location.replacingOccurrences(of: "/v2/u/", with: "/v2/other/")
            #expect(try await client.execute(uri: foreign, method: .get).status == .notFound)
            #expect(try await client.execute(uri: location, method: .delete).status == .noContent)
            #expect(try await client.execute(uri: location, method: .get).status == .notFound)
        }
    }

    @Test func crossRepositoryMount() async throws {
        try await makeApp().test(.router) { client in
            let d = try await V2(client: client).pushBlob("src", Array(repeating: 5, count: 70_000))
            let mounted = try await client.execute(uri: "/v2/dst/blobs/uploads/?mount=\(d)&from=src", method: .post)
            #expect(mounted.status == .created)
            #expect(mounted.headers[.location] == "/v2/dst/blobs/\(d)")
            #expect(try await client.execute(uri: "/v2/dst/blobs/\(d)", method: .head).status == .ok)
            // not mountable: falls back to an upload session
            for query in ["mount=\(d)&from=nowhere", "mount=\(sha256([1]))&from=src", "mount=\(d)"] {
                let fallback = try await client.execute(uri: "/v2/third/blobs/uploads/?\(query)", method: .post)
                #expect(fallback.status == .accepted)
                #expect(fallback.headers[.location]?.hasPrefix("/v2/third/blobs/uploads/") == true)
            }
            #expect(try await client.execute(uri: "/v2/third/blobs/\(d)", method: .head).status == .notFound)
        }
    }

    @Test func sha512Blobs() async throws {
        try await makeApp().test(.router) { client in
            for data in [Array("short".utf8), Array(repeating: UInt8(3), count: 90_000)] {
                let d = Digest.compute(data, algorithm: .sha512).string
                let location = try await V2(client: client).startUpload("s5")
                _ = try await client.execute(uri: location, method: .patch, body: buf(data))
                #expect(try await client.execute(uri: location + "?digest=\(d)", method: .put).status == .created)
                let get = try await client.execute(uri: "/v2/s5/blobs/\(d)", method: .get)
                #expect(Array(buffer: get.body) == data && get.headers[.testDigest] == d)
            }
        }
    }

    @Test func invalidRepositoryNames() async throws {
        try await makeApp().test(.router) { client in
            let d = sha256([1])
            for name in ["UPPER", "a//b", "a/../b", "..", "-x", String(repeating: "a", count: 256), "a/%2e%2e/b"] {
                let r = try await client.execute(uri: "/v2/\(name)/blobs/\(d)", method: .get)
                #expect(r.status == .badRequest, "\(name)")
                #expect(errorCode(r) == "NAME_INVALID", "\(name)")
            }
            let abs = try await client.execute(uri: "/v2//etc/passwd/manifests/latest", method: .get)
            #expect(abs.status == .badRequest && errorCode(abs) == "NAME_INVALID")
        }
    }

    @Test func tooManyConcurrentUploadsIs429() async throws {
        var limits = RegistryResponder.Limits()
        limits.maxConcurrentUploads = 0
        try await makeApp(limits: limits).test(.router) { client in
            let r = try await client.execute(uri: "/v2/x/blobs/uploads/", method: .post)
            #expect(r.status == .tooManyRequests && errorCode(r) == "TOOMANYREQUESTS")
        }
    }
}
