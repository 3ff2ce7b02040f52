import BerthAPIContract
import Foundation
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import Scanning
import Testing
@testable import ScanningFeature

/// Findings per manifest: the scan consumer matches each inventory against the advisory database
/// by the ecosystem's rules and stores the result.
@Suite struct FindingsTests {
    /// Debian 12 with packages built from other sources (libc6 from glibc, libssl3 from openssl).
    static func debianLayer() throws -> [UInt8] {
        let status = """
            Package: libc6
            Status: install ok installed
            Architecture: amd64
            Source: glibc
            Version: 2.36-9+deb12u3

            Package: libssl3
            Status: install ok installed
            Architecture: amd64
            Source: openssl
            Version: 3.0.11-1~deb12u2

            Package: zlib1g
            Status: install ok installed
            Architecture: amd64
            Source: zlib
            Version: 1:1.2.13.dfsg-1

            """
        return try gzip(tar([("etc/os-release", osRelease), ("var/lib/dpkg/status", status)]))
    }

    /// The Debian security tracker's JSON (its real shape), written for these tests.
    static let tracker = """
        {
          "glibc": {
            "CVE-2099-1001": {"description": "fixed by a bookworm backport",
              "releases": {"bookworm": {"status": "resolved", "fixed_version": "2.36-9+deb12u4", "urgency": "high"},
                           "sid": {"status": "resolved", "fixed_version": "2.37-1", "urgency": "high"}}},
            "CVE-2099-1002": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "2.36-9+deb12u1", "urgency": "high"}}},
            "CVE-2099-1003": {"releases": {"bookworm": {"status": "open", "urgency": "low", "nodsa": "Minor issue"}}},
            "CVE-2099-1004": {"releases": {"bullseye": {"status": "open", "urgency": "high"}}}
          },
          "openssl": {
            "CVE-2099-2001": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "3.0.11-1~deb12u2", "urgency": "medium"}}},
            "CVE-2099-2002": {"releases": {"bookworm": {"status": "open", "urgency": "unimportant"}}}
          },
          "libssl3": {
            "CVE-2099-3001": {"releases": {"bookworm": {"status": "open", "urgency": "high"}}}
          }
        }
        """

    static func database(_ f: ScanFixture) -> AdvisoryDatabase {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return AdvisoryDatabase(store: f.backends.metadata, configuration: AdvisoryDatabaseConfiguration(feeds: []), logger: logger)
    }

