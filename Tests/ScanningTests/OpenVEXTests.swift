import Foundation
import Testing
@testable import Scanning

@Suite struct OpenVEXTests {
    static let image = "sha256:" + String(repeating: "ab", count: 32)

    static func doc(_ statements: String, extra: String = "") -> Data {
        Data("""
        {"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex","author":"sec","timestamp":"2026-01-02T03:04:05Z",\
        "version":1\(extra),"statements":[\(statements)]}
        """.utf8)
    }

    static func subject(_ id: String = "CVE-2024-1", aliases: [String] = [], package: String = "libc6", source: String? = "glibc",
                        version: String = "2.36-9+deb12u3") -> VEXSubject {
        VEXSubject(manifest: image, vulnerability: id, aliases: aliases, package: package, sourcePackage: source, installedVersion: version)
    }

    @Test func statementsAreReadInBothShapes() throws {
        let d = try OpenVEX.parse(Self.doc("""
            {"vulnerability":{"@id":"https://nvd.nist.gov/vuln/detail/CVE-2024-1","name":"CVE-2024-1","aliases":["GHSA-xxxx"]},\
             "products":[{"@id":"pkg:oci/app@sha256%3Aabab","subcomponents":[{"@id":"pkg:deb/debian/libc6"}]}],\
             "status":"not_affected","justification":"component_not_present","timestamp":"2026-02-01T00:00:00.5Z"},
            {"vulnerability":"CVE-2024-2","products":["pkg:npm/left-pad@1.3.0"],"status":"under_investigation"}
            """))
        #expect(d.author == "sec" && d.statements.count == 2)
        let s = d.statements[0]
        #expect(s.vulnerability == "CVE-2024-1" && s.aliases == ["GHSA-xxxx"] && s.status == .notAffected && s.status.suppresses)
        #expect(s.products == [.init(id: "pkg:oci/app@sha256%3Aabab", subcomponents: ["pkg:deb/debian/libc6"])])
        #expect(s.justification == "component_not_present" && s.timestamp! > d.timestamp!)
        #expect(d.statements[1].status == .underInvestigation && !d.statements[1].status.suppresses)
        #expect(d.statements[1].timestamp == d.timestamp)
    }

