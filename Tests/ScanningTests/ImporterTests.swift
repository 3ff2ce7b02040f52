import Foundation
import Testing
@testable import Scanning

func fixture(_ name: String) throws -> URL {
    try #require(Bundle.module.url(forResource: "Fixtures/" + name, withExtension: nil))
}

@Suite struct OSVImporterTests {
    @Test func directoryOfRecords() throws {
        let result = try OSVImporter.importPath(fixture("osv"))
        #expect(Set(result.advisories.map(\.id)) == ["PYSEC-2099-1", "GO-2099-0002", "DSA-9999-1", "GHSA-wwww-wwww-wwww", "OSV-2099-5"])
        // The two broken records are reported by name; the text file is not read.
        #expect(result.problems.map(\.location).sorted() == ["BROKEN-1.json", "BROKEN-2.json"])
        #expect(result.problems.first { $0.location == "BROKEN-1.json" }?.reason.contains("affected") == true)

        let py = try #require(result.advisories.first { $0.id == "PYSEC-2099-1" })
        #expect(py.aliases == ["CVE-2099-1111", "GHSA-aaaa-bbbb-cccc"])
        #expect(py.severities.first?.score == 9.8 && py.severities.first?.level == .critical)
        let affected = try #require(py.affected.first)
        #expect(affected.ecosystem == "PyPI" && affected.name == "example_pkg")
        #expect(affected.ranges.count == 2)
        #expect(affected.ranges[0].events == [.introduced("0"), .fixed("2.0.1")])
        #expect(affected.ranges[1].events == [.introduced("3.0"), .lastAffected("3.1")])
        #expect(affected.versions == ["1.0", "2.0", "3.0", "3.1"])
        #expect(affected.fixedVersions == ["2.0.1"])

        let go = try #require(result.advisories.first { $0.id == "GO-2099-0002" })
        #expect(go.affected[0].ranges[0].kind == .semver)
        #expect(go.severities.map(\.level) == [.medium])  // database_specific.severity "MODERATE"

        let dsa = try #require(result.advisories.first { $0.id == "DSA-9999-1" })
        #expect(dsa.affected[0].release == "12")

        #expect(result.advisories.first { $0.id == "GHSA-wwww-wwww-wwww" }?.withdrawn == "2099-04-01T00:00:00Z")
        let git = try #require(result.advisories.first { $0.id == "OSV-2099-5" })
        #expect(git.affected[0].ranges[0].kind == .git && git.affected[0].ranges[0].repository == "https://example.invalid/repo.git")
    }

    @Test func singleFile() throws {
        let result = try OSVImporter.importPath(fixture("osv/GO-2099-0002.json"))
        #expect(result.advisories.map(\.id) == ["GO-2099-0002"] && result.problems.isEmpty)
        #expect(throws: ImportProblem.self) { try OSVImporter.importPath(fixture("osv/BROKEN-2.json")) }
        #expect(throws: ImportProblem.self) { try OSVImporter.importPath(URL(fileURLWithPath: "/nonexistent/berth/osv.json")) }
    }

    @Test func zipExport() throws {
        let result = try OSVImporter.importPath(fixture("osv-all.zip"))
        #expect(result.problems.isEmpty)
        #expect(Set(result.advisories.map(\.id)) == ["RUSTSEC-2099-0001", "MAL-2099-2"])
        // The deflated entry came back whole (its summary is 3000 characters).
        #expect(result.advisories.first { $0.id == "MAL-2099-2" }?.summary?.count == 3000)
        let rust = try #require(result.advisories.first { $0.id == "RUSTSEC-2099-0001" })
        #expect(rust.severities.first?.type == "CVSS_V4" && rust.severities.first?.level == .unknown)
    }

    static func record(_ json: String) throws -> Advisory { try OSVImporter.record(Data(json.utf8)) }

    @Test(arguments: [
        #"{"affected": []}"#,                                                     // no id
        #"{"id": 7}"#,                                                            // wrong type
        #"{"id": "X", "aliases": "CVE-1"}"#,
        #"{"id": "X", "aliases": [1, 2]}"#,
        #"{"id": "X", "affected": [{"ranges": []}]}"#,                            // no package
        #"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI"}}]}"#,         // no name
        #"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [{"type": "WHATEVER", "events": [{"introduced": "0"}]}]}]}"#,
        #"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "1"}]}]}]}"#,
        #"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]}"#,
        #"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": 0}]}]}]}"#,
        #"{"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": 1e999}]}]}]}"#,
        #"{"id": "X", "severity": [{"type": "CVSS_V3"}]}"#,
        #"[]"#, #"null"#, #""id""#, "", "{", #"{"id": "X""#,
    ])
    func refusesMalformedRecords(_ json: String) {
        #expect(throws: ImportProblem.self) { try Self.record(json) }
    }