    @Test func pushedImageGetsFindingsByDebianSourcePackageAndRelease() async throws {
        let f = try ScanFixture(findings: true)
        let imported = try await Self.database(f).importUpload(Data(Self.tracker.utf8), format: .debian, source: nil)
        let image = try await f.image("library/debian", tag: "12", layers: [try Self.debianLayer()])
        try await f.drain(f.feature.runner())

        let stored = try #require(try await f.backends.metadata.findings(manifest: image))
        #expect(stored.advisoryVersion == imported.version)
        let summary = stored.findings.map {
            "\($0.advisoryID) \($0.package)/\($0.sourcePackage ?? "-") \($0.installedVersion) -> \($0.fixedVersion ?? "none") \($0.severity) \($0.fixState)"
        }
        // CVE-2099-1001: 2.36-9+deb12u3 < the bookworm backport u4 (sid's 2.37-1 is another release).
        // CVE-2099-1002: fixed in u1, below the installed u3: no finding. CVE-2099-1004: bullseye only.
        // CVE-2099-2001: the installed version is the fix. CVE-2099-3001 names a binary package.
        #expect(summary == [
            "CVE-2099-1001 libc6/glibc 2.36-9+deb12u3 -> 2.36-9+deb12u4 High fix-available",
            "CVE-2099-1003 libc6/glibc 2.36-9+deb12u3 -> none Low no-dsa",
            "CVE-2099-2002 libssl3/openssl 3.0.11-1~deb12u2 -> none Low unfixed",
        ])
        #expect(stored.findings.allSatisfy { $0.ecosystem == "Debian" })
    }

    @Test func imageScannedBeforeAnyAdvisoryHasNoFindingsAtVersionZero() async throws {
        let f = try ScanFixture(findings: true)
        let image = try await f.image("library/debian", tag: "12", layers: [try Self.debianLayer()])
        try await f.drain(f.feature.runner())
        let stored = try #require(try await f.backends.metadata.findings(manifest: image))
        #expect(stored.advisoryVersion == 0 && stored.findings.isEmpty)
    }

    @Test func everyImageOfAnIndexGetsItsFindings() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await Self.database(f).importUpload(Data(Self.tracker.utf8), format: .debian, source: nil)
        let amd = try await f.image("library/multi", layers: [try Self.debianLayer()])
        let clean = try gzip(tar([("etc/os-release", osRelease), ("var/lib/dpkg/status",
                                                                    dpkgStatus([("zlib1g", "1:1.2.13.dfsg-1")]))]))
        let arm = try await f.image("library/multi", layers: [clean])
        var children: [String] = []
        for (d, arch) in [(amd, "amd64"), (arm, "arm64")] {
            let size = try #require(try await f.registry.metadata.inlineContent(d)).count
            children.append("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"\(d)\",\"size\":\(size),\"platform\":{\"os\":\"linux\",\"architecture\":\"\(arch)\"}}")
        }
        let index = Array("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[\(children.joined(separator: ","))]}".utf8)
        _ = try await f.registry.putManifest(try RepositoryName("library/multi"), reference: .tag("1"), bytes: index,
                                             contentType: MediaType.ociIndex)
        try await f.drain(f.feature.runner())
        let first = try await f.backends.metadata.findings(manifest: amd)
        let second = try await f.backends.metadata.findings(manifest: arm)
        #expect(first?.findings.count == 3)
        #expect(second.map { $0.findings.isEmpty } == true)
        // The index itself is not an image: no findings of its own.
        let ofIndex = try await f.backends.metadata.findings(manifest: Digest.compute(index))
        #expect(ofIndex == nil)
    }
}

/// Continuous re-match: a new database version re-matches only the inventories that hold a touched
/// package, from the stored inventory.
@Suite struct FindingRematchTests {
    @Test func newAdvisoryVersionRematchesOnlyAffectedInventoriesWithoutReadingLayers() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let debian = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        let other = try await f.image("library/zlib", tag: "1", layers: [try gzip(tar([("etc/os-release", osRelease),
            ("var/lib/dpkg/status", dpkgStatus([("zlib1g", "1:1.2.13.dfsg-1")]))]))])
        try await f.drain(f.feature.runner())
        let before = try #require(try await f.backends.metadata.findings(manifest: debian))
        #expect(before.findings.count == 3 && before.advisoryVersion == first.version)
        let inventoryBefore = try #require(try await f.store.inventory(manifest: debian))

