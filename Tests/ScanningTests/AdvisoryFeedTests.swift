import Foundation
import Testing
@testable import Scanning

@Suite struct AdvisoryFeedTests {
    static let osvRecord = """
        {"schema_version": "1.6.0", "id": "GHSA-xxxx-0001", "modified": "2026-11-01T00:00:00Z", "aliases": ["CVE-2026-0001"],
         "affected": [{"package": {"ecosystem": "PyPI", "name": "Foo_Bar.baz"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.4"}]},
                                  {"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"fixed": "2.1"}, {"limit": "3"}]}],
                       "versions": ["0.9"]},
                      {"package": {"ecosystem": "Debian:12", "name": "foo"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2-1+deb12u1"}]}]}],
         "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]}
        """
    static let debian = """
        {"openssl": {"CVE-2026-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.14-1~deb12u2", "urgency": "medium"},
                                                   "trixie": {"status": "open", "urgency": "unimportant", "nodsa": "Minor issue"}}}}}
        """
    static let alpine = """
        {"distroversion": "v3.20", "reponame": "main", "packages": [{"pkg": {"name": "musl", "secfixes": {"1.2.5-r1": ["CVE-2025-1"]}}}]}
        """

    @Test(arguments: [(osvRecord, AdvisoryFeedFormat.osv), (debian, .debian), (alpine, .alpine)])
    func detectsEachFormat(_ c: (String, AdvisoryFeedFormat)) throws {
        #expect(try AdvisoryFeedFormat.detect(Data(c.0.utf8)) == c.1)
        let (format, result) = try AdvisoryFeed.importData(Data(c.0.utf8), format: nil)
        #expect(format == c.1 && !result.advisories.isEmpty && result.problems.isEmpty)
    }

    @Test(arguments: ["[1, 2]", "{}", "{\"a\": 1}", "\"text\"", "not json", String(repeating: "[", count: 100_000)])
    func refusesDocumentsOfNoKnownShape(_ text: String) {
        #expect(throws: ImportProblem.self) { try AdvisoryFeed.importData(Data(text.utf8), format: nil) }
    }

    @Test func aGivenFormatIsNotSecondGuessed() throws {
        // The Debian document read as Alpine: no "packages", so nothing; as OSV: no "id".
        let alpine = try AdvisoryFeed.importData(Data(Self.debian.utf8), format: .alpine)
        #expect(alpine.result.advisories.isEmpty)
        #expect(throws: ImportProblem.self) { try AdvisoryFeed.importData(Data(Self.debian.utf8), format: .osv) }
        var zip = StoredZipWriter()
        var bytes = try zip.entry(name: "a.json", contents: Array(Self.osvRecord.utf8))
        bytes += zip.finish()
        #expect(throws: ImportProblem.self) { try AdvisoryFeed.importData(Data(bytes), format: .debian) }
    }

    @Test func storedFormRoundTripsAndIsStable() throws {
        let (_, result) = try AdvisoryFeed.importData(Data(Self.osvRecord.utf8), format: .osv)
        let advisory = try #require(result.advisories.first)
        let encoded = try AdvisoryFeed.encode(advisory)
        #expect(try AdvisoryFeed.decode(encoded) == advisory)
        #expect(try AdvisoryFeed.encode(AdvisoryFeed.decode(encoded)) == encoded)
        // Events are stored as OSV writes them.
        let text = String(decoding: encoded, as: UTF8.self)
        #expect(text.contains("{\"last_affected\":\"1.4\"}") && text.contains("{\"limit\":\"3\"}"))
        #expect(throws: DecodingError.self) { try AdvisoryFeed.decode(Data(text.replacingOccurrences(of: "{\"limit\":\"3\"}", with: "{}").utf8)) }
    }

