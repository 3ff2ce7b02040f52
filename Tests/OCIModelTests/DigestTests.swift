import Foundation
import Testing
@testable import OCIModel

@Suite struct DigestTests {
    @Test func parsesSha256AndSha512() throws {
        let h256 = String(repeating: "a", count: 64)
        let d = try Digest(parsing: "sha256:\(h256)")
        #expect(d.algorithm == .sha256 && d.hex == h256 && d.string == "sha256:\(h256)")
        let h512 = String(repeating: "0", count: 128)
        #expect(try Digest(parsing: "sha512:\(h512)").algorithm == .sha512)
    }

    @Test(arguments: [
        "", ":", "sha256", "sha256:", ":abc", "sha256:abc",
        "sha256:" + String(repeating: "A", count: 64),            // upper-case hex
        "sha256:" + String(repeating: "a", count: 63),            // short
        "sha256:" + String(repeating: "a", count: 65),            // long
        "sha256:" + String(repeating: "g", count: 64),            // not hex
        "sha512:" + String(repeating: "a", count: 64),            // wrong length for sha512
        "SHA256:" + String(repeating: "a", count: 64),            // upper-case algorithm
        "sha256:../../../../etc/passwd",
        "sha256:" + String(repeating: "a", count: 10_000),        // huge
        "sha256 :" + String(repeating: "a", count: 64),
        "sha256:\u{0}" + String(repeating: "a", count: 63),
    ])
    func rejectsMalformed(_ raw: String) {
        #expect(throws: Digest.ParseError.self) { try Digest(parsing: raw) }
    }

    @Test func wellFormedButUnsupportedAlgorithm() {
        #expect(throws: Digest.ParseError.unsupported("sha384")) {
            try Digest(parsing: "sha384:" + String(repeating: "a", count: 96))
        }
        #expect(throws: Digest.ParseError.unsupported("blake3")) {
            try Digest(parsing: "blake3:" + String(repeating: "a", count: 64))
        }
    }

    @Test func computesKnownVectors() {
        #expect(Digest.compute(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Digest.compute([UInt8](), algorithm: .sha512).hex.hasPrefix("cf83e1357eefb8bd"))
    }

    @Test func incrementalHashEqualsOneShot() {
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var h = DigestHasher(.sha256)
        for chunk in stride(from: 0, to: bytes.count, by: 777) {
            h.update(bytes[chunk..<min(chunk + 777, bytes.count)])
        }
        #expect(h.finalize() == Digest.compute(bytes))
    }
}

@Suite struct NameTests {
    @Test(arguments: ["a", "library/ubuntu", "a/b/c/d", "foo.bar", "foo_bar", "foo__bar", "foo-bar", "foo---bar",
                      "0", "a1/b2", String(repeating: "a", count: 255)])
    func acceptsValidNames(_ name: String) {
        #expect(RepositoryName.isValid(name))
    }

    @Test(arguments: ["", "..", "a/../b", "../a", "A", "Library/ubuntu", "a//b", "/a", "a/", "a/b/", "-a", "a-", ".a",
                      "a.", "a___b", "a..b", "a._b", "a b", "a%2fb", "a\\b", "a:b", "a@b", "ä",
                      String(repeating: "a", count: 256), String(repeating: "a/", count: 200) + "a"])
    func rejectsInvalidNames(_ name: String) {
        #expect(!RepositoryName.isValid(name))
        #expect(throws: RegistryError.self) { try RepositoryName(name) }
    }

    @Test func tags() {
        #expect(Tag.isValid("latest"))
        #expect(Tag.isValid("v1.2.3-rc_1"))
        #expect(Tag.isValid("_x"))
        #expect(Tag.isValid(String(repeating: "a", count: 128)))
        #expect(!Tag.isValid(String(repeating: "a", count: 129)))
        #expect(!Tag.isValid(".hidden"))
        #expect(!Tag.isValid("-x"))
        #expect(!Tag.isValid(""))
        #expect(!Tag.isValid("a/b"))
        #expect(!Tag.isValid("a:b"))
    }

    @Test func references() throws {
        #expect(try Reference(parsing: "latest") == .tag("latest"))
        let digest = "sha256:" + String(repeating: "b", count: 64)
        #expect(try Reference(parsing: digest) == .digest(try Digest(parsing: digest)))
        #expect(throws: RegistryError.self) { try Reference(parsing: "sha256:zz") }
        #expect(throws: RegistryError.self) { try Reference(parsing: "-bad") }
    }

    @Test func errorCodesHaveSpecStatuses() {
        #expect(OCIErrorCode.blobUnknown.defaultStatus == 404)
        #expect(OCIErrorCode.blobUploadUnknown.defaultStatus == 404)
        #expect(OCIErrorCode.manifestUnknown.defaultStatus == 404)
        #expect(OCIErrorCode.nameUnknown.defaultStatus == 404)
        #expect(OCIErrorCode.digestInvalid.defaultStatus == 400)
        #expect(OCIErrorCode.manifestBlobUnknown.defaultStatus == 400)
        #expect(OCIErrorCode.unauthorized.defaultStatus == 401)
        #expect(OCIErrorCode.denied.defaultStatus == 403)
        #expect(OCIErrorCode.tooManyRequests.defaultStatus == 429)
    }
}
