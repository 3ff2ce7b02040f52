import Foundation
import RegistryStore
import Testing

private func key(_ e: String, _ n: String) -> AdvisoryPackageKey { AdvisoryPackageKey(ecosystem: e, name: n) }

private func advisory(_ source: String, _ id: String, _ hash: String, _ packages: [AdvisoryPackageKey]) -> StoredAdvisory {
    StoredAdvisory(source: source, id: id, contentHash: hash, document: Array("\(id):\(hash)".utf8), packages: packages)
}

extension MetadataStoreConformance {
    static let advisoryCases: [Case] = [
        Case("importAdvisories: a first import makes version 1; lookups by package key find the records with their packages") { s in
            let empty = try await s.currentAdvisoryVersion()
            #expect(empty == 0)
            let outcome = try await s.importAdvisories(source: "osv:pypi", format: "osv", records: [
                advisory("osv:pypi", "GHSA-1", "h1", [key("pypi", "requests"), key("pypi", "urllib3")]),
                advisory("osv:pypi", "GHSA-2", "h2", [key("pypi", "requests")]),
                advisory("osv:pypi", "GHSA-3", "h3", [key("pypi", "flask")]),
            ], validators: AdvisoryFeedValidators(etag: "\"e1\"", lastModified: "Mon, 30 Nov 2026 10:00:00 GMT"))
            #expect(outcome == AdvisoryImportOutcome(version: 1, created: true, added: 3, changed: 0, removed: 0, unchanged: 0))
            let found = try await s.advisories(for: [key("pypi", "requests"), key("pypi", "nothing")])
            #expect(found.version == 1 && found.records.map(\.id) == ["GHSA-1", "GHSA-2"])
            #expect(found.records.first?.packages == [key("pypi", "requests"), key("pypi", "urllib3")])
            #expect(found.records.first?.document == Array("GHSA-1:h1".utf8) && found.records.first?.version == 1)
            let sources = try await s.advisorySources()
            #expect(sources.count == 1)
            let source = try #require(sources.first)
            #expect(source.source == "osv:pypi" && source.format == "osv" && source.version == 1 && source.records == 3)
            #expect(source.etag == "\"e1\"" && source.lastModified == "Mon, 30 Nov 2026 10:00:00 GMT" && source.lastError == nil)
            #expect(source.importedAt != nil && source.checkedAt != nil)
            let changed = try await s.advisoryPackagesChanged(since: 0)
            #expect(changed == [key("pypi", "flask"), key("pypi", "requests"), key("pypi", "urllib3")])
        },
        Case("importAdvisories: the same snapshot again writes nothing (no version, records keep theirs)") { s in
            let records = (0..<20).map { advisory("debian", "CVE-\($0)", "h\($0)", [key("debian", "pkg\($0 % 3)")]) }
            _ = try await s.importAdvisories(source: "debian", format: "debian", records: records, validators: nil)
            let again = try await s.importAdvisories(source: "debian", format: "debian", records: records, validators: nil)
            #expect(again == AdvisoryImportOutcome(version: 1, created: false, added: 0, changed: 0, removed: 0, unchanged: 20))
            let version = try await s.currentAdvisoryVersion()
            let changed = try await s.advisoryPackagesChanged(since: 1)
            let found = try await s.advisories(for: [key("debian", "pkg0")])
            #expect(version == 1 && changed.isEmpty && found.records.count == 7 && found.records.allSatisfy { $0.version == 1 })
        },
        Case("importAdvisories: a changed record is rewritten, a missing one removed; the changes name old and new packages") { s in
            _ = try await s.importAdvisories(source: "alpine", format: "alpine", records: [
                advisory("alpine", "CVE-1", "a", [key("alpine", "openssl")]),
                advisory("alpine", "CVE-2", "a", [key("alpine", "musl")]),
                advisory("alpine", "CVE-3", "a", [key("alpine", "zlib")]),
            ], validators: nil)
            let outcome = try await s.importAdvisories(source: "alpine", format: "alpine", records: [
                advisory("alpine", "CVE-1", "b", [key("alpine", "libssl3")]),
                advisory("alpine", "CVE-3", "a", [key("alpine", "zlib")]),
                advisory("alpine", "CVE-4", "a", [key("alpine", "curl")]),
            ], validators: nil)
            #expect(outcome == AdvisoryImportOutcome(version: 2, created: true, added: 1, changed: 1, removed: 1, unchanged: 1))
            let changed = try await s.advisoryPackagesChanged(since: 1)
            #expect(changed == [key("alpine", "curl"), key("alpine", "libssl3"), key("alpine", "musl"), key("alpine", "openssl")])
            let none = try await s.advisoryPackagesChanged(since: 2)
            #expect(none.isEmpty)
            let old = try await s.advisories(for: [key("alpine", "openssl"), key("alpine", "musl")])
            let new = try await s.advisories(for: [key("alpine", "libssl3"), key("alpine", "zlib")])
            #expect(old.records.isEmpty && new.version == 2)
            #expect(new.records.map(\.id) == ["CVE-1", "CVE-3"] && new.records.map(\.version) == [2, 1])
            #expect(new.records.first?.contentHash == "b" && new.records.first?.document == Array("CVE-1:b".utf8))
            let sources = try await s.advisorySources()
            #expect(sources.map(\.records) == [3] && sources.map(\.version) == [2])
        },
        Case("importAdvisories: sources are snapshots of their own; versions count across sources") { s in
            _ = try await s.importAdvisories(source: "a", format: "osv", records: [advisory("a", "X-1", "h", [key("go", "m")])], validators: nil)
            let b = try await s.importAdvisories(source: "b", format: "osv", records: [advisory("b", "X-1", "h", [key("go", "m")])], validators: nil)
            #expect(b.version == 2 && b.added == 1 && b.removed == 0)
            let emptied = try await s.importAdvisories(source: "a", format: "osv", records: [], validators: nil)
            #expect(emptied.version == 3 && emptied.removed == 1)
            let found = try await s.advisories(for: [key("go", "m")])
            #expect(found.version == 3 && found.records.map(\.source) == ["b"])
            let sources = try await s.advisorySources()
            #expect(sources.map(\.source) == ["a", "b"] && sources.map(\.records) == [0, 1] && sources.map(\.version) == [3, 2])
        },
        Case("importAdvisories: an id given twice, a record of another source or too large a record is refused, changing nothing") { s in
            _ = try await s.importAdvisories(source: "s", format: "osv", records: [advisory("s", "A", "1", [key("npm", "x")])], validators: nil)
            await #expect(throws: AdvisoryStoreError.self) {
                try await s.importAdvisories(source: "s", format: "osv", records: [
                    advisory("s", "B", "1", [key("npm", "x")]), advisory("s", "B", "2", [key("npm", "x")]),
                ], validators: nil)
            }
            await #expect(throws: AdvisoryStoreError.self) {
                try await s.importAdvisories(source: "s", format: "osv", records: [advisory("t", "B", "1", [])], validators: nil)
            }
            var big = advisory("s", "C", "1", [])
            big.document = [UInt8](repeating: 0x61, count: AdvisoryStoreLimits.maxDocumentBytes + 1)
            await #expect(throws: AdvisoryStoreError.self) {
                try await s.importAdvisories(source: "s", format: "osv", records: [big], validators: nil)
            }
            await #expect(throws: AdvisoryStoreError.self) {
                try await s.importAdvisories(source: "", format: "osv", records: [], validators: nil)
            }
            let version = try await s.currentAdvisoryVersion()
            let found = try await s.advisories(for: [key("npm", "x")])
            #expect(version == 1 && found.records.map(\.id) == ["A"])
        },
        Case("recordAdvisoryCheck: a failure is kept with the source (created if new) until a check or import clears it") { s in
            try await s.recordAdvisoryCheck(source: "feed", format: "debian", error: "HTTP 500")
            let failed = try await s.advisorySources()
            #expect(failed.map(\.lastError) == ["HTTP 500"] && failed.map(\.version) == [0] && failed.map(\.records) == [0])
            _ = try await s.importAdvisories(source: "feed", format: "debian", records: [advisory("feed", "CVE-1", "h", [])],
                                             validators: AdvisoryFeedValidators(etag: "\"v1\"", lastModified: nil))
            try await s.recordAdvisoryCheck(source: "feed", format: "debian", error: String(repeating: "x", count: 10_000))
            let long = try #require(try await s.advisorySources().first)
            #expect((long.lastError?.utf8.count ?? 0) <= AdvisoryStoreLimits.maxErrorLength + 3 && long.etag == "\"v1\"" && long.records == 1)
            try await s.recordAdvisoryCheck(source: "feed", format: "debian", error: nil)
            let ok = try #require(try await s.advisorySources().first)
            #expect(ok.lastError == nil && ok.etag == "\"v1\"" && ok.version == 1)
        },
        Case("advisories(for:): a reader during an import sees the database before or after it, whole") { s in
            let p = key("debian", "openssl")
            func snapshot(_ hash: String) -> [StoredAdvisory] {
                (0..<150).map { advisory("debian", "CVE-\($0)", hash, [p]) }
            }
            _ = try await s.importAdvisories(source: "debian", format: "debian", records: snapshot("old"), validators: nil)
            let seen = try await withThrowingTaskGroup(of: [String].self) { group in
                group.addTask {
                    _ = try await s.importAdvisories(source: "debian", format: "debian", records: snapshot("new"), validators: nil)
                    return []
                }
                for _ in 0..<4 {
                    group.addTask {
                        var views: [String] = []
                        for _ in 0..<15 {
                            let read = try await s.advisories(for: [p])
                            let hashes = Set(read.records.map(\.contentHash))
                            views.append("\(read.version):\(read.records.count):\(hashes.sorted().joined(separator: ","))")
                        }
                        return views
                    }
                }
                var all: [String] = []
                for try await v in group { all += v }
                return Set(all)
            }
            #expect(seen.isSubset(of: ["1:150:old", "2:150:new"]))
        },
    ]
}
