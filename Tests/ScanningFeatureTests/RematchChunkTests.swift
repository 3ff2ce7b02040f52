import Foundation
import NIOConcurrencyHelpers
import OCIModel
import RegistryCore
import RegistryStore
import Scanning
import Testing
@testable import ScanningFeature

/// A `FindingStore` that records what the matcher asks it to write (and passes everything on).
final class RecordingFindingStore: FindingStore {
    let inner: any FindingStore
    /// Manifests whose findings were written in full, and those only moved to a new version.
    let rewritten = NIOLockedValueBox<[Digest]>([])
    let moved = NIOLockedValueBox<[Digest]>([])

    init(_ inner: any FindingStore) { self.inner = inner }

    func putFindings(_ findings: StoredFindings) async throws {
        rewritten.withLockedValue { $0.append(findings.manifest) }
        try await inner.putFindings(findings)
    }

    func putFindings(_ sets: [StoredFindings]) async throws {
        rewritten.withLockedValue { $0 += sets.map(\.manifest) }
        try await inner.putFindings(sets)
    }

    func putFindings(_ sets: [StoredFindings], unchanged: [Digest], advisoryVersion: Int64, matchedAt: Date) async throws {
        rewritten.withLockedValue { $0 += sets.map(\.manifest) }
        moved.withLockedValue { $0 += unchanged }
        try await inner.putFindings(sets, unchanged: unchanged, advisoryVersion: advisoryVersion, matchedAt: matchedAt)
    }

    func findings(manifest: Digest) async throws -> StoredFindings? { try await inner.findings(manifest: manifest) }
    func findings(manifests: [Digest]) async throws -> [StoredFindings] { try await inner.findings(manifests: manifests) }
    func appendScanEvent(repository: String, digest: Digest, tag: String?, detail: String) async throws {
        try await inner.appendScanEvent(repository: repository, digest: digest, tag: tag, detail: detail)
    }
    func scannedImages(namePrefix: String?, after: ScannedImageCursor?, limit: Int) async throws -> [ScannedImageSummary] {
        try await inner.scannedImages(namePrefix: namePrefix, after: after, limit: limit)
    }
}

/// The re-match's chunk (issue 15 item 10): the findings and inventories of a page read in one
/// store read each, a manifest whose findings did not change only moved to the new version, and
/// the verdicts given from what is stored.
@Suite struct RematchChunkTests {
    static func libc6(_ version: String) throws -> [UInt8] {
        try gzip(tar([("etc/os-release", osRelease), ("var/lib/dpkg/status", """
            Package: libc6
            Status: install ok installed
            Architecture: amd64
            Source: glibc
            Version: \(version)

            """)]))
    }

    @Test func anUnchangedManifestIsOnlyMovedToTheNewVersionAChangedOneIsRewrittenAndTheVerdictFollows() async throws {
        let f = try ScanFixture(findings: true)
        let gate = try #require(f.feature.gate)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        _ = try await f.registry.updateQuarantine(QuarantinePolicy(enabled: true), dryRun: false)
        try await gate.update(ScanPolicyChange(blockSeverity: "High"), who: "alice")

        // u3: CVE-2099-1001 (High) and 1003 (Low); u4: 1003 only; u9: 1003 only. The u4 image is
        // held by two repositories.
        let vulnerable = try await f.image("library/u3", tag: "1", layers: [try Self.libc6("2.36-9+deb12u3")])
        let patched = try await f.image("library/u4", tag: "1", layers: [try Self.libc6("2.36-9+deb12u4")])
        let again = try await f.image("library/u4-copy", tag: "1", layers: [try Self.libc6("2.36-9+deb12u4")])
        #expect(again == patched)
        let current = try await f.image("library/u9", tag: "1", layers: [try Self.libc6("2.36-9+deb12u9")])
        try await f.drain(f.feature.runner())
        func state(_ repo: String, _ d: Digest) async throws -> QuarantineState? {
            try await f.registry.metadata.manifest(repository: repo, digest: d)?.quarantineState
        }
        #expect(try await state("library/u3", vulnerable) == .failed)
        #expect(try await state("library/u4", patched) == .passed)
        #expect(try await state("library/u4-copy", patched) == .passed)
        #expect(try await state("library/u9", current) == .passed)
        let before = try #require(try await f.backends.metadata.findings(manifest: current))
        #expect(before.findings.map(\.advisoryID) == ["CVE-2099-1003"])

        // CVE-2099-1002 (urgency high) is now fixed only in u5: u3 and u4 get it, u9 does not.
        let updated = FindingsTests.tracker
            .replacingOccurrences(of: "\"fixed_version\": \"2.36-9+deb12u1\"", with: "\"fixed_version\": \"2.36-9+deb12u5\"")
        #expect(updated != FindingsTests.tracker)
        let second = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)

