import Access
import Foundation
import XCTest

@testable import BerthCredentials

#if canImport(Glibc)
import Glibc
#endif

/// A JWT-shaped token with the given claims (unsigned: only `UnverifiedClaims` reads it).
private func jwt(_ claims: [String: Any]) -> String {
    func b64(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    let header = b64(Data(#"{"alg":"ES256","typ":"JWT"}"#.utf8))
    return header + "." + b64(try! JSONSerialization.data(withJSONObject: claims)) + ".c2ln"
}

private func request(_ fields: [String: Any]) -> Data {
    try! JSONSerialization.data(withJSONObject: fields)
}

private let v1 = "credentialprovider.kubelet.k8s.io/v1"

final class KubeletRequestParsingTests: XCTestCase {
    func testReadsAV1Request() throws {
        let r = try KubeletCredentialProvider.parse(request([
            "apiVersion": v1, "kind": "CredentialProviderRequest", "image": "reg.example.com:5000/apps/api:1",
            "serviceAccountToken": "a.b.c", "serviceAccountAnnotations": ["berth.example/identity": "puller"],
        ]))
        XCTAssertEqual(r.image, "reg.example.com:5000/apps/api:1")
        XCTAssertEqual(r.serviceAccountToken, "a.b.c")
        XCTAssertEqual(r.serviceAccountAnnotations, ["berth.example/identity": "puller"])
        // an empty token is no token: the node's token file is used
        let noToken = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "x.io/a", "serviceAccountToken": ""]))
        XCTAssertNil(noToken.serviceAccountToken)
    }

    func testRefusesOtherAPIVersionsAndKinds() {
        for version in ["credentialprovider.kubelet.k8s.io/v1beta1", "credentialprovider.kubelet.k8s.io/v1alpha1", "v1", ""] {
            XCTAssertThrowsError(try KubeletCredentialProvider.parse(request(["apiVersion": version, "image": "x.io/a"]))) {
                XCTAssertTrue("\($0)".contains("speaks credentialprovider.kubelet.k8s.io/v1"), "\($0)")
            }
        }
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(request(["image": "x.io/a"])))
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(request(["apiVersion": v1, "kind": "ExecCredential", "image": "x.io/a"]))) {
            XCTAssertTrue("\($0)".contains("not CredentialProviderRequest"), "\($0)")
        }
    }

    func testRefusesHostileInput() {
        // larger than the bound, even when it is otherwise a valid request
        let padding = String(repeating: "a", count: KubeletCredentialProvider.requestLimit)
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "x.io/a", "pad": padding]))) {
            XCTAssertTrue("\($0)".contains("larger than"), "\($0)")
        }
        // a repeated key is read differently by different parsers
        let twice = Data(#"{"apiVersion":"\#(v1)","image":"x.io/a","image":"evil.io/a"}"#.utf8)
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(twice)) { XCTAssertTrue("\($0)".contains("duplicate key"), "\($0)") }
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(Data(" \n".utf8))) {
            XCTAssertEqual("\($0)", "no CredentialProviderRequest on standard input")
        }
        for bad in ["", "null", "[]", "\"text\"", "{", #"{"apiVersion":1}"#, String(repeating: "[", count: 10_000),
                    #"{"apiVersion":"\#(v1)","image":["x"]}"#, #"{"apiVersion":"\#(v1)"}"#, #"{"apiVersion":"\#(v1)","image":""}"#,
                    #"{"apiVersion":"\#(v1)","image":"x.io/a","serviceAccountAnnotations":{"a":1}}"#] {
            XCTAssertThrowsError(try KubeletCredentialProvider.parse(Data(bad.utf8)), bad)
        }
        let hugeToken = String(repeating: "t", count: KubeletCredentialProvider.tokenLimit + 1)
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "x.io/a", "serviceAccountToken": hugeToken])))
        // a refusal quotes no more than a bounded, printable prefix of what it was sent
        XCTAssertThrowsError(try KubeletCredentialProvider.parse(request(["apiVersion": String(repeating: "\u{1b}", count: 5000), "image": "x"]))) {
            XCTAssertLessThan("\($0)".count, 400)
            XCTAssertFalse("\($0)".contains("\u{1b}"))
        }
    }

    func testReadingStandardInputIsBounded() throws {
        let path = NSTemporaryDirectory() + "berth-cred-\(UUID().uuidString)"
        defer { unlink(path) }
        FileManager.default.createFile(atPath: path, contents: Data(count: 3 << 20))
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        XCTAssertThrowsError(try readBounded(fd: fd, limit: 1 << 20, what: "the request")) {
            XCTAssertEqual("\($0)", "the request is larger than 1048576 bytes")
        }
        // the token file: a regular file only, its content never in an error
        XCTAssertThrowsError(try readTokenFile("/dev/zero")) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
        XCTAssertThrowsError(try readTokenFile(path)) { XCTAssertTrue("\($0)".contains("larger than"), "\($0)") }
        let tokenPath = path + ".token"
        defer { unlink(tokenPath) }
        FileManager.default.createFile(atPath: tokenPath, contents: Data("  header.claims.sig\n".utf8))
        XCTAssertEqual(try readTokenFile(tokenPath), "header.claims.sig")
    }
}

