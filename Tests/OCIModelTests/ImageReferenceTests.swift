import Testing
@testable import OCIModel

@Suite struct ImageReferenceTests {
    static let d = "sha256:" + String(repeating: "a", count: 64)

    /// (text, host, repository, tag, digest)
    static let valid: [(String, String?, String, String?, String?)] = [
        ("app", nil, "app", nil, nil),
        ("payments/api:1.2", nil, "payments/api", "1.2", nil),
        ("registry.example.com/payments/api", "registry.example.com", "payments/api", nil, nil),
        ("127.0.0.1:5000/payments/api:v1", "127.0.0.1:5000", "payments/api", "v1", nil),
        ("localhost/app:latest", "localhost", "app", "latest", nil),
        ("localhost:5000/app@\(d)", "localhost:5000", "app", nil, d),
        ("r.io/a/b:t@\(d)", "r.io", "a/b", "t", d),
        ("team/app", nil, "team/app", nil, nil),          // "team" has no '.' or ':': not a host
    ]

    @Test(arguments: valid)
    func parses(_ row: (String, String?, String, String?, String?)) throws {
        let r = try ImageReference(parsing: row.0)
        #expect(r.host == row.1)
        #expect(r.repository == row.2)
        #expect(r.tag == row.3)
        #expect(r.digest?.string == row.4)
        #expect(r.description == row.0)
    }

    @Test func hostsWithPortsAndIPv6() throws {
        #expect(try ImageReference(parsing: "reg.io:5000/app").host == "reg.io:5000")
        #expect(try ImageReference(parsing: "[::1]:5000/app:v1").host == "[::1]:5000")
        #expect(try ImageReference(parsing: "localhost:65535/app").host == "localhost:65535")
        #expect(try ImageReference(parsing: "app").tagOrLatest == "latest")
    }

    @Test func theRegistrysOwnNameIsAHost() throws {
        let r = try ImageReference(parsing: "berth/payments/api:1", registryHost: "berth")
        #expect(r.host == "berth" && r.repository == "payments/api" && r.tag == "1")
        #expect(try ImageReference(parsing: "berth/payments/api:1").host == nil)
    }

    @Test(arguments: [
        "", "Payments/api", "app:", "app:-x", "app:.x", "r.io/app@sha256:zz", "r.io/app@", "r.io/", "a//b", "/app",
        "app:" + String(repeating: "t", count: 129), "r.io/app@md5:" + String(repeating: "a", count: 32), "ex ample.com/app",
        // ports are up to 65535; a bracketed IPv6 address is closed
        "reg.io:99999/app", "reg.io:x/app", "[::1/app", "reg_io.com/app",
    ])
    func refuses(_ text: String) {
        do {
            _ = try ImageReference(parsing: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.code == .nameInvalid)
            #expect(error.message.contains("HOST[:PORT]/]REPOSITORY[:TAG][@DIGEST]"))
        }
    }
}