        // glibc's bookworm fix is now the installed u3 (no longer a finding); openssl's open issue is renamed.
        let updated = FindingsTests.tracker
            .replacingOccurrences(of: "\"fixed_version\": \"2.36-9+deb12u4\"", with: "\"fixed_version\": \"2.36-9+deb12u3\"")
            .replacingOccurrences(of: "\"CVE-2099-2002\"", with: "\"CVE-2099-2003\"")
        let second = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)
        #expect(second.version > first.version)

        let rematcher = FindingRematcher(inventories: f.store, matcher: try #require(f.feature.inventorier.matcher), pageSize: 1)
        let pass = try await rematcher.rematch(since: first.version)
        #expect(pass.version == second.version)
        // Only the Debian image holds glibc/openssl; the zlib image was not matched again.
        #expect(pass.rematched == 1)
        let after = try #require(try await f.backends.metadata.findings(manifest: debian))
        #expect(after.advisoryVersion == second.version)
        #expect(after.findings.map(\.advisoryID) == ["CVE-2099-1003", "CVE-2099-2003"])
        let untouched = try await f.backends.metadata.findings(manifest: other)
        #expect(untouched?.advisoryVersion == first.version)
        // From the stored inventory: it was not made again.
        let inventoryAfter = try await f.store.inventory(manifest: debian)
        #expect(inventoryAfter == inventoryBefore)

        // A second pass, or one starting over from 0 (a restart), matches nothing again: the
        // findings' own version says the Debian image is current, and no change touched zlib1g.
        let again = try await rematcher.rematch(since: pass.version)
        #expect(again.rematched == 0)
        let fromZero = try await rematcher.rematch(since: 0)
        #expect(fromZero.rematched == 0 && fromZero.version == second.version)
    }

    @Test func aPageMatchedAtOnceGetsExactlyTheFindingsEachImageGetsAlone() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let debian = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        let zlib = try await f.image("library/zlib", tag: "1", layers: [try gzip(tar([("etc/os-release", osRelease),
            ("var/lib/dpkg/status", dpkgStatus([("zlib1g", "1:1.2.13.dfsg-1")]))]))])
        // glibc at the fixed u4: CVE-2099-1001 no longer applies to this one, the no-dsa one still does.
        let patched = try await f.image("library/patched", tag: "1", layers: [try gzip(tar([("etc/os-release", osRelease),
            ("var/lib/dpkg/status", """
                Package: libc6
                Status: install ok installed
                Architecture: amd64
                Source: glibc
                Version: 2.36-9+deb12u4

                """)]))])
        try await f.drain(f.feature.runner())
        let matcher = try #require(f.feature.inventorier.matcher)
        var alone: [Digest: [StoredFinding]] = [:]
        var batch: [(manifest: Digest, inventory: ImageInventory)] = []
        for image in [debian, zlib, patched] {
            alone[image] = try #require(try await f.backends.metadata.findings(manifest: image)).findings
            let stored = try #require(try await f.store.inventory(manifest: image))
            batch.append((image, try ScanDocument.decode(ImageInventory.self, stored.document)))
        }
        #expect(alone[debian]?.count == 3 && alone[zlib] == [] && alone[patched]?.map(\.advisoryID) == ["CVE-2099-1003"])
        try await f.backends.metadata.putFindings([])          // nothing to write is no transaction and no error
        let together = try await matcher.match(batch)
        #expect(together.map(\.manifest) == [debian, zlib, patched])
        for set in together {
            #expect(set.findings == alone[set.manifest])
            let reread = try await f.backends.metadata.findings(manifest: set.manifest)
            #expect(reread?.findings == set.findings && reread?.advisoryVersion == set.advisoryVersion)
        }
    }

    /// `scan-rematch-days`: after a database change only images pulled (or pushed) within the
    /// window are matched again; 0 matches every one.
    @Test func onlyImagesPulledOrPushedWithinTheWindowAreMatchedAgain() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let pulled = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        let idle = try await f.image("library/debian-idle", tag: "12",
                                     layers: [try FindingsTests.debianLayer(), try gzip(tar([("etc/motd", "idle")]))])
        #expect(pulled != idle)
        try await f.drain(f.feature.runner())
        #expect(try await f.backends.metadata.findings(manifest: idle)?.advisoryVersion == first.version)

        // 40 days on: both were pushed long ago; one was pulled (through the recorder and its flush) 2 days ago.
        let later = Date().addingTimeInterval(40 * 86400)
        f.registry.pullTimes.record(repository: "library/debian", digest: pulled, tag: "12", at: later.addingTimeInterval(-2 * 86400))
        #expect(try await f.registry.flushPullTimes() == 1)
        let updated = FindingsTests.tracker.replacingOccurrences(of: "\"CVE-2099-2002\"", with: "\"CVE-2099-2003\"")
        let second = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)

        let matcher = try #require(f.feature.inventorier.matcher)
        let recent = FindingRematcher(inventories: f.store, matcher: matcher, pageSize: 1, usage: f.registry.metadata,
                                      rematchDays: 30, now: { later })
        let pass = try await recent.rematch(since: first.version)
        #expect(pass.version == second.version && pass.rematched == 1)
        let current = try #require(try await f.backends.metadata.findings(manifest: pulled))
        #expect(current.advisoryVersion == second.version && current.findings.map(\.advisoryID).contains("CVE-2099-2003"))
        let stale = try #require(try await f.backends.metadata.findings(manifest: idle))
        #expect(stale.advisoryVersion == first.version && stale.findings.map(\.advisoryID).contains("CVE-2099-2002"))

        // a window that does not reach the pull: neither; 0: every image (the idle one now)
        let narrow = FindingRematcher(inventories: f.store, matcher: matcher, usage: f.registry.metadata, rematchDays: 1, now: { later })
        #expect(try await narrow.rematch(since: first.version).rematched == 0)
        let all = FindingRematcher(inventories: f.store, matcher: matcher, usage: f.registry.metadata, rematchDays: 0, now: { later })
        #expect(try await all.rematch(since: first.version).rematched == 1)
        #expect(try await f.backends.metadata.findings(manifest: idle)?.advisoryVersion == second.version)
    }
}

