import Access
import Admission
import AdmissionFeature
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Scanning
import Testing
@testable import ScanningFeature

/// The scan policy reads OpenVEX statements (issue 15: gates honour VEX), uploaded through
/// `POST /api/v1/scans/vex` or pushed as referrers; and an image carrying a `subject` is judged
/// like any image (review, M3).
@Suite struct VEXGateTests {
    /// The test tracker with CVE-2099-1001 (libc6, fixed in a later backport) made Critical.
    static let criticalTracker = FindingsTests.tracker.replacingOccurrences(
        of: #""fixed_version": "2.36-9+deb12u4", "urgency": "high""#, with: #""fixed_version": "2.36-9+deb12u4", "urgency": "critical""#)

    static func notAffected(_ image: Digest, id: String = "CVE-2099-1001", timestamp: String = "2026-11-01T00:00:00Z") -> String {
        VEXReferrerTests.vex("""
            {"vulnerability":{"name":"\(id)"},"products":[{"@id":"\(image)"}],"status":"not_affected",\
            "justification":"vulnerable_code_not_in_execute_path"}
            """, timestamp: timestamp)
    }

    @Test func evaluationCountsWhatVEXSuppressedAndNeverJudgesIt() {
        let critical = ScanPolicyEvaluationTests.finding("CVE-2099-0001", "Critical", fixed: "1.2")
        let low = ScanPolicyEvaluationTests.finding("CVE-2099-0005", "Low", fixed: nil)
        let verdict = ScanPolicyEvaluation.evaluate([low], repository: "a", policy: ScanPolicy(blockSeverity: "High"),
                                                    now: ScanPolicyEvaluationTests.now, suppressed: [critical, low])
        #expect(verdict.passed && verdict.reason.contains("1 suppressed by VEX"), "\(verdict.reason)")
    }

    @Test func anImageBlockedByACriticalFindingIsPullableOnceAnUploadedVEXSaysNotAffected() async throws {
        precondition(Self.criticalTracker != FindingsTests.tracker)
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(Self.criticalTracker.utf8), format: .debian, source: nil)
        let image = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        let stored = try #require(try await f.backends.metadata.findings(manifest: image))
        #expect(stored.findings.contains { $0.advisoryID == "CVE-2099-1001" && $0.severity == "Critical" })

        let dir = NSTemporaryDirectory() + "berth-scan-keys-" + UUID().uuidString
        let access = try await AccessControl.open(store: f.registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir)
        _ = try await access.bootstrap(ownerPassword: "owner-test-password")
        let actor = Actor(name: "test", address: "-")
        let entry = AccessState.ScopeMap.Entry(repository: try RepositoryPattern("library/*"), actions: ["content/read", "metadata/read"])
        _ = try await access.putScopeMap(actor, name: "library-read", description: nil, entries: [entry], create: true)
        let (_, pw) = try await access.createToken(actor, name: "reader", scopeMap: "library-read")
        let reader: HTTPFields = [.authorization: "Basic " + Data("reader:\(pw["password1"]!)".utf8).base64EncodedString()]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try await BerthServer.makeApplication(registry: f.registry, access: access, features: [f.feature, AdmissionFeature()],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.router) { client in
            func pull(_ path: String) async throws -> (HTTPResponse.Status, String) {
                var h = ScanGateTests.owner
                h[.accept] = MediaType.ociManifest
                let r = try await client.execute(uri: "/v2/\(path)", method: .get, headers: h)
                return (r.status, String(buffer: r.body))
            }
            func upload(_ query: String, _ body: String, _ auth: HTTPFields = ScanGateTests.owner) async throws -> (HTTPResponse.Status, String) {
                var h = auth
                h[.contentType] = "application/json"
                let r = try await client.execute(uri: "/api/v1/scans/vex\(query)", method: .post, headers: h, body: ByteBuffer(string: body))
                return (r.status, String(buffer: r.body))
            }
            var h = ScanGateTests.owner
            h[.contentType] = "application/json"
            let patched = try await client.execute(uri: "/api/v1/scan/policy", method: .patch, headers: h,
                                                   body: ByteBuffer(string: #"{"blockSeverity":"Critical","blockPulls":true}"#))
            #expect(patched.status == .ok)
            var (status, body) = try await pull("library/debian/manifests/12")
            #expect(status == .forbidden && body.contains("CVE-2099-1001"), "\(body)")

            // Bad uploads: no push right, not an image, not OpenVEX, too large; nothing is attached.
            (status, _) = try await upload("?repository=library/debian&reference=12", Self.notAffected(image), reader)
            #expect(status == .forbidden)
            #expect(try await client.execute(uri: "/api/v1/scans/vex?repository=library/debian&reference=12", method: .post,
                                             body: ByteBuffer(string: "{}")).status == .unauthorized)
            (status, _) = try await upload("?repository=library/debian&reference=13", Self.notAffected(image))
            #expect(status == .notFound)
            (status, _) = try await upload("?repository=library/debian", Self.notAffected(image))
            #expect(status == .badRequest)
            (status, body) = try await upload("?repository=library/debian&reference=12",
                                              #"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":"X","products":["y"],"status":"maybe"}]}"#)
            #expect(status == .badRequest && body.contains("status"), "\(body)")
            (status, _) = try await upload("?repository=library/debian&reference=12", String(repeating: " ", count: VEXLimits.maxDocumentBytes + 1))
            #expect(status == .contentTooLarge)
            #expect(try await f.registry.metadata.referrers(repository: "library/debian", subject: image)
                .filter { $0.artifactType == OpenVEX.mediaType }.isEmpty)
            #expect(try await pull("library/debian/manifests/12").0 == .forbidden)

            // The owner uploads the statement: a referrer through the core, and the image is pullable.
            (status, body) = try await upload("?repository=library/debian&reference=12", Self.notAffected(image))
            #expect(status == .created, "\(body)")
            let view = try JSONDecoder().decode(ScanVEXImportViewProbe.self, from: Data(body.utf8))
            #expect(view.subject == image.string && view.statements == 1 && view.repository == "library/debian")
            let referrers = try await f.registry.metadata.referrers(repository: "library/debian", subject: image)
            #expect(referrers.contains { $0.digest.string == view.referrer && $0.artifactType == OpenVEX.mediaType })
            let pushes = try await f.registry.metadata.events(after: 0, limit: 10_000)
                .filter { $0.action == .manifestPush && $0.digest == view.referrer }
            #expect(pushes.count == 1 && pushes.first?.actor?.contains("owner") == true)
            (status, body) = try await pull("library/debian/manifests/12")
            #expect(status == .ok, "\(body)")
            // The referrers API lists it like any referrer.
            let listed = try await client.execute(uri: "/v2/library/debian/referrers/\(image)", method: .get, headers: ScanGateTests.owner)
            #expect(String(buffer: listed.body).contains(view.referrer))
            // The findings API shows it suppressed, naming the referrer.
            let found = try await ScanAPI.findingsView(f.feature.inventorier, repository: try RepositoryName("library/debian"), digest: image,
                                                       ignoreUnfixed: false)
            #expect(found.findings.first { $0.id == "CVE-2099-1001" }?.vex?.source == view.referrer)

            // The same document again is the same referrer: nothing new is pushed.
            (status, body) = try await upload("?repository=library/debian&reference=\(image)", Self.notAffected(image))
            #expect(status == .created && body.contains(view.referrer))
            #expect(try await f.registry.metadata.events(after: 0, limit: 10_000)
                .filter { $0.action == .manifestPush && $0.digest == view.referrer }.count == 1)

            // A later statement that it is affected after all blocks it again.
            (status, _) = try await upload("?repository=library/debian&reference=12", VEXReferrerTests.vex("""
                {"vulnerability":{"name":"CVE-2099-1001"},"products":[{"@id":"\(image)"}],"status":"affected"}
                """, timestamp: "2026-11-20T00:00:00Z"))
            #expect(status == .created)
            #expect(try await pull("library/debian/manifests/12").0 == .forbidden)
        }
    }

    @Test func aVEXReferrerMovesTheScannersQuarantineVerdict() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(Self.criticalTracker.utf8), format: .debian, source: nil)
        _ = try await f.registry.updateQuarantine(QuarantinePolicy(enabled: true), dryRun: false)
        try await #require(f.feature.gate).update(ScanPolicyChange(blockSeverity: "Critical"), who: "alice")
        let image = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        var record = try #require(try await f.registry.metadata.manifest(repository: "library/debian", digest: image))
        #expect(record.quarantineState == .failed)

        // Pushed over /v2/ like any referrer (here through the core): the consumer judges the image again.
        _ = try await VEXReferrerTests.attach(f, "library/debian", subject: image, document: Self.notAffected(image))
        try await f.drain(f.feature.runner())
        record = try #require(try await f.registry.metadata.manifest(repository: "library/debian", digest: image))
        #expect(record.quarantineState == .passed && record.quarantineReason?.contains("1 suppressed by VEX") == true,
                "\(record.quarantineReason ?? "")")
        _ = try await PullAdmissionHarness(f).manifest("library/debian", "12")
    }

    /// An OCI index of one linux/amd64 image stored in `f`.
    static func index(_ f: ScanFixture, of image: Digest) async throws -> [UInt8] {
        let size = try #require(try await f.registry.metadata.inlineContent(image)).count
        return Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(image)","size":\(size),"platform":{"os":"linux","architecture":"amd64"}}]}
            """.utf8)
    }

    /// A statement about an index covers the findings of its images.
    @Test func aStatementAboutAnIndexCoversItsImages() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(Self.criticalTracker.utf8), format: .debian, source: nil)
        let gate = try #require(f.feature.gate)
        let repo = try RepositoryName("library/multi")
        let amd = try await f.image(repo.value, layers: [try FindingsTests.debianLayer()])
        let index = try await Self.index(f, of: amd)
        _ = try await f.registry.putManifest(repo, reference: .tag("1"), bytes: index, contentType: MediaType.ociIndex)
        try await f.drain(f.feature.runner())
        let policy = ScanPolicy(blockSeverity: "Critical")
        #expect(try await gate.verdict(repo.value, Digest.compute(index), policy: policy)?.passed == false)
        let pkg = "pkg:oci/multi@\(Digest.compute(index).string.replacingOccurrences(of: ":", with: "%3A"))"
        _ = try await VEXReferrerTests.attach(f, repo.value, subject: Digest.compute(index), document: VEXReferrerTests.vex("""
            {"vulnerability":{"name":"CVE-2099-1001"},"products":[{"@id":"\(pkg)"}],"status":"fixed"}
            """))
        #expect(try await gate.verdict(repo.value, Digest.compute(index), policy: policy)?.passed == true)
        // The image alone (no statement names it) still fails.
        #expect(try await gate.verdict(repo.value, amd, policy: policy)?.passed == false)
    }

    /// Review: an index a pull-through cache answers before it is stored is judged from its own
    /// bytes (its stored images' findings), not found absent in the store and let through.
    @Test func anIndexNotStoredYetIsJudgedFromItsBytes() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(Self.criticalTracker.utf8), format: .debian, source: nil)
        let gate = try #require(f.feature.gate)
        let repo = try RepositoryName("library/multi")
        let amd = try await f.image(repo.value, layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        let index = try await Self.index(f, of: amd)
        let policy = ScanPolicy(blockSeverity: "Critical")
        #expect(try await gate.verdict(repo.value, Digest.compute(index), policy: policy) == nil)   // not stored: nothing read
        #expect(try await gate.verdict(repo.value, Digest.compute(index), policy: policy, bytes: index)?.passed == false)
    }

    /// Review M3: an image that carries a `subject` is scanned and gated like any image; an
    /// artifact referrer is neither.
    @Test func anImageCarryingASubjectIsScannedAndGated() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(Self.criticalTracker.utf8), format: .debian, source: nil)
        let gate = try #require(f.feature.gate)
        try await gate.update(ScanPolicyChange(blockSeverity: "Critical", blockPulls: true), who: "alice")
        let base = try await f.image("library/base", tag: "1", layers: [try ScanGateTests().cleanLayer()])
        let disguised = try await f.image("library/base", tag: "evil", layers: [try FindingsTests.debianLayer()], subject: base)
        try await f.drain(f.feature.runner())
        #expect(try await f.store.inventory(manifest: disguised)?.status == .complete)
        #expect(try await f.backends.metadata.findings(manifest: disguised)?.findings.contains { $0.severity == "Critical" } == true)
        await #expect(throws: RegistryError.self) {
            _ = try await PullAdmissionHarness(f).manifest("library/base", "evil")
        }
        _ = try await PullAdmissionHarness(f).manifest("library/base", "1")
        // An artifact referrer (a VEX document) is not an image: recorded as such, and pulled freely.
        let referrer = try await VEXReferrerTests.attach(f, "library/base", subject: base, document: Self.notAffected(base))
        try await f.drain(f.feature.runner())
        #expect(try await f.store.inventory(manifest: referrer)?.status == .notAnImage)
        let admission = PullAdmission(registry: f.registry, access: nil, checks: [gate], host: "registry.test")
        _ = try await admission.manifest(try RepositoryName("library/base"), .digest(referrer), for: Puller(caller: nil, address: nil))
    }

    /// Review M4: statements are indexed by vulnerability once, and still decided by the latest.
    @Test func indexedStatementsDecideByNameAliasAndTime() throws {
        var index = VEXIndex()
        let doc1 = try OpenVEX.parse(Data(VEXReferrerTests.vex("""
            {"vulnerability":{"name":"GHSA-xxxx","aliases":["CVE-1"]},"products":[{"@id":"pkg:deb/debian/libc6"}],"status":"not_affected","justification":"component_not_present"},
            {"vulnerability":"CVE-2","products":["sha256:aa"],"status":"fixed"}
            """, timestamp: "2026-01-01T00:00:00Z").utf8))
        let doc2 = try OpenVEX.parse(Data(VEXReferrerTests.vex("""
            {"vulnerability":"CVE-1","products":["pkg:deb/debian/libc6@2.0"],"status":"affected"}
            """, timestamp: "2026-02-01T00:00:00Z").utf8))
        index.add(doc1, source: "a")
        index.add(doc2, source: "b")
        func subject(_ id: String, aliases: [String] = [], version: String = "1.0", manifest: String = "sha256:bb", holders: [String] = []) -> VEXSubject {
            VEXSubject(manifest: manifest, vulnerability: id, aliases: aliases, package: "libc6", sourcePackage: "glibc",
                       installedVersion: version, holders: holders)
        }
        #expect(index.decision(for: subject("CVE-1"))?.source == "a")                    // b names version 2.0 only
        #expect(index.decision(for: subject("CVE-1", version: "2.0"))?.source == "b")     // the later one
        #expect(index.decision(for: subject("OSV-9", aliases: ["GHSA-xxxx"]))?.suppressed == true)
        #expect(index.decision(for: subject("CVE-2")) == nil)
        #expect(index.decision(for: subject("CVE-2", holders: ["sha256:aa"]))?.suppressed == true)
        #expect(index.decision(for: subject("CVE-3")) == nil)
    }
}

/// Issue 15: a change of the scan policy gives the scanner's verdicts on existing images again.
@Suite struct ScanPolicyRejudgeTests {
    @Test func aPolicyChangeRejudgesTheScannersVerdictsNeverAPersonsAndThePullFollows() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let gate = try #require(f.feature.gate)
        _ = try await f.registry.updateQuarantine(QuarantinePolicy(enabled: true), dryRun: false)
        try await gate.update(ScanPolicyChange(blockSeverity: "High"), who: "alice")
        let vulnerable = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        let manual = try await f.image("library/manual", tag: "1", layers: [try FindingsTests.debianLayer(), try ScanGateTests().cleanLayer()])
        try await f.registry.setQuarantine(try RepositoryName("library/manual"), manual, state: .failed, reason: "known-bad build")
        try await f.drain(f.feature.runner())
        @Sendable func state(_ repo: String, _ d: Digest) async throws -> (QuarantineState?, String?) {
            let r = try await f.registry.metadata.manifest(repository: repo, digest: d)
            return (r?.quarantineState, r?.quarantineReason)
        }
        #expect(try await state("library/debian", vulnerable).0 == .failed)

        let dir = NSTemporaryDirectory() + "berth-scan-keys-" + UUID().uuidString
        let access = try await AccessControl.open(store: f.registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir)
        _ = try await access.bootstrap(ownerPassword: "owner-test-password")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try await BerthServer.makeApplication(registry: f.registry, access: access, features: [f.feature],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.router) { client in
            func patch(_ body: String) async throws {
                var h = ScanGateTests.owner
                h[.contentType] = "application/json"
                let r = try await client.execute(uri: "/api/v1/scan/policy", method: .patch, headers: h, body: ByteBuffer(string: body))
                #expect(r.status == .ok)
                await gate.rejudgeFinished()
            }
            // The pull-admission chain without a caller: quarantine refuses what is not Passed to everybody.
            @Sendable func pullable() async -> Bool {
                (try? await PullAdmissionHarness(f).manifest("library/debian", "12")) != nil
            }
            #expect(await !pullable())

            // Only Critical blocks now: the High finding no longer fails the image, and it is served.
            try await patch(#"{"blockSeverity":"Critical"}"#)
            var (st, reason) = try await state("library/debian", vulnerable)
            #expect(st == .passed && reason?.hasPrefix(ScanPolicyEvaluation.reasonPrefix) == true, "\(reason ?? "")")
            #expect(await pullable())
            // A person's verdict stays as it was.
            (st, reason) = try await state("library/manual", manual)
            #expect(st == .failed && reason == "known-bad build")

            // Back to High: failed again, and refused.
            try await patch(#"{"blockSeverity":"High"}"#)
            #expect(try await state("library/debian", vulnerable).0 == .failed)
            #expect(await !pullable())

            // A policy that blocks nothing passes what the scanner failed; an image pushed then
            // waits (Pending) for a person, until a policy that blocks judges it.
            try await patch(#"{"blockSeverity":"None"}"#)
            #expect(try await state("library/debian", vulnerable).0 == .passed)
            let waiting = try await f.image("library/waiting", tag: "1", layers: [try FindingsTests.debianLayer(), try gzip(tar([("w", "w")]))])
            try await f.drain(f.feature.runner())
            #expect(try await state("library/waiting", waiting).0 == .pending)
            try await patch(#"{"blockSeverity":"High"}"#)
            #expect(try await state("library/waiting", waiting).0 == .failed)
            #expect(try await state("library/manual", manual).1 == "known-bad build")
        }
    }
}

/// The upload's answer as the test reads it.
struct ScanVEXImportViewProbe: Decodable {
    var repository: String
    var subject: String
    var referrer: String
    var statements: Int
}