    @Test func nestingLimitIsExact() throws {
        func nested(_ n: Int) -> Data {
            Data((#"{"id": "X", "database_specific": "# + String(repeating: "[", count: n) + String(repeating: "]", count: n) + "}").utf8)
        }
        #expect(try OSVImporter.record(nested(JSONLimits.maxDepth - 1)).id == "X")
        #expect(throws: ImportProblem.self) { try OSVImporter.record(nested(JSONLimits.maxDepth)) }
        // Brackets inside strings do not count.
        let inString = #"{"id": "X", "summary": ""# + String(repeating: "[{", count: 1000) + #"\"]"}"#
        #expect(try OSVImporter.record(Data(inString.utf8)).summary?.count == 2002)
    }

    @Test func refusesHostileRecords() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let deepInside = #"{"id": "X", "database_specific": "# + String(repeating: #"{"a":"#, count: 50_000) + "1" + String(repeating: "}", count: 50_001)
        let hugeID = #"{"id": ""# + String(repeating: "A", count: 100_000) + #""}"#
        let hugeSummary = #"{"id": "X", "summary": ""# + String(repeating: "A", count: ImportLimits.maxTextLength + 1) + #""}"#
        let hugeNumber = #"{"id": "X", "summary": "# + String(repeating: "9", count: 100_000) + "}"
        var invalidUTF8 = Data(#"{"id": "X"#.utf8)
        invalidUTF8.append(contentsOf: [0xC3, 0x28, 0xFF])
        invalidUTF8.append(contentsOf: Data(#""}"#.utf8))
        let tooBig = Data(repeating: 0x20, count: ImportLimits.maxRecordBytes + 1)
        for data in [Data(deep.utf8), Data(deepInside.utf8), Data(hugeID.utf8), Data(hugeSummary.utf8), Data(hugeNumber.utf8), invalidUTF8, tooBig] {
            #expect(throws: ImportProblem.self) { try OSVImporter.record(data) }
        }
    }
}

@Suite struct DebianTrackerImporterTests {
    @Test func importsReleasesAndStates() throws {
        let result = try DebianTrackerImporter.importData(Data(contentsOf: fixture("debian-tracker.json")))
        #expect(Set(result.advisories.map(\.id)) == ["CVE-2099-0001", "CVE-2099-0002", "CVE-2099-0004"])
        // The package that is not an object and the CVE with a numeric status are reported.
        #expect(Set(result.problems.map(\.location)) == ["broken-package", "glibc/CVE-2099-0003/bookworm"])

        let cve1 = try #require(result.advisories.first { $0.id == "CVE-2099-0001" })
        #expect(cve1.source == .debianSecurityTracker && cve1.summary == "Buffer overflow in an example function")
        // trixie's fixed_version "0" means never affected: no entry for it.
        #expect(cve1.affected.map { $0.release ?? "" } == ["bookworm", "bullseye"])
        let bookworm = cve1.affected[0], bullseye = cve1.affected[1]
        #expect(bookworm.name == "glibc" && bookworm.ecosystem == "Debian")
        #expect(bookworm.fixedVersions == ["2.36-9+deb12u4"] && !bookworm.isUnfixed && !bookworm.noDSA)
        #expect(bookworm.severity?.level == .medium)
        #expect(bullseye.isUnfixed && bullseye.noDSA && bullseye.severity?.level == .low)

        let cve2 = try #require(result.advisories.first { $0.id == "CVE-2099-0002" })
        #expect(cve2.affected[0].isUnfixed && cve2.affected[0].severity?.level == .high)  // "high**"
    }

    @Test func malformed() throws {
        #expect(throws: ImportProblem.self) { try DebianTrackerImporter.importData(Data("[]".utf8)) }
        #expect(throws: ImportProblem.self) { try DebianTrackerImporter.importData(Data("7".utf8)) }
        let missingFix = #"{"p": {"CVE-1": {"releases": {"bookworm": {"status": "resolved"}}}}}"#
        let result = try DebianTrackerImporter.importData(Data(missingFix.utf8))
        #expect(result.advisories.isEmpty && result.problems.map(\.location) == ["p/CVE-1/bookworm"])
    }

    @Test func refusesBadFixedVersionsAndStatuses() throws {
        let json = #"""
        {"p": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "not a version"}}},
               "CVE-2": {"releases": {"bookworm": {"status": "fixed-ish"}}},
               "CVE-3": {"releases": {"bookworm": {"status": "open", "nodsa": 3}}},
               "CVE-4": {"releases": "none"},
               "CVE-5": {"releases": {"bookworm": {"status": "open"}}}}}
        """#
        let result = try DebianTrackerImporter.importData(Data(json.utf8))
        #expect(result.advisories.map(\.id) == ["CVE-5"])
        #expect(result.problems.count == 4)
    }

    @Test func refusesNonJSON() {
        #expect(throws: ImportProblem.self) { try DebianTrackerImporter.importData(Data([0xFF, 0xFE, 0x00])) }
        let deep = String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_000)
        #expect(throws: ImportProblem.self) { try DebianTrackerImporter.importData(Data(deep.utf8)) }
    }
}

@Suite struct AlpineSecdbImporterTests {
    @Test func importsSecfixes() throws {
        let result = try AlpineSecdbImporter.importData(Data(contentsOf: fixture("alpine-secdb.json")))
        let byID = Dictionary(grouping: result.advisories, by: \.id)
        #expect(Set(byID.keys) == ["CVE-2099-1000", "CVE-2099-1001", "CVE-2099-1002", "CVE-2099-1004"])
        let a = try #require(byID["CVE-2099-1000"]?.first?.affected.first)
        #expect(a.ecosystem == "Alpine" && a.name == "openssl" && a.release == "v3.18" && a.fixedVersions == ["3.1.4-r0"])
        // Two identifiers in one entry are two advisories with the same fix.
        #expect(byID["CVE-2099-1002"]?.first?.affected.first?.fixedVersions == ["3.1.2-r0"])
        // "0" (never affected) gives no advisory; the bad version key, the package with a
        // numeric name and the entry without "pkg" are reported.
        #expect(byID["CVE-2099-1003"] == nil && byID["CVE-2099-1005"] == nil)
        #expect(result.problems.count == 3)
        #expect(result.problems.contains { $0.location.hasPrefix("busybox/not a version") })
    }

    @Test func refusesWrongTypes() throws {
        #expect(throws: ImportProblem.self) { try AlpineSecdbImporter.importData(Data(#"{"packages": {}}"#.utf8)) }
        #expect(throws: ImportProblem.self) { try AlpineSecdbImporter.importData(Data(#"{"distroversion": 3, "packages": []}"#.utf8)) }
        let r = try AlpineSecdbImporter.importData(Data(#"{"packages": [{"pkg": {"name": "x", "secfixes": {"1.0-r0": "CVE-1"}}}]}"#.utf8))
        #expect(r.advisories.isEmpty && r.problems.count == 1)
    }
}

@Suite struct HostileFeedTests {
    static var hostile: [Data] {
        var invalidUTF8 = Data(#"{"packages": [{"pkg": {"name": "x"#.utf8)
        invalidUTF8.append(contentsOf: [0xED, 0xA0, 0x80, 0xC0, 0xAF])
        invalidUTF8.append(contentsOf: Data(#""}}]}"#.utf8))
        return [
            Data(),
            Data(String(repeating: "[", count: 100_000).utf8),
            Data((String(repeating: #"{"a":"#, count: 100_000) + "1" + String(repeating: "}", count: 100_000)).utf8),
            Data(String(repeating: "9", count: 100_000).utf8),
            invalidUTF8,
            Data([0x00, 0xFF, 0xFE, 0xFD]),
            Data("1e99999".utf8),
            Data(#"{"a": "unterminated"#.utf8),
        ]
    }

    @Test func everyImporterRefusesHostileDocuments() {
        for data in Self.hostile {
            #expect(throws: ImportProblem.self) { try OSVImporter.record(data) }
            #expect(throws: ImportProblem.self) { try DebianTrackerImporter.importData(data) }
            #expect(throws: ImportProblem.self) { try AlpineSecdbImporter.importData(data) }
        }
    }

    @Test func hostileValuesInsideValidDocuments() throws {
        let long = String(repeating: "9", count: 100_000)
        // A 100,000-character version: refused by the version rules, reported, not imported.
        let alpine = try AlpineSecdbImporter.importData(Data(#"{"packages": [{"pkg": {"name": "x", "secfixes": {"\#(long)": ["CVE-1"]}}}]}"#.utf8))
        #expect(alpine.advisories.isEmpty && alpine.problems.count == 1)
        let debian = try DebianTrackerImporter.importData(Data(#"{"p": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "\#(long)"}}}}}"#.utf8))
        #expect(debian.advisories.isEmpty && debian.problems.count == 1)
        // A huge package name or CVE key.
        let hugeKey = try DebianTrackerImporter.importData(Data(#"{"\#(long)": {"CVE-1": {"releases": {}}}}"#.utf8))
        #expect(hugeKey.advisories.isEmpty && hugeKey.problems.count == 1 && hugeKey.problems[0].location.count < 300)
    }
}

@Suite struct ZipReaderTests {
    func archive() throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("osv-all.zip"))) }

    /// Offsets of the central directory entries in `bytes`.
    func directoryEntries(_ bytes: [UInt8]) -> [Int] {
        let signature: [UInt8] = [0x50, 0x4B, 1, 2]
        return (0..<(bytes.count - 4)).filter { (k: Int) -> Bool in Array(bytes[k..<(k + 4)]) == signature }
    }

    func entryProblems(_ bytes: [UInt8]) throws -> [String] {
        let zip = try ZipArchive(Data(bytes))
        return zip.entries.compactMap { entry in
            do { _ = try zip.contents(of: entry, limit: 1 << 20); return nil } catch { return "\(error)" }
        }
    }

    @Test func readsStoredAndDeflatedEntries() throws {
        let zip = try ZipArchive(Data(try archive()))
        #expect(zip.entries.map(\.name) == ["MAL-2099-2.json", "RUSTSEC-2099-0001.json", "notes.txt"])
        #expect(zip.entries.map(\.method) == [8, 0, 0])
        #expect(String(decoding: try zip.contents(of: zip.entries[2], limit: 100), as: UTF8.self) == "not a record")
    }

    @Test func detectsCorruptCRC() throws {
        var bytes = try archive()
        let first = try #require(directoryEntries(bytes).first)
        bytes[first + 16] ^= 0xFF
        #expect(try entryProblems(bytes).first?.contains("CRC-32") == true)
    }

    @Test func stopsInflatingAtTheDeclaredSize() throws {
        // A directory that understates the size, as a zip bomb does.
        var bytes = try archive()
        let first = try #require(directoryEntries(bytes).first)
        bytes[first + 24] = 10; bytes[first + 25] = 0; bytes[first + 26] = 0; bytes[first + 27] = 0
        #expect(try entryProblems(bytes).first?.contains("exceeds") == true)
        // And the limit applies before inflating at all.
        let zip = try ZipArchive(Data(try archive()))
        #expect(throws: ImportProblem.self) { try zip.contents(of: zip.entries[0], limit: 100) }
    }

    @Test func refusesCorruptDeflateData() throws {
        var bytes = try archive()
        // The deflated entry's data starts after its 30-byte local header and name.
        let start = 30 + "MAL-2099-2.json".utf8.count
        for k in start..<(start + 40) { bytes[k] = 0xFF }
        #expect(try entryProblems(bytes).first != nil)
    }

    @Test func refusesMalformedArchives() throws {
        let good = try archive()
        var lyingCount = good
        let signature: [UInt8] = [0x50, 0x4B, 5, 6]
        let found: Int? = (0..<(good.count - 4)).last { (k: Int) -> Bool in Array(good[k..<(k + 4)]) == signature }
        let eocd = try #require(found)
        lyingCount[eocd + 10] = 0xFE; lyingCount[eocd + 11] = 0xFF
        var badOffset = good
        badOffset[eocd + 16] = 0xFF; badOffset[eocd + 17] = 0xFF; badOffset[eocd + 18] = 0xFF; badOffset[eocd + 19] = 0x7F
        let cases: [[UInt8]] = [
            [], Array("PK".utf8), [UInt8](repeating: 0, count: 1000), Array(good.prefix(good.count / 2)),
            Array(good.suffix(30)), lyingCount, badOffset,
        ]
        for bytes in cases {
            #expect(throws: ImportProblem.self) { _ = try ZipArchive(Data(bytes)) }
        }
        // Cutting the archive's middle leaves a directory that points at garbage.
        var holed = good
        for k in 0..<200 { holed[k] = 0 }
        #expect(try entryProblems(holed).first?.contains("local header") == true)
    }

    @Test func inflatesAllBlockTypes() throws {
        // A stored block, then an empty final fixed-Huffman block.
        let stored: [UInt8] = [0x00, 0x03, 0x00, 0xFC, 0xFF] + Array("xyz".utf8)
        #expect(try Inflater.inflate(stored + [0x03, 0x00], limit: 100) == Array("xyz".utf8))
        #expect(throws: Inflater.Failure.self) { try Inflater.inflate(stored + [0x03, 0x00], limit: 2) }
        #expect(try Inflater.inflate([0x01, 0x03, 0x00, 0xFC, 0xFF] + Array("xyz".utf8), limit: 100) == Array("xyz".utf8))
        #expect(throws: Inflater.Failure.self) { try Inflater.inflate([0x01, 0x03, 0x00, 0xFC, 0xFE] + Array("xyz".utf8), limit: 100) }
        #expect(throws: Inflater.Failure.self) { try Inflater.inflate([0x07], limit: 100) }   // block type 3
        #expect(throws: Inflater.Failure.self) { try Inflater.inflate([], limit: 100) }
    }
}
