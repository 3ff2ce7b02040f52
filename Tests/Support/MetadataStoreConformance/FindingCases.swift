import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let findingCases: [Case] = [
        Case("scannedImages: matched manifests per repository with tags, quarantine and counts, paged in order, by name prefix") { s in
            let one = try await image(s, "sum-b/app", "sum-1", tag: "v1").record.digest
            _ = try await image(s, "sum-a/app", "sum-1")
            let two = try await image(s, "sum-a/app", "sum-2", tag: "x").record.digest
            _ = try await image(s, "sum-a/app", "sum-3", tag: "not-matched")
            _ = try await image(s, "sumx/app", "sum-4")
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            func finding(_ id: String, _ severity: String) -> StoredFinding {
                StoredFinding(advisoryID: id, aliases: [], ecosystem: "Debian", package: "p", sourcePackage: nil, installedVersion: "1",
                              fixedVersion: nil, severity: severity, score: nil)
            }
            try await s.putFindings(StoredFindings(manifest: one, advisoryVersion: 7, matchedAt: at,
                                                   findings: [finding("CVE-1", "High"), finding("CVE-2", "High"), finding("CVE-3", "Low")]))
            try await s.putFindings(StoredFindings(manifest: two, advisoryVersion: 6, matchedAt: at, findings: []))
            try await s.putFindings(StoredFindings(manifest: digest("sum-4"), advisoryVersion: 6, matchedAt: at, findings: [finding("CVE-9", "Critical")]))
            #expect(try await s.setQuarantine(repository: "sum-a/app", digest: two, state: .pending, reason: nil))

            let all = try await s.scannedImages(namePrefix: "sum-", after: nil, limit: 100)
            let aFirst = [one, two].sorted { $0.string < $1.string }
            #expect(all.map { "\($0.repository) \($0.manifest)" }
                    == aFirst.map { "sum-a/app \($0)" } + ["sum-b/app \(one)"])
            let b = try #require(all.last)
            #expect(b.tags == ["v1"] && b.counts == ["High": 2, "Low": 1] && b.total == 3 && b.advisoryVersion == 7 && b.matchedAt == at)
            #expect(b.quarantineState == nil)
            let ofTwo = try #require(all.first { $0.manifest == two })
            #expect(ofTwo.tags == ["x"] && ofTwo.counts.isEmpty && ofTwo.quarantineState == .pending && ofTwo.advisoryVersion == 6)
            #expect(all.first { $0.manifest == one && $0.repository == "sum-a/app" }?.tags == [])

            // Paged: one row at a time gives the same rows in the same order.
            var paged: [ScannedImageSummary] = []
            var cursor: ScannedImageCursor?
            while true {
                let page = try await s.scannedImages(namePrefix: "sum-", after: cursor, limit: 1)
                if page.isEmpty { break }
                #expect(page.count == 1)
                paged += page
                cursor = page.last?.cursor
            }
            #expect(paged == all)
            // By prefix: another prefix, the whole registry, nothing asked.
            #expect(try await s.scannedImages(namePrefix: "sum-b/", after: nil, limit: 100).map(\.repository) == ["sum-b/app"])
            #expect(try await s.scannedImages(namePrefix: "sumx/", after: nil, limit: 100).map(\.counts) == [["Critical": 1]])
            #expect(try await s.scannedImages(namePrefix: nil, after: nil, limit: 100).count == 4)
            #expect(try await s.scannedImages(namePrefix: nil, after: nil, limit: 0).isEmpty)
        },
        Case("putFindings: a manifest's findings round-trip sorted and once each; a second put replaces them") { s in
            let m1 = digest("findings-1"), m2 = digest("findings-2")
            let none = try await s.findings(manifest: m1)
            #expect(none == nil)
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            let openssl = StoredFinding(advisoryID: "DSA-5532-1", aliases: ["CVE-2023-5678", "CVE-2023-5363"], ecosystem: "Debian",
                                        package: "libssl3", sourcePackage: "openssl", installedVersion: "3.0.11-1~deb12u1",
                                        fixedVersion: "3.0.11-1~deb12u2", severity: "High", score: 7.5)
            let unfixed = StoredFinding(advisoryID: "CVE-2024-0001", aliases: [], ecosystem: "PyPI", package: "requests",
                                        sourcePackage: nil, installedVersion: "2.28.1", fixedVersion: nil, severity: "Unknown", score: nil)
            try await s.putFindings(StoredFindings(manifest: m1, advisoryVersion: 3, matchedAt: at, findings: [openssl, unfixed, openssl]))
            try await s.putFindings(StoredFindings(manifest: m2, advisoryVersion: 3, matchedAt: at, findings: [unfixed]))
            let read = try #require(try await s.findings(manifest: m1))
            #expect(read == StoredFindings(manifest: m1, advisoryVersion: 3, matchedAt: at, findings: [unfixed, openssl]))

            let later = at.addingTimeInterval(60)
            try await s.putFindings(StoredFindings(manifest: m1, advisoryVersion: 4, matchedAt: later, findings: [openssl]))
            let replaced = try await s.findings(manifest: m1)
            #expect(replaced == StoredFindings(manifest: m1, advisoryVersion: 4, matchedAt: later, findings: [openssl]))
            // Matched with nothing found is a state of its own, not "never matched".
            try await s.putFindings(StoredFindings(manifest: m1, advisoryVersion: 5, matchedAt: later, findings: []))
            let clean = try await s.findings(manifest: m1)
            #expect(clean == StoredFindings(manifest: m1, advisoryVersion: 5, matchedAt: later, findings: []))
            // The other manifest is untouched.
            let other = try await s.findings(manifest: m2)
            #expect(other?.findings == [unfixed] && other?.advisoryVersion == 3)
        },
        Case("putFindings of several sets: each replaces its manifest's findings, in one call; the last of a manifest named twice wins") { s in
            let a = digest("batch-a"), b = digest("batch-b"), c = digest("batch-c")
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            func finding(_ id: String) -> StoredFinding {
                StoredFinding(advisoryID: id, aliases: ["ALIAS-" + id], ecosystem: "Debian", package: "libc6", sourcePackage: "glibc",
                              installedVersion: "2.36", fixedVersion: "2.37", severity: "High", score: 7.5)
            }
            try await s.putFindings(StoredFindings(manifest: a, advisoryVersion: 1, matchedAt: at, findings: [finding("OLD")]))
            try await s.putFindings([
                StoredFindings(manifest: a, advisoryVersion: 2, matchedAt: at, findings: [finding("CVE-2"), finding("CVE-1")]),
                StoredFindings(manifest: b, advisoryVersion: 2, matchedAt: at, findings: []),
                StoredFindings(manifest: c, advisoryVersion: 2, matchedAt: at, findings: [finding("CVE-3")]),
                StoredFindings(manifest: c, advisoryVersion: 3, matchedAt: at, findings: [finding("CVE-4")]),
            ])
            #expect(try await s.findings(manifest: a) == StoredFindings(manifest: a, advisoryVersion: 2, matchedAt: at,
                                                                        findings: [finding("CVE-1"), finding("CVE-2")]))
            #expect(try await s.findings(manifest: b) == StoredFindings(manifest: b, advisoryVersion: 2, matchedAt: at, findings: []))
            #expect(try await s.findings(manifest: c) == StoredFindings(manifest: c, advisoryVersion: 3, matchedAt: at, findings: [finding("CVE-4")]))
            try await s.putFindings([])
            #expect(try await s.findings(manifest: a)?.advisoryVersion == 2)
        },
        Case("findings(manifests:): each asked manifest's findings as the single read gives them; never matched ones absent") { s in
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            func finding(_ id: String, _ package: String) -> StoredFinding {
                StoredFinding(advisoryID: id, aliases: ["ALIAS-" + id], ecosystem: "Debian", package: package, sourcePackage: "src",
                              installedVersion: "1.0", fixedVersion: id.hasSuffix("1") ? "1.1" : nil, severity: "High", score: 7.5)
            }
            let count = ScanStoreLimits.maxInventoryBatch + 10
            var manifests: [Digest] = []
            for k in 0..<count {
                let m = digest("fm-\(k)")
                manifests.append(m)
                let findings = k % 4 == 0 ? [] : [finding("CVE-\(k)-2", "b"), finding("CVE-\(k)-1", "a")]
                try await s.putFindings(StoredFindings(manifest: m, advisoryVersion: Int64(k % 5), matchedAt: at, findings: findings))
            }
            let never = digest("fm-never")
            let asked = Array(manifests.prefix(count - 3)) + [never, manifests[0]]
            let read = try await s.findings(manifests: asked.reversed())
            #expect(read.map(\.manifest) == Array(manifests.prefix(count - 3)).sorted { $0.string < $1.string })
            for set in read {
                let single = try await s.findings(manifest: set.manifest)
                #expect(single == set)
            }
            #expect(read.first { $0.manifest == manifests[0] }?.findings == [])
            #expect(read.first { $0.manifest == manifests[1] }?.findings.count == 2)
            #expect(try await s.findings(manifests: []).isEmpty)
            #expect(try await s.findings(manifests: [never]).isEmpty)
        },
        Case("putFindings(_:unchanged:): unchanged manifests move to the version without their findings rewritten; sets replace; never matched stays so") { s in
            let a = digest("keep-a"), b = digest("keep-b"), c = digest("keep-c"), never = digest("keep-never")
            let at = Date(timeIntervalSince1970: 1_700_000_000), later = at.addingTimeInterval(60)
            func finding(_ id: String) -> StoredFinding {
                StoredFinding(advisoryID: id, aliases: [], ecosystem: "Debian", package: "libc6", sourcePackage: "glibc",
                              installedVersion: "2.36", fixedVersion: "2.37", severity: "High", score: 7.5)
            }
            try await s.putFindings([
                StoredFindings(manifest: a, advisoryVersion: 1, matchedAt: at, findings: [finding("CVE-A")]),
                StoredFindings(manifest: b, advisoryVersion: 1, matchedAt: at, findings: []),
                StoredFindings(manifest: c, advisoryVersion: 1, matchedAt: at, findings: [finding("CVE-C")]),
            ])
            try await s.putFindings([StoredFindings(manifest: c, advisoryVersion: 2, matchedAt: later, findings: [finding("CVE-C2")])],
                                    unchanged: [a, b, never, a], advisoryVersion: 2, matchedAt: later)
            #expect(try await s.findings(manifest: a) == StoredFindings(manifest: a, advisoryVersion: 2, matchedAt: later, findings: [finding("CVE-A")]))
            #expect(try await s.findings(manifest: b) == StoredFindings(manifest: b, advisoryVersion: 2, matchedAt: later, findings: []))
            #expect(try await s.findings(manifest: c) == StoredFindings(manifest: c, advisoryVersion: 2, matchedAt: later, findings: [finding("CVE-C2")]))
            #expect(try await s.findings(manifest: never) == nil)
            // Only unchanged ones, nothing to rewrite.
            try await s.putFindings([], unchanged: [c], advisoryVersion: 3, matchedAt: later)
            #expect(try await s.findings(manifest: c)?.advisoryVersion == 3)
            #expect(try await s.findings(manifest: c)?.findings == [finding("CVE-C2")])
            try await s.putFindings([], unchanged: [], advisoryVersion: 9, matchedAt: later)
            #expect(try await s.findings(manifest: a)?.advisoryVersion == 2)
        },
        Case("putFindings: the same advisory on two versions of one package is two findings; empty optionals read as nil") { s in
            let m = digest("findings-3")
            let a = StoredFinding(advisoryID: "GHSA-x", aliases: ["CVE-1"], ecosystem: "Maven", package: "org.yaml:snakeyaml",
                                  sourcePackage: "", installedVersion: "1.33", fixedVersion: "", severity: "Critical", score: 9.8)
            var b = a
            b.installedVersion = "1.30"
            try await s.putFindings(StoredFindings(manifest: m, advisoryVersion: 1, matchedAt: Date(timeIntervalSince1970: 1), findings: [a, b]))
            let read = try #require(try await s.findings(manifest: m))
            #expect(read.findings.map(\.installedVersion) == ["1.30", "1.33"])
            #expect(read.findings.allSatisfy { $0.sourcePackage == nil && $0.fixedVersion == nil && $0.score == 9.8 && $0.aliases == ["CVE-1"] })
        },
        Case("findings go when the last copy of their manifest goes: not while another repository or a recycle bin holds it") { s in
            let shared = try await image(s, "a", "findings-shared").record.digest
            let again = try await image(s, "b", "findings-shared").record.digest
            #expect(again == shared)
            let other = try await image(s, "a", "findings-other").record.digest
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            let f = StoredFinding(advisoryID: "CVE-2099-1", aliases: [], ecosystem: "Debian", package: "p", sourcePackage: nil,
                                  installedVersion: "1", fixedVersion: nil, severity: "High", score: nil)
            for d in [shared, other] {
                try await s.putFindings(StoredFindings(manifest: d, advisoryVersion: 1, matchedAt: at, findings: [f]))
            }
            try await deleteManifests(s, "a", [shared])
            #expect(try await s.findings(manifest: shared)?.findings == [f])            // b still holds it
            let until = Date().addingTimeInterval(3600)
            try await deleteManifests(s, "b", [shared], softDeleteUntil: until)
            #expect(try await s.findings(manifest: shared)?.findings == [f])            // restorable from b's recycle bin
            _ = try await s.expireDeletedManifests(now: until.addingTimeInterval(1), limit: 10_000)
            #expect(try await s.findings(manifest: shared) == nil)
            #expect(try await s.findings(manifest: other)?.findings == [f])
            try await deleteManifests(s, "a", [other])
            #expect(try await s.findings(manifest: other) == nil)
        },
        Case("appendScanEvent: a scan event with its origin, tag and detail") { s in
            let d = digest("scanned")
            let before = try await s.latestEventSequence()
            try await EventOrigin.$current.withValue(EventOrigin(actor: "scanner", address: "-")) {
                try await s.appendScanEvent(repository: "payments/api", digest: d, tag: "v1", detail: #"{"new":["CVE-1"]}"#)
            }
            let appended = try await s.events(after: before, limit: 10)
            #expect(appended.map(\.action) == [EventAction.scan])
            #expect(appended.first?.repository == "payments/api" && appended.first?.digest == d.string && appended.first?.tag == "v1")
            #expect(appended.first?.actor == "scanner" && appended.first?.detail == #"{"new":["CVE-1"]}"#)
        },
    ]
}