        let recorder = RecordingFindingStore(f.backends.metadata)
        let rematcher = FindingRematcher(inventories: f.store, matcher: FindingMatcher(advisories: f.backends.metadata, store: recorder),
                                         gate: gate)
        let pass = try await rematcher.rematch(since: first.version)
        #expect(pass.version == second.version && pass.rematched == 3)
        #expect(Set(recorder.rewritten.withLockedValue { $0 }) == [vulnerable, patched])
        #expect(recorder.moved.withLockedValue { $0 } == [current])

        // Each one at the new version; the unchanged one keeps its findings exactly.
        let after = try #require(try await f.backends.metadata.findings(manifest: current))
        #expect(after.advisoryVersion == second.version && after.findings == before.findings)
        for d in [vulnerable, patched] {
            let set = try #require(try await f.backends.metadata.findings(manifest: d))
            #expect(set.advisoryVersion == second.version && set.findings.map(\.advisoryID).contains("CVE-2099-1002"))
        }
        // The verdicts follow: u4 now fails in both repositories that hold it, u9 still passes.
        #expect(try await state("library/u4", patched) == .failed)
        #expect(try await state("library/u4-copy", patched) == .failed)
        let reason = try await f.registry.metadata.manifest(repository: "library/u4-copy", digest: patched)?.quarantineReason
        #expect(reason?.contains("CVE-2099-1002") == true)
        #expect(try await state("library/u3", vulnerable) == .failed)
        #expect(try await state("library/u9", current) == .passed)
        // New High findings were announced once per repository holding the image.
        let events = try await f.registry.metadata.events(after: 0, limit: 10_000).filter { $0.action == .scan && $0.digest == patched.string }
        #expect(Set(events.map(\.repository)) == ["library/u4", "library/u4-copy"] && events.count == 2)