extension FindingRematchTests {
    /// Review M2: an image a pass skipped (not pulled within the window) is matched again by the
    /// sweep once it is pulled, without a new database change.
    @Test func anImageSkippedWhileIdleIsCaughtUpOnceItIsPulledAgain() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let idle = try await f.image("library/debian-idle", tag: "12", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        let updated = FindingsTests.tracker.replacingOccurrences(of: "\"CVE-2099-2002\"", with: "\"CVE-2099-2003\"")
        let second = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)

        let later = Date().addingTimeInterval(40 * 86400)
        let matcher = try #require(f.feature.inventorier.matcher)
        let rematcher = FindingRematcher(inventories: f.store, matcher: matcher, pageSize: 1, usage: f.registry.metadata,
                                         rematchDays: 30, now: { later })
        var behind = Set<Digest>()
        let pass = try await rematcher.rematch(since: first.version, behind: &behind)
        #expect(pass.rematched == 0 && behind == [idle])
        // Not pulled: the sweep leaves it (and remembers it).
        #expect(try await rematcher.sweep(&behind) == 0 && behind == [idle])
        #expect(try await f.backends.metadata.findings(manifest: idle)?.advisoryVersion == first.version)
        // A later pass over no new change does not bring it back either: only the sweep does.
        #expect(try await rematcher.rematch(since: pass.version, behind: &behind).rematched == 0)

        // Pulled a day before `later`: the sweep matches it against the current version.
        f.registry.pullTimes.record(repository: "library/debian-idle", digest: idle, tag: "12", at: later.addingTimeInterval(-86400))
        #expect(try await f.registry.flushPullTimes() == 1)
        #expect(try await rematcher.sweep(&behind) == 1)
        #expect(behind.isEmpty)
        let current = try #require(try await f.backends.metadata.findings(manifest: idle))
        #expect(current.advisoryVersion == second.version && current.findings.map(\.advisoryID).contains("CVE-2099-2003"))
        #expect(try await rematcher.sweep(&behind) == 0)

        // A manifest remembered but deleted meanwhile, or already current, is dropped without a match.
        behind = [idle]
        #expect(try await rematcher.sweep(&behind) == 0 && behind.isEmpty)
    }
}

