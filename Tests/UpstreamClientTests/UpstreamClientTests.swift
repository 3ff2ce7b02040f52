import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import OCIModel
import Testing
@testable import UpstreamClient

/// The upstream client against scripted upstreams on loopback, most of them hostile.
@Suite struct UpstreamClientTests {
    /// A request the scripted upstream saw.
    struct Seen: Sendable {
        var path: String
        var authorization: String?
    }

    /// Runs `body` with a loopback upstream answering every GET through `script`.
    static func withUpstream(_ script: @escaping @Sendable (String, HTTPFields, Int) -> Response,
                             _ body: @Sendable (Int, NIOLockedValueBox<[Seen]>) async throws -> Void) async throws {
        let seen = NIOLockedValueBox<[Seen]>([])
        let port = NIOLockedValueBox<Int>(0)
        let router = Router()
        router.get("**") { request, _ -> Response in
            let path = request.uri.string
            seen.withLockedValue { $0.append(Seen(path: path, authorization: request.headers[.authorization])) }
            return script(path, request.headers, port.withLockedValue { $0 })
        }
        var logger = Logger(label: "upstream")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            let p = try #require(client.port)
            port.withLockedValue { $0 = p }
            try await body(p, seen)
        }
    }

    static let loopbackOnly = try! OutboundPolicy(allow: "127.0.0.1/32")

    static func client(_ port: Int, credentials: UpstreamCredentials? = nil, policy: OutboundPolicy = loopbackOnly,
                       limits: UpstreamLimits = UpstreamLimits()) throws -> UpstreamClient {
        try UpstreamClient(registry: "127.0.0.1:\(port)", plainHTTP: true, credentials: credentials, policy: policy, limits: limits)
    }

    static func json(_ text: String, type: String = MediaType.ociManifest) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static let layer = Array("hello layer".utf8)
    static var layerDigest: Digest { Digest.compute(layer) }
    static var manifestText: String {
        """
        {"schemaVersion":2,"mediaType":"\(MediaType.ociManifest)","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(layerDigest)","size":\(layer.count)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\(layerDigest)","size":\(layer.count)}]}
        """
    }

    static func collect(_ stream: VerifiedBlobStream) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await chunk in stream { bytes += chunk.readableBytesView }
        return bytes
    }

    @Test func tokenAuthFetchesManifestAndBlobWithBasicCredentialsAtTheRealm() async throws {
        try await Self.withUpstream({ path, headers, port in
            if path.hasPrefix("/token") {
                guard headers[.authorization] == UpstreamCredentials(username: "u", password: "p").basic,
                      path.contains("scope=repository:lib/app:pull"), path.contains("service=up") else { return Response(status: .unauthorized) }
                return Self.json(#"{"token":"t0k"}"#, type: "application/json")
            }
            guard headers[.authorization] == "Bearer t0k" else {
                var h = HTTPFields()
                h[.wwwAuthenticate] = #"Bearer realm="http://127.0.0.1:\#(port)/token",service="up",scope="repository:lib/app:pull""#
                return Response(status: .unauthorized, headers: h)
            }
            if path == "/v2/lib/app/manifests/v1" { return Self.json(Self.manifestText) }
            if path == "/v2/lib/app/blobs/\(Self.layerDigest)" {
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: Self.layer)))
            }
            return Response(status: .notFound)
        }) { port, seen in
            let client = try Self.client(port, credentials: .init(username: "u", password: "p"))
            let manifest = try await client.manifest(repository: "lib/app", reference: .tag("v1"))
            #expect(manifest.digest == Digest.compute(Array(Self.manifestText.utf8)))
            #expect(manifest.mediaType == MediaType.ociManifest)
            let bytes = try await client.blob(repository: "lib/app", digest: Self.layerDigest, size: Int64(Self.layer.count)) {
                try await Self.collect($0)
            }
            #expect(bytes == Self.layer)
            // One challenge, one token, reused for the blob.
            #expect(client.requestCount("token") == 1)
            #expect(seen.withLockedValue { $0 }.filter { $0.path.hasPrefix("/token") }.count == 1)
        }
    }

    @Test func aBlobWithTheWrongContentFailsTheStreamBeforeItEnds() async throws {
        try await Self.withUpstream({ _, _, _ in
            Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "not the layer")))
        }) { port, _ in
            let client = try Self.client(port)
            let received = NIOLockedValueBox<Int>(0)
            await #expect {
                _ = try await client.blob(repository: "lib/app", digest: Self.layerDigest, size: nil) { stream in
                    for try await chunk in stream { received.withLockedValue { $0 += chunk.readableBytes } }
                }
            } throws: { ($0 as? UpstreamError)?.kind == .digestMismatch }
            // With the size known, a length that differs is refused before any byte is read.
            await #expect {
                _ = try await client.blob(repository: "lib/app", digest: Self.layerDigest, size: Int64(Self.layer.count)) { stream in
                    try await Self.collect(stream)
                }
            } throws: { ($0 as? UpstreamError)?.kind == .digestMismatch }
        }
    }

    @Test func aManifestByDigestMustHaveThatDigest() async throws {
        try await Self.withUpstream({ _, _, _ in Self.json(Self.manifestText) }) { port, _ in
            let client = try Self.client(port)
            let other = Digest.compute(Array("other".utf8))
            await #expect {
                _ = try await client.manifest(repository: "lib/app", reference: .digest(other))
            } throws: { ($0 as? UpstreamError)?.kind == .digestMismatch }
        }
    }

    @Test func aManifestWhoseStatedDigestDiffersIsRefused() async throws {
        try await Self.withUpstream({ _, _, _ in
            var h = HTTPFields()
            h[.contentType] = MediaType.ociManifest
            h[HTTPField.Name("Docker-Content-Digest")!] = Digest.compute(Array("x".utf8)).string
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(string: Self.manifestText)))
        }) { port, _ in
            await #expect {
                _ = try await Self.client(port).manifest(repository: "lib/app", reference: .tag("v1"))
            } throws: { ($0 as? UpstreamError)?.kind == .digestMismatch }
        }
    }

    @Test func anOversizedManifestIsRefused() async throws {
        let limits = { var l = UpstreamLimits(); l.maxManifestBytes = 4096; return l }()
        let big = String(repeating: " ", count: 8192) + Self.manifestText
        try await Self.withUpstream({ path, _, _ in
            // One answer states its length, the other streams in chunks without one.
            if path.hasSuffix("/chunked") {
                let bytes = Array(big.utf8)
                let chunks = AsyncStream<ByteBuffer> { continuation in
                    for start in stride(from: 0, to: bytes.count, by: 1000) {
                        continuation.yield(ByteBuffer(bytes: bytes[start..<min(start + 1000, bytes.count)]))
                    }
                    continuation.finish()
                }
                return Response(status: .ok, body: .init(asyncSequence: chunks))
            }
            return Self.json(big)
        }) { port, _ in
            let client = try Self.client(port, limits: limits)
            for tag in ["stated", "chunked"] {
                await #expect {
                    _ = try await client.manifest(repository: "lib/app", reference: .tag(tag))
                } throws: { ($0 as? UpstreamError)?.kind == .tooLarge }
            }
        }
    }

    @Test func aRedirectLoopAndALongChainAreCutShort() async throws {
        try await Self.withUpstream({ path, _, _ in
            var h = HTTPFields()
            if path.contains("/manifests/loop") { h[.location] = "/v2/lib/app/manifests/loop2" }
            else if path.contains("/manifests/loop2") { h[.location] = "/v2/lib/app/manifests/loop" }
            else if let n = path.split(separator: "-").last.flatMap({ Int($0) }) { h[.location] = "/v2/lib/app/manifests/chain-\(n + 1)" }
            return Response(status: .found, headers: h)
        }) { port, seen in
            let client = try Self.client(port)
            await #expect {
                _ = try await client.manifest(repository: "lib/app", reference: .tag("loop"))
            } throws: { ($0 as? UpstreamError)?.kind == .redirects }
            #expect(seen.withLockedValue { $0 }.count == 2)
            await #expect {
                _ = try await client.manifest(repository: "lib/app", reference: .tag("chain-0"))
            } throws: { ($0 as? UpstreamError)?.kind == .redirects }
            // The first request and `maxRedirects` redirects, no more.
            #expect(seen.withLockedValue { $0 }.count == 2 + 1 + client.limits.maxRedirects)
        }
    }

    @Test func aRedirectToAPrivateAddressIsRefused() async throws {
        try await Self.withUpstream({ _, _, _ in
            var h = HTTPFields()
            h[.location] = "http://10.1.2.3/blob"
            return Response(status: .temporaryRedirect, headers: h)
        }) { port, _ in
            await #expect {
                _ = try await Self.client(port).blob(repository: "lib/app", digest: Self.layerDigest, size: nil) { try await Self.collect($0) }
            } throws: { error in
                guard let e = error as? UpstreamError else { return false }
                return e.kind == .refused && e.message.contains("10.1.2.3")
            }
        }
    }

    @Test func authorizationIsNotSentAcrossAnotherOrigin() async throws {
        try await Self.withUpstream({ path, headers, port in
            if path.hasPrefix("/cdn") { return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: Self.layer))) }
            guard headers[.authorization] != nil else {
                var h = HTTPFields()
                h[.wwwAuthenticate] = #"Basic realm="up""#
                return Response(status: .unauthorized, headers: h)
            }
            var h = HTTPFields()
            h[.location] = "http://localhost:\(port)/cdn/blob"   // the same server under another host name
            return Response(status: .temporaryRedirect, headers: h)
        }) { port, seen in
            let policy = try OutboundPolicy(allow: "127.0.0.1/32, ::1/128, localhost")
            let client = try Self.client(port, credentials: .init(username: "u", password: "secret"), policy: policy)
            let bytes = try await client.blob(repository: "lib/app", digest: Self.layerDigest, size: nil) { try await Self.collect($0) }
            #expect(bytes == Self.layer)
            let all = seen.withLockedValue { $0 }
            #expect(all.contains { $0.path.hasPrefix("/v2/") && $0.authorization?.hasPrefix("Basic ") == true })
            #expect(all.filter { $0.path.hasPrefix("/cdn") }.map(\.authorization) == [nil])
        }
    }

    @Test func aBearerRealmOnAnotherHostIsCheckedByThePolicy() async throws {
        try await Self.withUpstream({ _, _, _ in
            var h = HTTPFields()
            h[.wwwAuthenticate] = #"Bearer realm="http://127.0.0.2:9/token",service="up""#
            return Response(status: .unauthorized, headers: h)
        }) { port, _ in
            let client = try Self.client(port)
            await #expect {
                _ = try await client.manifest(repository: "lib/app", reference: .tag("v1"))
            } throws: { error in
                guard let e = error as? UpstreamError else { return false }
                return e.kind == .refused && e.message.hasPrefix("token realm refused") && e.message.contains("127.0.0.2")
            }
            #expect(client.requestCount("token") == 0)
        }
    }

    /// Over plain http a challenge can be rewritten on the path: credentials never follow a realm
    /// to another host (or port), even one the outbound policy allows.
    @Test func plainHTTPCredentialsNeverGoToARealmOnAnotherHost() async throws {
        try await Self.withUpstream({ _, _, _ in
            var h = HTTPFields()
            h[.wwwAuthenticate] = #"Bearer realm="http://127.0.0.1:9/token",service="up""#
            return Response(status: .unauthorized, headers: h)
        }) { port, _ in
            let client = try Self.client(port, credentials: .init(username: "u", password: "p"))
            await #expect {
                _ = try await client.manifest(repository: "lib/app", reference: .tag("v1"))
            } throws: { error in
                guard let e = error as? UpstreamError else { return false }
                return e.kind == .refused && e.message.contains("another host") && !e.message.contains("p@")
            }
            #expect(client.requestCount("token") == 0)
        }
    }

    @Test(arguments: [(401, UpstreamError.Kind.unauthorized), (403, .denied), (404, .notFound), (429, .rateLimited), (502, .badAnswer)])
    func upstreamStatusesAreMapped(status: Int, kind: UpstreamError.Kind) async throws {
        try await Self.withUpstream({ _, _, _ in
            var h = HTTPFields()
            if status == 429 { h[.retryAfter] = "30" }
            return Response(status: .init(code: status), headers: h)
        }) { port, _ in
            await #expect {
                _ = try await Self.client(port).manifest(repository: "lib/app", reference: .tag("v1"))
            } throws: { error in
                guard let e = error as? UpstreamError else { return false }
                return e.kind == kind && (status != 429 || e.message.contains("retry after 30"))
            }
        }
    }

    @Test func theDefaultPolicyRefusesLoopback() async throws {
        try await Self.withUpstream({ _, _, _ in Self.json(Self.manifestText) }) { port, seen in
            await #expect {
                _ = try await Self.client(port, policy: OutboundPolicy()).manifest(repository: "lib/app", reference: .tag("v1"))
            } throws: { ($0 as? UpstreamError)?.kind == .refused }
            #expect(seen.withLockedValue { $0 }.isEmpty)
        }
    }

    @Test func referrersFallBackToTheTagSchema() async throws {
        let subject = Digest.compute(Array(Self.manifestText.utf8))
        let signature = Digest.compute(Array("sig".utf8))
        let index = """
        {"schemaVersion":2,"mediaType":"\(MediaType.ociIndex)","manifests":[{"mediaType":"\(MediaType.ociManifest)","digest":"\(signature)","size":3,"artifactType":"application/vnd.example.sig"}]}
        """
        try await Self.withUpstream({ path, _, _ in
            if path == "/v2/lib/app/manifests/sha256-\(subject.hex)" { return Self.json(index, type: MediaType.ociIndex) }
            return Response(status: .notFound)
        }) { port, _ in
            let client = try Self.client(port)
            let referrers = try await client.referrers(repository: "lib/app", subject: subject)
            #expect(referrers.map(\.digest) == [signature.string])
            #expect(try await client.referrers(repository: "lib/app", subject: signature).isEmpty)
        }
    }

    @Test func contentRangeIsParsedStrictly() {
        func parse(_ text: String) -> [Int64]? {
            ContentRange(text).map { [$0.first, $0.last, $0.total ?? -1] }
        }
        #expect(parse("bytes 5-9/10") == [5, 9, 10])
        #expect(parse("bytes 5-9/*") == [5, 9, -1])
        for bad in ["bytes 9-5/10", "bytes 5-10/10", "bytes -5/10", "items 0-1/2", "bytes 0-1", "bytes a-b/c", "bytes 0-1/2/3", "bytes 0--1/2"] {
            #expect(parse(bad) == nil, "\(bad)")
        }
    }

    @Test func challengesAreParsed() {
        let c = Challenge(#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#)
        #expect(c?.scheme == "bearer")
        #expect(c?.parameters["realm"] == "https://auth.example/token")
        #expect(c?.parameters["scope"] == "repository:a/b:pull,push")
        #expect(Challenge(#"Basic realm="x""#)?.scheme == "basic")
        #expect("\(UpstreamCredentials(username: "u", password: "hunter2"))".contains("hunter2") == false)
    }
}