final class KubeletResponseTests: XCTestCase {
    let registry = "https://reg.example.com:5000"

    func testAnImageOfTheRegistryGetsTheExchangedTokenForLessThanItsLifetime() async throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let refresh = jwt(["sub": "identity:puller", "exp": 1_800_000_000 + 3 * 3600])
        var sent: [String] = []
        let r = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "REG.example.com:5000/apps/api@sha256:"
            + String(repeating: "a", count: 64), "serviceAccountToken": "pod.token.jwt"]))
        let response = try await KubeletCredentialProvider.respond(to: r, registry: registry, nodeToken: { "node.token.jwt" }, now: now) {
            sent.append($0)
            return refresh
        }
        XCTAssertEqual(sent, ["pod.token.jwt"], "the pod's token wins over the node's")
        XCTAssertEqual(response.auth, ["reg.example.com:5000": .init(username: refreshTokenUser, password: refresh)])
        XCTAssertEqual(response.cacheKeyType, "Registry")
        XCTAssertEqual(response.cacheDuration, "2h24m0s")
        let json = try JSONSerialization.jsonObject(with: KubeletCredentialProvider.encode(response)) as! [String: Any]
        XCTAssertEqual(json["apiVersion"] as? String, v1)
        XCTAssertEqual(json["kind"] as? String, "CredentialProviderResponse")
    }

    func testTheNodeTokenIsUsedWithoutAPodToken() async throws {
        let r = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "reg.example.com:5000/a"]))
        var sent: [String] = []
        _ = try await KubeletCredentialProvider.respond(to: r, registry: registry, nodeToken: { "node.token.jwt" }) {
            sent.append($0)
            return jwt(["exp": Date().timeIntervalSince1970 + 600])
        }
        XCTAssertEqual(sent, ["node.token.jwt"])
        do {
            _ = try await KubeletCredentialProvider.respond(to: r, registry: registry, nodeToken: { nil }) { _ in XCTFail(); return "" }
            XCTFail("no token at all must fail")
        } catch {
            XCTAssertTrue("\(error)".contains("no service-account token"), "\(error)")
        }
    }

    func testAnotherRegistrysImageGetsNothingAndNoTokenLeaves() async throws {
        for image in ["other.example.com/apps/api:1", "reg.example.com/apps/api:1", "reg.example.com:5001/a", "nginx",
                      "library/nginx:1", "reg.example.com.evil.io:5000/a", "localhost:5000/reg.example.com/a"] {
            let r = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": image, "serviceAccountToken": "pod.token.jwt"]))
            let response = try await KubeletCredentialProvider.respond(to: r, registry: registry, nodeToken: { "node" }) { _ in
                XCTFail("a token was sent for \(image)")
                return ""
            }
            XCTAssertEqual(response.auth, [:], image)
            XCTAssertEqual(response.cacheDuration, "0s", image)
        }
        let bad = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "reg.example.com:5000/UPPER/../x"]))
        do {
            _ = try await KubeletCredentialProvider.respond(to: bad, registry: registry, nodeToken: { nil }) { _ in "" }
            XCTFail("an invalid image reference must fail")
        } catch {
            XCTAssertTrue("\(error)".contains("invalid image reference"), "\(error)")
        }
    }

    func testATokenWithoutExpiryIsNotCachedByGuess() async throws {
        let r = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "reg.example.com:5000/a", "serviceAccountToken": "t"]))
        do {
            _ = try await KubeletCredentialProvider.respond(to: r, registry: registry, nodeToken: { nil }) { _ in "not-a-jwt" }
            XCTFail("expected a refusal")
        } catch {
            XCTAssertTrue("\(error)".contains("no expiry"), "\(error)")
        }
    }

    func testATokenExpiringFarInTheFutureIsCachedForADayAtMost() async throws {
        // The expiry is the registry's claim: an absurd one must neither trap (Int of 1e300) nor
        // give the kubelet a duration it cannot read.
        let r = try KubeletCredentialProvider.parse(request(["apiVersion": v1, "image": "reg.example.com:5000/a", "serviceAccountToken": "t"]))
        for exp in [1e300, 1e18, Double(Int64.max)] {
            let response = try await KubeletCredentialProvider.respond(to: r, registry: registry, nodeToken: { nil }) { _ in jwt(["exp": exp]) }
            XCTAssertEqual(response.cacheDuration, "24h0m0s", "exp \(exp)")
        }
        XCTAssertEqual(KubeletCredentialProvider.cacheSeconds(lifetime: .greatestFiniteMagnitude), 24 * 3600)
    }

    func testCacheDurationsStayBelowTheLifetime() {
        XCTAssertEqual(KubeletCredentialProvider.cacheSeconds(lifetime: 3 * 3600), 8640)
        XCTAssertEqual(KubeletCredentialProvider.cacheSeconds(lifetime: 240), 180)
        XCTAssertEqual(KubeletCredentialProvider.cacheSeconds(lifetime: 60), 0)
        XCTAssertEqual(KubeletCredentialProvider.cacheSeconds(lifetime: -5), 0)
        XCTAssertEqual(KubeletCredentialProvider.cacheSeconds(lifetime: .infinity), 0)
        for lifetime in stride(from: 1.0, to: 20_000, by: 37) {
            XCTAssertLessThan(Double(KubeletCredentialProvider.cacheSeconds(lifetime: lifetime)), lifetime)
        }
        XCTAssertEqual(KubeletCredentialProvider.goDuration(0), "0s")
        XCTAssertEqual(KubeletCredentialProvider.goDuration(45), "45s")
        XCTAssertEqual(KubeletCredentialProvider.goDuration(240), "4m0s")
        XCTAssertEqual(KubeletCredentialProvider.goDuration(3 * 3600 + 61), "3h1m1s")
    }
}

