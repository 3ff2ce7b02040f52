import Foundation
import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import Testing
@testable import S3Storage

/// The client against a scripted stand-in for an object store, for the answers a healthy Ceph does
/// not give on demand: SlowDown and 5xx (retried with backoff), errors hidden in a 200, truncated
/// XML, a body that ends early.
@Suite struct S3ClientStubTests {
    struct Answer: Sendable {
        var status: HTTPResponse.Status
        var body: String = ""
    }

    final class Script: Sendable {
        let answers: NIOLockedValueBox<[Answer]>
        let requests = NIOLockedValueBox<[String]>([])
        let bodies = NIOLockedValueBox<[[UInt8]]>([])
        init(_ answers: [Answer]) { self.answers = NIOLockedValueBox(answers) }
    }

    struct Stub: RouterMiddleware {
        typealias Context = BasicRequestContext
        let script: Script
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            script.requests.withLockedValue { $0.append("\(request.method) \(request.uri.path)") }
            let body = try await request.body.collect(upTo: 64 << 20)
            script.bodies.withLockedValue { $0.append(Array(body.readableBytesView)) }
            let answer = script.answers.withLockedValue { $0.isEmpty ? Answer(status: .internalServerError) : $0.removeFirst() }
            return Response(status: answer.status, headers: [.contentType: "application/xml", .eTag: "\"e\""],
                            body: .init(byteBuffer: ByteBuffer(string: answer.body)))
        }
    }

    static func error(_ code: String) -> String { "<?xml version=\"1.0\"?><Error><Code>\(code)</Code><Message>m</Message></Error>" }

    func run(_ answers: [Answer], _ body: @Sendable (S3Client, Script) async throws -> Void) async throws {
        let script = Script(answers)
        let router = Router()
        router.add(middleware: Stub(script: script))
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let location = try S3Location(endpoint: "http://127.0.0.1:\(port)", region: "us-east-1", bucket: "bucket",
                                          credentials: S3Credentials(accessKey: "a", secretKey: "s"))
            try await body(S3Client(location: location, attempts: 4, backoff: .milliseconds(1)), script)
        }
    }

    @Test func slowDownAndServerErrorsAreRetriedThenSucceed() async throws {
        try await run([Answer(status: .serviceUnavailable, body: Self.error("SlowDown")),
                       Answer(status: .internalServerError, body: Self.error("InternalError")),
                       Answer(status: .ok)]) { client, script in
            try await client.putObject("k", body: ByteBuffer(string: "x"))
            #expect(script.requests.withLockedValue { $0 } == Array(repeating: "PUT /bucket/k", count: 3))
        }
    }

    @Test func retriesEndAndTheLastErrorIsReported() async throws {
        try await run(Array(repeating: Answer(status: .serviceUnavailable, body: Self.error("SlowDown")), count: 6)) { client, script in
            await #expect(throws: S3Error.service(status: 503, code: "SlowDown", operation: "PutObject")) {
                try await client.putObject("k", body: ByteBuffer(string: "x"))
            }
            #expect(script.requests.withLockedValue { $0.count } == 4)
        }
    }

    @Test func refusalsAreNotRetried() async throws {
        try await run([Answer(status: .forbidden, body: Self.error("SignatureDoesNotMatch"))]) { client, script in
            await #expect(throws: S3Error.signatureMismatch) { try await client.deleteObject("k") }
            #expect(script.requests.withLockedValue { $0.count } == 1)
        }
    }

    @Test func anErrorInsideA200IsAnError() async throws {
        try await run([Answer(status: .ok, body: Self.error("InternalError"))]) { client, _ in
            await #expect(throws: S3Error.self) {
                try await client.completeMultipartUpload("k", uploadID: "u", parts: [(1, "\"e\"")])
            }
        }
    }

    @Test func truncatedOrHostileXMLIsAClearError() async throws {
        try await run([Answer(status: .ok, body: "<?xml version=\"1.0\"?><ListBucketResult><Contents><Key>a</Key>"),
                       Answer(status: .ok, body: "<!DOCTYPE x [<!ENTITY a \"b\">]><ListBucketResult/>"),
                       Answer(status: .ok, body: "<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>"),
                       Answer(status: .ok, body: "<InitiateMultipartUploadResult></InitiateMultipartUploadResult>")]) { client, _ in
            for expected in ["not closed", "DOCTYPE", "without Key, Size or LastModified"] {
                await #expect {
                    try await client.listObjects(prefix: "p")
                } throws: { error in
                    guard case S3Error.malformedResponse(let reason) = error else { return false }
                    return reason.contains(expected)
                }
            }
            await #expect(throws: S3Error.malformedResponse("CreateMultipartUpload: no UploadId")) {
                try await client.createMultipartUpload("k")
            }
        }
    }

    /// A part the store does not take (after retries) fails the PATCH, and what is kept is exactly
    /// what the live hasher hashed: the bytes before the part, stored as the tail.
    @Test func aFailedPartKeepsBytesAndHashInStep() async throws {
        let failing = Array(repeating: Answer(status: .internalServerError, body: Self.error("InternalError")), count: 4)
        try await run([Answer(status: .ok, body: "<InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>")]
                      + failing + [Answer(status: .ok)]) { client, script in
            let store = try await S3TestService.store(prefix: "p", client: client)
            let part = S3BlobStore.minimumPartSize
            let data = (0..<(part + 100)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let id = UUID().uuidString.lowercased()
            let chunks = AsyncStream<ByteBuffer> { c in
                for start in stride(from: 0, to: data.count, by: 1_048_583) {
                    c.yield(ByteBuffer(bytes: data[start..<min(start + 1_048_583, data.count)]))
                }
                c.finish()
            }
            // The upload's session is in the metadata store: creating it sends nothing to the bucket.
            try await store.createUpload(id: id, owner: "r")
            await #expect(throws: S3Error.service(status: 500, code: "InternalError", operation: "UploadPart")) {
                _ = try await store.append(id: id, offset: 0, body: chunks, limit: nil)
            }
            let requests = script.requests.withLockedValue { $0 }
            #expect(requests.first == "POST /bucket/p/uploads/\(id)/data")
            #expect(requests.last?.hasPrefix("PUT /bucket/p/uploads/\(id)/tail-") == true)
            let bodies = script.bodies.withLockedValue { $0 }
            #expect(bodies.last == Array(data[..<part]))
            let saved = try #require(try await store.loadState(id)).state
            #expect(saved.size == Int64(part) && saved.tailSize == Int64(part) && saved.multipartID == "u1" && saved.parts.isEmpty)
            #expect(saved.tailSHA256 == sha256Hex(Array(data[..<part])))
            // The reserved part number is never used again, though no part was recorded under it.
            #expect(saved.lastPartNumber == 1)
            let live = try #require(store.liveHash(id))
            #expect(live.size == Int64(part))
            #expect(live.hasher?.finalize() == Digest.compute(data[..<part]))
        }
    }

    @Test func aRangedGetThatEndsEarlyIsAnError() async throws {
        try await run([Answer(status: .partialContent, body: "abc"), Answer(status: .notFound)]) { client, _ in
            await #expect(throws: S3Error.malformedResponse("GetObject: 3 of 10 bytes arrived")) {
                try await client.getObject("k", range: 0..<10) { _ in }
            }
            await #expect(throws: S3Error.notFound(code: "NotFound")) {
                try await client.getObject("k", range: 0..<10) { _ in }
            }
        }
    }
}