    @Test func hostileAndMalformedDocumentsAreRefusedWithWhere() throws {
        let product = #""products":[{"@id":"sha256:x"}]"#
        let cases: [(String, Data, String)] = [
            ("too large", Data(count: VEXLimits.maxDocumentBytes + 1), "larger than"),
            ("too deep", Data((String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)).utf8), "nested deeper"),
            ("not JSON", Data("{\"statements\":".utf8), "not valid JSON"),
            ("an array", Data("[]".utf8), "expected a JSON object"),
            ("other context", Data(#"{"@context":"https://example.com","statements":[]}"#.utf8), "not an OpenVEX context"),
            ("no statements", Data(#"{"@context":"https://openvex.dev/ns/v0.2.0"}"#.utf8), "\"statements\" is missing"),
            ("statements an object", Data(#"{"statements":{}}"#.utf8), "must be an array of objects"),
            ("statement a string", Self.doc(#""x""#), "expected a JSON object"),
            ("no vulnerability", Self.doc("{\(product),\"status\":\"fixed\"}"), "\"vulnerability\" is missing"),
            ("vulnerability a number", Self.doc("{\"vulnerability\":7,\(product),\"status\":\"fixed\"}"), "expected a JSON object"),
            ("vulnerability without name", Self.doc("{\"vulnerability\":{},\(product),\"status\":\"fixed\"}"), "\"name\" is missing"),
            ("no products", Self.doc(#"{"vulnerability":"V","status":"fixed"}"#), "\"products\" must be a non-empty array"),
            ("empty products", Self.doc(#"{"vulnerability":"V","products":[],"status":"fixed"}"#), "non-empty array"),
            ("product a number", Self.doc(#"{"vulnerability":"V","products":[1],"status":"fixed"}"#), "expected a JSON object"),
            ("product without id", Self.doc(#"{"vulnerability":"V","products":[{}],"status":"fixed"}"#), "\"@id\" is missing"),
            ("subcomponent a string", Self.doc(#"{"vulnerability":"V","products":[{"@id":"a","subcomponents":["b"]}],"status":"fixed"}"#),
             "expected a JSON object"),
            ("status a number", Self.doc("{\"vulnerability\":\"V\",\(product),\"status\":1}"), "\"status\" must be a string"),
            ("unknown status", Self.doc("{\"vulnerability\":\"V\",\(product),\"status\":\"fine\"}"), "\"status\" must be one of"),
            ("unknown justification", Self.doc("{\"vulnerability\":\"V\",\(product),\"status\":\"not_affected\",\"justification\":\"trust me\"}"),
             "not one OpenVEX defines"),
            ("not_affected without why", Self.doc("{\"vulnerability\":\"V\",\(product),\"status\":\"not_affected\"}"), "needs a justification"),
            ("bad timestamp", Self.doc("{\"vulnerability\":\"V\",\(product),\"status\":\"fixed\",\"timestamp\":\"yesterday\"}"), "RFC 3339"),
            ("long name", Self.doc("{\"vulnerability\":\"\(String(repeating: "V", count: 5000))\",\(product),\"status\":\"fixed\"}"), "too long"),
            ("too many products", Self.doc("{\"vulnerability\":\"V\",\"products\":[\(Array(repeating: "\"p\"", count: 1001).joined(separator: ","))],\"status\":\"fixed\"}"),
             "more than 1000 products"),
        ]
        for (what, data, reason) in cases {
            do {
                _ = try OpenVEX.parse(data, location: "vex.json")
                Issue.record("\(what): accepted")
            } catch let e as ImportProblem {
                #expect(e.reason.contains(reason) && e.location.hasPrefix("vex.json"), "\(what): \(e)")
            }
        }
    }

    @Test func aStatementAppliesByVulnerabilityAndProduct() throws {
        var index = VEXIndex()
        let encoded = Self.image.replacingOccurrences(of: ":", with: "%3A")
        index.add(try OpenVEX.parse(Self.doc("""
            {"vulnerability":{"name":"CVE-2024-1"},"products":[{"@id":"pkg:oci/app@\(encoded)?repository_url=r.example/app",\
              "subcomponents":[{"@id":"pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64"}]}],"status":"not_affected",\
              "justification":"vulnerable_code_not_present"},
            {"vulnerability":{"name":"CVE-2024-2"},"products":[{"@id":"pkg:deb/debian/glibc"}],"status":"fixed"},
            {"vulnerability":{"name":"CVE-2024-3"},"products":[{"@id":"\(Self.image)"}],"status":"fixed"},
            {"vulnerability":{"name":"CVE-2024-4"},"products":[{"@id":"pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?epoch=1"}],"status":"fixed"},
            {"vulnerability":{"name":"CVE-2024-5","aliases":["GHSA-5"]},"products":[{"@id":"sha256:\(String(repeating: "cd", count: 32))"}],"status":"fixed"}
            """)), source: "ref1")
        #expect(index.decision(for: Self.subject())?.statement.justification == "vulnerable_code_not_present")
        #expect(index.decision(for: Self.subject())?.source == "ref1")
        // The subcomponent names libc6 at another version: no.
        #expect(index.decision(for: Self.subject(version: "2.36-9+deb12u4")) == nil)
        // By the source package's purl, by the image's digest, by an alias.
        #expect(index.decision(for: Self.subject("CVE-2024-2"))?.suppressed == true)
        #expect(index.decision(for: Self.subject("CVE-2024-3", package: "zlib1g", source: nil))?.suppressed == true)
        #expect(index.decision(for: Self.subject("GHSA-1", aliases: ["CVE-2024-3"]))?.suppressed == true)
        // rpm: the epoch qualifier is part of the version.
        #expect(index.decision(for: Self.subject("CVE-2024-4", package: "openssl-libs", source: "openssl", version: "1:3.0.7-24.el9")) != nil)
        #expect(index.decision(for: Self.subject("CVE-2024-4", package: "openssl-libs", source: "openssl", version: "3.0.7-24.el9")) == nil)
        // Another image's digest; a vulnerability nobody named.
        #expect(index.decision(for: Self.subject("CVE-2024-5")) == nil)
        #expect(index.decision(for: Self.subject("CVE-2024-9")) == nil)
    }

    @Test func theLatestStatementDecides() throws {
        var index = VEXIndex()
        let first = #"{"vulnerability":"CVE-2024-1","products":["pkg:deb/debian/libc6"],"status":"not_affected","impact_statement":"unused","timestamp":"2026-03-01T00:00:00Z"}"#
        let second = #"{"vulnerability":"CVE-2024-1","products":["pkg:deb/debian/libc6"],"status":"affected","timestamp":"2026-02-01T00:00:00Z"}"#
        index.add(try OpenVEX.parse(Self.doc(first)), source: "a")
        index.add(try OpenVEX.parse(Self.doc(second)), source: "b")
        // The second was added later but is older: the first decides.
        #expect(index.decision(for: Self.subject())?.statement.status == .notAffected)
        let third = #"{"vulnerability":"CVE-2024-1","products":["pkg:deb/debian/libc6"],"status":"under_investigation","timestamp":"2026-04-01T00:00:00Z"}"#
        index.add(try OpenVEX.parse(Self.doc(third)), source: "c")
        #expect(index.decision(for: Self.subject())?.suppressed == false)
        #expect(index.decision(for: Self.subject())?.source == "c")
    }

    @Test func packageURLPartsAreDecoded() {
        let p = PackageURLParts("pkg:npm/%40npmcli/arborist@7.2.1?x=1#sub")
        #expect(p?.type == "npm" && p?.name == "arborist" && p?.version == "7.2.1" && p?.qualifiers == ["x": "1"])
        #expect(PackageURLParts("pkg:oci/app@sha256%3Aab")?.version == "sha256:ab")
        #expect(PackageURLParts("pkg:deb/debian/libc6")?.version == nil)
        for bad in ["", "pkg:", "pkg:deb", "http://x/y", "pkg:/"] { #expect(PackageURLParts(bad) == nil, "\(bad)") }
    }
}