final class DockerCredentialHelperTests: XCTestCase {
    func testServerURLsAsClientsPassThem() throws {
        XCTAssertEqual(try DockerCredentialHelper.host(ofServerURL: "127.0.0.1:5000\n"), "127.0.0.1:5000")
        XCTAssertEqual(try DockerCredentialHelper.host(ofServerURL: "https://Reg.Example.com/v2/"), "reg.example.com")
        XCTAssertEqual(try DockerCredentialHelper.registryURL(ofServerURL: "127.0.0.1:5000"), "http://127.0.0.1:5000")
        XCTAssertEqual(try DockerCredentialHelper.registryURL(ofServerURL: "reg.example.com"), "https://reg.example.com")
        XCTAssertEqual(try DockerCredentialHelper.registryURL(ofServerURL: "http://reg.example.com:80/v1/"), "http://reg.example.com:80")
        for bad in ["", "   ", "user:pw@reg.example.com", "ftp://reg.example.com", "reg example.com", String(repeating: "a", count: 5000)] {
            XCTAssertThrowsError(try DockerCredentialHelper.registryURL(ofServerURL: bad), bad)
        }
    }

    func testStoreInputIsBoundedAndStrict() {
        let huge = Data(#"{"ServerURL":"a","Username":"b","Secret":""#.utf8) + Data(repeating: 0x61, count: 70_000) + Data(#""}"#.utf8)
        XCTAssertThrowsError(try DockerCredentialHelper.decodeCredentials(huge)) { XCTAssertTrue("\($0)".contains("larger than"), "\($0)") }
        for bad in ["", "{}", #"{"ServerURL":"a","Username":"b"}"#, #"{"ServerURL":"a","Username":"b","Secret":"c","Secret":"d"}"#, "[1]"] {
            XCTAssertThrowsError(try DockerCredentialHelper.decodeCredentials(Data(bad.utf8)), bad)
        }
        XCTAssertEqual(try DockerCredentialHelper.decodeCredentials(Data(#"{"ServerURL":"a","Username":"b","Secret":"c"}"#.utf8)),
                       .init(ServerURL: "a", Username: "b", Secret: "c"))
    }

    func testUnknownCommandsAreRefused() async {
        do {
            _ = try await DockerCredentialHelper.run("delete", input: Data())
            XCTFail("expected a refusal")
        } catch {
            XCTAssertTrue("\(error)".contains("use get, store, erase or list"), "\(error)")
        }
    }

    func testTheRefreshTokenUserIsTheServers() {
        XCTAssertEqual(refreshTokenUser, AccessControl.refreshTokenUser)
    }

    func testUnverifiedClaims() {
        let claims = UnverifiedClaims(jwt(["sub": "identity:alice", "exp": 1_900_000_000, "iat": 1_899_990_000]))
        XCTAssertEqual(claims?.subject, "identity:alice")
        XCTAssertEqual(claims?.expiry, Date(timeIntervalSince1970: 1_900_000_000))
        XCTAssertNil(UnverifiedClaims("a.b"))
        XCTAssertNil(UnverifiedClaims("a.!!!.c"))
        XCTAssertNil(UnverifiedClaims(String(repeating: "a.", count: 40_000) + "a"))
    }
}