/// OpenVEX documents attached to an image as referrers decide the findings they name.
@Suite struct VEXReferrerTests {
    /// Pushes `document` as a referrer of `subject` (artifact type `application/openvex+json`,
    /// the empty config, the document as its one layer); returns the referrer's digest.
    static func attach(_ f: ScanFixture, _ repo: String, subject: Digest, document: String) async throws -> Digest {
        let empty = Array("{}".utf8)
        let e = try await f.blob(repo, empty)
        let doc = Array(document.utf8)
        let d = try await f.blob(repo, doc)
        let subjectSize = try #require(try await f.registry.metadata.inlineContent(subject)).count
        let manifest = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/openvex+json",\
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"\(e)","size":2},\
            "layers":[{"mediaType":"application/openvex+json","digest":"\(d)","size":\(doc.count)}],\
            "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(subject)","size":\(subjectSize)}}
            """.utf8)
        let digest = Digest.compute(manifest)
        _ = try await f.registry.putManifest(try RepositoryName(repo), reference: .digest(digest), bytes: manifest,
                                             contentType: MediaType.ociManifest)
        return digest
    }

    static func vex(_ statements: String, timestamp: String = "2026-11-01T00:00:00Z") -> String {
        """
        {"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1","author":"Payments team",\
        "timestamp":"\(timestamp)","version":1,"statements":[\(statements)]}
        """
    }

    @Test func notAffectedAndFixedStatementsSuppressFindingsWithTheirJustification() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let repo = "library/debian"
        let image = try await f.image(repo, tag: "12", layers: [try FindingsTests.debianLayer()])
        let other = try await f.image(repo, tag: "other", layers: [try FindingsTests.debianLayer(), try gzip(tar([("a", "b")]))])
        try await f.drain(f.feature.runner())
        let name = try RepositoryName(repo)

        let before = try await ScanAPI.findingsView(f.feature.inventorier, repository: name, digest: image, ignoreUnfixed: false)
        #expect(before.findings.count == 3 && before.suppressed == 0 && before.findings.allSatisfy { $0.vex == nil })

        // CVE-2099-1001: not_affected for this image (pkg:oci purl, subcomponent libc6).
        // CVE-2099-2002: fixed, named by the package's purl. CVE-2099-1003: affected (kept, annotated).
        // A statement about another image's digest does not apply to this one.
        let referrer = try await Self.attach(f, repo, subject: image, document: Self.vex("""
            {"vulnerability":{"name":"CVE-2099-1001"},"products":[{"@id":"pkg:oci/debian@\(image.string.replacingOccurrences(of: ":", with: "%3A"))",\
            "subcomponents":[{"@id":"pkg:deb/debian/libc6@2.36-9%2Bdeb12u3?arch=amd64"}]}],\
            "status":"not_affected","justification":"vulnerable_code_not_in_execute_path"},
            {"vulnerability":{"name":"CVE-2099-2002"},"products":[{"@id":"pkg:deb/debian/libssl3"}],"status":"fixed"},
            {"vulnerability":{"name":"CVE-2099-1003"},"products":[{"@id":"\(image)"}],"status":"affected","action_statement":"upgrade soon"},
            {"vulnerability":"CVE-2099-1003","products":["\(other)"],"status":"not_affected","impact_statement":"other image"}
            """))
        let after = try await ScanAPI.findingsView(f.feature.inventorier, repository: name, digest: image, ignoreUnfixed: false)
        let byID = Dictionary(uniqueKeysWithValues: after.findings.map { ($0.id, $0.vex) })
        #expect(byID["CVE-2099-1001"]! == ScanVEXView(status: "not_affected", suppressed: true, justification: "vulnerable_code_not_in_execute_path",
                                                      impactStatement: nil, actionStatement: nil, source: referrer.string))
        #expect(byID["CVE-2099-2002"]??.suppressed == true && byID["CVE-2099-2002"]??.status == "fixed")
        #expect(byID["CVE-2099-1003"]??.suppressed == false && byID["CVE-2099-1003"]??.actionStatement == "upgrade soon")
        #expect(after.suppressed == 2 && after.vexProblems == nil)

        // The other image has the same findings and no VEX referrer: nothing is suppressed there.
        let ofOther = try await ScanAPI.findingsView(f.feature.inventorier, repository: name, digest: other, ignoreUnfixed: false)
        #expect(ofOther.suppressed == 0 && ofOther.findings.allSatisfy { $0.vex == nil })

        // A later document wins: CVE-2099-1001 turns out to be affected after all.
        _ = try await Self.attach(f, repo, subject: image, document: Self.vex("""
            {"vulnerability":{"name":"CVE-2099-1001"},"products":[{"@id":"\(image)"}],"status":"affected"}
            """, timestamp: "2026-11-20T00:00:00Z"))
        // A broken document is a problem shown with the findings, not an error of the request.
        _ = try await Self.attach(f, repo, subject: image, document: Self.vex(#"{"vulnerability":{"name":"X"},"products":[{"@id":"x"}],"status":"maybe"}"#))
        let later = try await ScanAPI.findingsView(f.feature.inventorier, repository: name, digest: image, ignoreUnfixed: false)
        #expect(later.findings.first { $0.id == "CVE-2099-1001" }?.vex?.status == "affected")
        #expect(later.suppressed == 1)
        #expect(later.vexProblems?.count == 1 && later.vexProblems?.first?.contains("\"status\" must be one of") == true, "\(later.vexProblems ?? [])")
    }
}
