import Hummingbird
import HummingbirdTesting
import NIOConcurrencyHelpers
import NIOCore
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
        init(_ answers: [Answer]) { self.answers = NIOLockedValueBox(answers) }
    }

    struct Stub: RouterMiddleware {
        typealias Context = BasicRequestContext
        let script: Script
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            script.requests.withLockedValue { $0.append("\(request.method) \(request.uri.path)") }
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