    @Test func lookupKeysAreTheMatchersKeys() throws {
        let (_, result) = try AdvisoryFeed.importData(Data(Self.osvRecord.utf8), format: .osv)
        let keys = AdvisoryFeed.lookupKeys(of: try #require(result.advisories.first)).map { "\($0.ecosystem)/\($0.name)" }
        #expect(keys == ["pypi/foo-bar-baz", "debian/foo"])
        let installed = InstalledPackage(ecosystem: "Debian", name: "libfoo1", version: "1.2-1", sourceName: "foo", release: "bookworm")
        let key = AdvisoryIndex.lookupKey(for: installed)
        #expect("\(key.ecosystem)/\(key.name)" == "debian/foo")
        #expect(AdvisoryIndex.lookupKey(for: InstalledPackage(ecosystem: "PyPI", name: "foo.bar_BAZ", version: "1")).name == "foo-bar-baz")
    }

    @Test func currentLeavesOutWithdrawnAndKeepsTheLastOfAnID() {
        let a = Advisory(id: "A", source: .osv, affected: [])
        var b = Advisory(id: "B", source: .osv, affected: [])
        b.withdrawn = "2026-01-01T00:00:00Z"
        var a2 = a
        a2.summary = "newer"
        #expect(AdvisoryFeed.current([a, b, a2]) == [a2])
    }

    @Test func storedZipWriterOutputReadsBackAsAnOSVExport() throws {
        var zip = StoredZipWriter()
        var bytes: [UInt8] = []
        for i in 0..<3 {
            bytes += try zip.entry(name: "R-\(i).json", contents: Array(Self.osvRecord.replacingOccurrences(of: "GHSA-xxxx-0001", with: "R-\(i)").utf8))
        }
        bytes += try zip.entry(name: "README.md", contents: Array("not a record".utf8))
        bytes += zip.finish()
        let result = try OSVImporter.importZip(Data(bytes))
        #expect(result.advisories.map(\.id) == ["R-0", "R-1", "R-2"] && result.problems.isEmpty)
    }

    @Test func aZipWhoseEntriesDeclareMoreThanTheInflationBudgetIsRefusedBeforeInflating() throws {
        var zip = StoredZipWriter()
        var bytes: [UInt8] = []
        let entries = ImportLimits.maxInflatedBytes / ImportLimits.maxRecordBytes + 1
        for i in 0..<entries { bytes += try zip.entry(name: "\(i).json", contents: Array("{}".utf8)) }
        let directoryStart = bytes.count
        bytes += zip.finish()
        // Every central directory entry now declares the largest record size.
        var p = directoryStart
        while p + 46 <= bytes.count, bytes[p..<p + 4].elementsEqual([0x50, 0x4B, 0x01, 0x02]) {
            let size = UInt32(ImportLimits.maxRecordBytes)
            bytes[p + 24] = UInt8(size & 0xFF); bytes[p + 25] = UInt8(size >> 8 & 0xFF)
            bytes[p + 26] = UInt8(size >> 16 & 0xFF); bytes[p + 27] = UInt8(size >> 24)
            let nameLength = Int(bytes[p + 28]) | Int(bytes[p + 29]) << 8
            p += 46 + nameLength
        }
        #expect(throws: ImportProblem.self) { try OSVImporter.importZip(Data(bytes)) }
        // The same archive with honest sizes imports (every entry a broken record, not a bomb).
        var honest = StoredZipWriter()
        var ok: [UInt8] = []
        for i in 0..<entries { ok += try honest.entry(name: "\(i).json", contents: Array("{}".utf8)) }
        ok += honest.finish()
        let result = try OSVImporter.importZip(Data(ok))
        #expect(result.advisories.isEmpty && result.problems.count == entries)
    }

    @Test func debianNoDSAAndUnfixedStatesSurviveTheStoredForm() throws {
        let (_, result) = try AdvisoryFeed.importData(Data(Self.debian.utf8), format: nil)
        let advisory = try AdvisoryFeed.decode(AdvisoryFeed.encode(try #require(result.advisories.first)))
        let trixie = try #require(advisory.affected.first { $0.release == "trixie" })
        let bookworm = try #require(advisory.affected.first { $0.release == "bookworm" })
        #expect(trixie.noDSA && trixie.isUnfixed && trixie.severity?.level == .low)
        #expect(!bookworm.noDSA && !bookworm.isUnfixed && bookworm.fixedVersions == ["3.0.14-1~deb12u2"])
    }
}