        // Nothing left to do: a second pass writes nothing.
        recorder.rewritten.withLockedValue { $0 = [] }
        recorder.moved.withLockedValue { $0 = [] }
        #expect(try await rematcher.rematch(since: first.version).rematched == 0)
        #expect(recorder.rewritten.withLockedValue { $0 }.isEmpty && recorder.moved.withLockedValue { $0 }.isEmpty)
    }

    @Test func aPageIsLoadedInOneReadAndOnlyMatchableInventoriesAreDecoded() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        var images: [Digest] = []
        for k in 0..<7 {
            images.append(try await f.image("library/many", tag: "t\(k)", layers: [try Self.libc6("2.36-9+deb12u\(k)")]))
        }
        try await f.drain(f.feature.runner())
        let matcher = try #require(f.feature.inventorier.matcher)
        let rematcher = FindingRematcher(inventories: f.store, matcher: matcher)
        // An inventory that does not decode is left out; one never matched is due; a current one is not.
        var broken = try #require(try await f.store.inventory(manifest: images[0]))
        broken.document = [1, 2, 3]
        try await f.store.putInventory(broken, packages: [])
        let loaded = try await rematcher.load(images + [Digest.compute([9])]) { previous in previous.map { $0.manifest != images[1] } ?? true }
        #expect(loaded.map(\.manifest) == Array(images[2...]))
        for item in loaded {
            let alone = try ScanDocument.decode(ImageInventory.self, try #require(try await f.store.inventory(manifest: item.manifest)).document)
            #expect(item.inventory == alone)
            #expect(item.previous?.advisoryVersion == first.version)
        }
    }

    static func libc6AndLibssl3(_ glibc: String) throws -> [UInt8] {
        try gzip(tar([("etc/os-release", osRelease), ("var/lib/dpkg/status", """
            Package: libc6
            Status: install ok installed
            Architecture: amd64
            Source: glibc
            Version: \(glibc)

            Package: libssl3
            Status: install ok installed
            Architecture: amd64
            Source: openssl
            Version: 3.0.11-1~deb12u2

            """)]))
    }

    static func keys(_ inventory: ImageInventory) -> [InventoryPackageKey] {
        AdvisoryIndex.packageKeys(of: inventory.installedPackages()).map { InventoryPackageKey(ecosystem: $0.ecosystem, name: $0.name) }
    }

    /// A manifest whose findings were current when the advisory change began has only the
    /// packages the change touched matched again; its other findings are kept as stored (doctored
    /// here to show it). One matched against an older version is matched in full. A chunk is
    /// stamped with the pass's version, never a newer one its advisory read saw.
    @Test func aCurrentManifestHasOnlyItsTouchedPackagesMatchedAgain() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let current = try await f.image("library/a", tag: "1", layers: [try Self.libc6AndLibssl3("2.36-9+deb12u3")])
        let older = try await f.image("library/b", tag: "1", layers: [try Self.libc6AndLibssl3("2.36-9+deb12u2")])
        let remade = try await f.image("library/c", tag: "1", layers: [try Self.libc6AndLibssl3("2.36-9+deb12u1")])
        try await f.drain(f.feature.runner())
        let store = f.backends.metadata
        for d in [current, older, remade] {
            let ids = try #require(try await store.findings(manifest: d)).findings.map(\.advisoryID)
            #expect(ids.contains("CVE-2099-1001") && !ids.contains("CVE-2099-2001"))
        }
        // Doctored: the glibc findings dropped. `current` stays at the first version, `older` one below it.
        for (d, version) in [(current, first.version), (older, first.version - 1), (remade, first.version)] {
            var set = try #require(try await store.findings(manifest: d))
            set.findings.removeAll { $0.sourcePackage == "glibc" }
            set.advisoryVersion = version
            try await store.putFindings(set)
        }
        // `remade`'s inventory is stored again after its findings were matched (a new cataloger):
        // its findings may not be that inventory's, so it is matched in full.
        var again = try #require(try await f.store.inventory(manifest: remade))
        again.createdAt = Date().addingTimeInterval(5)
        try await f.store.putInventory(again, packages: Self.keys(try ScanDocument.decode(ImageInventory.self, again.document)))
        // openssl's CVE-2099-2001 is now fixed only in deb12u3: the installed deb12u2 gets it.
        let updated = FindingsTests.tracker.replacingOccurrences(of: "3.0.11-1~deb12u2", with: "3.0.11-1~deb12u3")
        #expect(updated != FindingsTests.tracker)
        let second = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)
        #expect(try await store.advisoryPackagesChanged(since: first.version) == [AdvisoryPackageKey(ecosystem: "debian", name: "openssl")])

        let rematcher = FindingRematcher(inventories: f.store, matcher: FindingMatcher(advisories: store, store: store))
        let pass = try await rematcher.rematch(since: first.version)
        #expect(pass.version == second.version && pass.rematched == 3)
        let c = try #require(try await store.findings(manifest: remade))
        #expect(c.findings.contains { $0.advisoryID == "CVE-2099-1001" }, "matched in full: its inventory is newer than its findings")
        let a = try #require(try await store.findings(manifest: current))
        #expect(a.advisoryVersion == second.version)
        #expect(!a.findings.contains { $0.sourcePackage == "glibc" }, "kept as stored: glibc was not matched again")
        #expect(a.findings.contains { $0.advisoryID == "CVE-2099-2001" && $0.fixedVersion == "3.0.11-1~deb12u3" })
        let b = try #require(try await store.findings(manifest: older))
        #expect(b.advisoryVersion == second.version)
        #expect(b.findings.contains { $0.advisoryID == "CVE-2099-1001" }, "matched in full: glibc's findings are back")
        #expect(b.findings.contains { $0.advisoryID == "CVE-2099-2001" })
        // What a full match gives of openssl is what the partial one gave.
        let inventory = try ScanDocument.decode(ImageInventory.self, try #require(try await f.store.inventory(manifest: current)).document)
        let full = try await FindingMatcher(advisories: store, store: store).rematch([(current, inventory, nil)])
        let fullOpenssl = Set(full[0].findings.findings.filter { $0.sourcePackage == "openssl" })
        #expect(!fullOpenssl.isEmpty && fullOpenssl == Set(a.findings.filter { $0.sourcePackage == "openssl" }))

        // A pass whose version is older than what its read saw stamps its own.
        let stale = FindingMatcher.RematchScope(since: first.version, version: first.version,
                                                touched: [AdvisoryPackageKey(ecosystem: "debian", name: "openssl")])
        var previous = a
        previous.advisoryVersion = first.version
        let stamped = try await FindingMatcher(advisories: store, store: store).rematch([(current, inventory, previous)], scope: stale)
        #expect(stamped[0].findings.advisoryVersion == first.version)
        #expect(try await store.findings(manifest: current)?.advisoryVersion == first.version)
    }
}
