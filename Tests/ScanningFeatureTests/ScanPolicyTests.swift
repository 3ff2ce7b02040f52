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
import Testing
@testable import ScanningFeature

/// The scan policy as pure logic: which findings fail an image, and which changes are valid.
@Suite struct ScanPolicyEvaluationTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func finding(_ id: String, _ severity: String, fixed: String?, aliases: [String] = []) -> StoredFinding {
        StoredFinding(advisoryID: id, aliases: aliases, ecosystem: "Debian", package: "pkg-\(id)", sourcePackage: nil,
                      installedVersion: "1.0", fixedVersion: fixed, severity: severity, score: nil)
    }

    static let findings = [
        finding("CVE-2099-0003", "Medium", fixed: "1.1"),
        finding("CVE-2099-0002", "High", fixed: nil, aliases: ["GHSA-aaaa-bbbb-cccc"]),
        finding("CVE-2099-0001", "Critical", fixed: "1.2"),
        finding("CVE-2099-0004", "Unknown", fixed: "1.3"),
        finding("CVE-2099-0005", "Low", fixed: nil),
    ]

    static func allow(_ id: String, repository: String? = nil, until: TimeInterval = 86400) -> ScanPolicyException {
        ScanPolicyException(id: id, repository: repository, who: "alice", why: "not reachable", until: now.addingTimeInterval(until),
                            createdAt: now.addingTimeInterval(-86400))
    }

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let policy: ScanPolicy
        var repository = "payments/api"
        var findings = ScanPolicyEvaluationTests.findings
        /// The blocking advisories, most severe first; empty: passed.
        let blocking: [String]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "None blocks nothing", policy: ScanPolicy(blockSeverity: "None"), blocking: []),
        Case(name: "Critical", policy: ScanPolicy(blockSeverity: "Critical"), blocking: ["CVE-2099-0001"]),
        Case(name: "High and above, most severe first", policy: ScanPolicy(blockSeverity: "High"), blocking: ["CVE-2099-0001", "CVE-2099-0002"]),
        Case(name: "Low: Unknown never blocks", policy: ScanPolicy(blockSeverity: "Low"),
             blocking: ["CVE-2099-0001", "CVE-2099-0002", "CVE-2099-0003", "CVE-2099-0005"]),
        Case(name: "ignore unfixed", policy: ScanPolicy(blockSeverity: "Low", ignoreUnfixed: true), blocking: ["CVE-2099-0001", "CVE-2099-0003"]),
        Case(name: "an exception", policy: ScanPolicy(blockSeverity: "High", allow: [allow("CVE-2099-0001")]), blocking: ["CVE-2099-0002"]),
        Case(name: "an exception by alias, any case", policy: ScanPolicy(blockSeverity: "High", allow: [allow("ghsa-AAAA-bbbb-cccc")]),
             blocking: ["CVE-2099-0001"]),
        Case(name: "an expired exception is ignored", policy: ScanPolicy(blockSeverity: "High", allow: [allow("CVE-2099-0001", until: -1)]),
             blocking: ["CVE-2099-0001", "CVE-2099-0002"]),
        Case(name: "an exception ending now is expired", policy: ScanPolicy(blockSeverity: "Critical", allow: [allow("CVE-2099-0001", until: 0)]),
             blocking: ["CVE-2099-0001"]),
        Case(name: "an exception of the repository's pattern", policy: ScanPolicy(blockSeverity: "Critical",
             allow: [allow("CVE-2099-0001", repository: "payments/*")]), blocking: []),
        Case(name: "an exception of another repository", policy: ScanPolicy(blockSeverity: "Critical",
             allow: [allow("CVE-2099-0001", repository: "billing/*")]), blocking: ["CVE-2099-0001"]),
        Case(name: "an exception of another advisory", policy: ScanPolicy(blockSeverity: "Critical", allow: [allow("CVE-2099-0002")]),
             blocking: ["CVE-2099-0001"]),
        Case(name: "no findings", policy: ScanPolicy(blockSeverity: "Low"), findings: [], blocking: []),
    ]

    @Test(arguments: cases) func evaluate(_ c: Case) {
        let verdict = ScanPolicyEvaluation.evaluate(c.findings, repository: c.repository, policy: c.policy, now: Self.now)
        #expect(verdict.passed == c.blocking.isEmpty)
        #expect(verdict.blocking.map(\.advisoryID) == c.blocking)
        #expect(verdict.reason.hasPrefix(ScanPolicyEvaluation.reasonPrefix))
        for id in c.blocking { #expect(verdict.reason.contains(id)) }
        if c.blocking.isEmpty { #expect(verdict.reason.contains("passed")) }
    }

    @Test func reasonCountsExceptionsAndNamesAtMostTen() {
        let many = (10..<25).map { Self.finding("CVE-2099-00\($0)", "High", fixed: "2") }
        let verdict = ScanPolicyEvaluation.evaluate(many + [Self.finding("CVE-2099-0001", "Critical", fixed: "2")], repository: "a",
                                                    policy: ScanPolicy(blockSeverity: "High", allow: [Self.allow("CVE-2099-0010")]), now: Self.now)
        #expect(!verdict.passed && verdict.blocking.count == 15)
        #expect(verdict.reason.contains("CVE-2099-0001, CVE-2099-0011") && verdict.reason.contains("and 5 more") && verdict.reason.contains("1 excepted"))
        #expect(!verdict.reason.contains("CVE-2099-0024"))
    }

    struct Invalid: Sendable, CustomTestStringConvertible {
        let name: String
        let change: ScanPolicyChange
        let field: String
        var testDescription: String { name }
    }

    static func exception(_ id: String = "CVE-2099-0001", repository: String? = nil, why: String? = "not reachable",
                          until: String? = "2027-02-01") -> ScanPolicyChange.Exception {
        ScanPolicyChange.Exception(id: id, repository: repository, why: why, until: until)
    }

    // now is 2027-01-15T08:00:00Z
    static let invalid: [Invalid] = [
        Invalid(name: "unknown severity", change: ScanPolicyChange(blockSeverity: "Severe"), field: "blockSeverity"),
        Invalid(name: "Unknown is no threshold", change: ScanPolicyChange(blockSeverity: "Unknown"), field: "blockSeverity"),
        Invalid(name: "no reason", change: ScanPolicyChange(allow: [exception(why: nil)]), field: "allow.why"),
        Invalid(name: "a blank reason", change: ScanPolicyChange(allow: [exception(why: "  \n")]), field: "allow.why"),
        Invalid(name: "no end", change: ScanPolicyChange(allow: [exception(until: nil)]), field: "allow.until"),
        Invalid(name: "an end that is no time", change: ScanPolicyChange(allow: [exception(until: "next week")]), field: "allow.until"),
        Invalid(name: "an end in the past", change: ScanPolicyChange(allow: [exception(until: "2026-12-31T00:00:00Z")]), field: "allow.until"),
        Invalid(name: "an end over a year ahead", change: ScanPolicyChange(allow: [exception(until: "2028-06-01")]), field: "allow.until"),
        Invalid(name: "an id with a space", change: ScanPolicyChange(allow: [exception("CVE 2099;")]), field: "allow.id"),
        Invalid(name: "an empty id", change: ScanPolicyChange(allow: [exception("")]), field: "allow.id"),
        Invalid(name: "a long id", change: ScanPolicyChange(allow: [exception(String(repeating: "A", count: 129))]), field: "allow.id"),
        Invalid(name: "a bad repository pattern", change: ScanPolicyChange(allow: [exception(repository: "Payments/**")]), field: "allow.repository"),
        Invalid(name: "removing what is not there", change: ScanPolicyChange(removeAllow: ["CVE-2099-9999"]), field: "removeAllow"),
    ]

    static let changeNow = ScanPolicyChange.parseDate("2027-01-15T08:00:00Z")!

    @Test(arguments: invalid) func invalidChangeNamesItsField(_ c: Invalid) throws {
        do {
            _ = try c.change.applied(to: ScanPolicy(), who: "alice", now: Self.changeNow)
            Issue.record("\(c.name) was accepted")
        } catch let error as ScanPolicyInvalid {
            #expect(error.field == c.field)
        }
    }

    @Test func changesRecordWhoReplaceByIdAndRepositoryAndDropExpired() throws {
        var policy = try ScanPolicyChange(blockSeverity: "critical", ignoreUnfixed: true, blockPulls: true,
                                          allow: [Self.exception(until: "2027-03-01T12:00:00Z"),
                                                  Self.exception(repository: "payments/*", why: "only in tests")])
            .applied(to: ScanPolicy(), who: "alice", now: Self.changeNow)
        #expect(policy.blockSeverity == "Critical" && policy.ignoreUnfixed && policy.blockPulls)
        #expect(policy.allow.map { "\($0.id) \($0.repository ?? "*") \($0.who) \($0.why)" }
                == ["CVE-2099-0001 * alice not reachable", "CVE-2099-0001 payments/* alice only in tests"])
        #expect(policy.allow[0].until == ScanPolicyChange.parseDate("2027-03-01T12:00:00Z"))

        // bob renews the repository-wide one; alice's other stays
        policy = try ScanPolicyChange(allow: [Self.exception(until: "2027-04-01")]).applied(to: policy, who: "bob", now: Self.changeNow)
        #expect(policy.allow.map(\.who) == ["bob", "alice"])
        #expect(policy.blockSeverity == "Critical" && policy.blockPulls)

        // later, the 2027-02-01 one has expired: any change drops it
        let later = ScanPolicyChange.parseDate("2027-03-01T00:00:00Z")!
        policy = try ScanPolicyChange(blockPulls: false).applied(to: policy, who: "carol", now: later)
        #expect(policy.allow.map(\.who) == ["bob"] && !policy.blockPulls)

        policy = try ScanPolicyChange(removeAllow: ["cve-2099-0001"]).applied(to: policy, who: "carol", now: later)
        #expect(policy.allow.isEmpty)
    }
}

/// The scan policy in the server: quarantine verdicts after a scan and a re-match, and the pull gate
/// of `/v2/` and the admission endpoints.
@Suite struct ScanGateTests {
    static let owner: HTTPFields = [.authorization: "Basic " + Data("owner:owner-test-password".utf8).base64EncodedString()]

    func quarantineOn(_ f: ScanFixture) async throws {
        _ = try await f.registry.updateQuarantine(QuarantinePolicy(enabled: true), dryRun: false)
    }

    func cleanLayer() throws -> [UInt8] {
        try gzip(tar([("etc/os-release", osRelease), ("var/lib/dpkg/status", dpkgStatus([("zlib1g", "1:1.2.13.dfsg-1")]))]))
    }

    @Test func scannerGivesQuarantineVerdictsAndRejudgesAfterARematch() async throws {
        let f = try ScanFixture(findings: true)
        let gate = try #require(f.feature.gate)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        try await quarantineOn(f)
        try await gate.update(ScanPolicyChange(blockSeverity: "High"), who: "alice")

        let vulnerable = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        let clean = try await f.image("library/zlib", tag: "1", layers: [try cleanLayer()])
        let manual = try await f.image("library/manual", tag: "1", layers: [try FindingsTests.debianLayer(), try cleanLayer()])
        #expect(try await f.registry.metadata.manifest(repository: "library/debian", digest: vulnerable)?.quarantineState == .pending)
        // A person's verdict is theirs: the scanner does not change it.
        try await f.registry.setQuarantine(try RepositoryName("library/manual"), manual, state: .passed, reason: "accepted by the owner")
        try await f.drain(f.feature.runner())

        var record = try #require(try await f.registry.metadata.manifest(repository: "library/debian", digest: vulnerable))
        #expect(record.quarantineState == .failed)
        #expect(record.quarantineReason?.contains("CVE-2099-1001") == true && record.quarantineReason?.contains("High") == true)
        #expect(record.quarantineReason?.contains("CVE-2099-1003") == false)      // Low
        let passed = try #require(try await f.registry.metadata.manifest(repository: "library/zlib", digest: clean))
        #expect(passed.quarantineState == .passed && passed.quarantineReason?.hasPrefix(ScanPolicyEvaluation.reasonPrefix) == true)
        let kept = try #require(try await f.registry.metadata.manifest(repository: "library/manual", digest: manual))
        #expect(kept.quarantineState == .passed && kept.quarantineReason == "accepted by the owner")
        // The verdict is recorded by the scanner.
        let events = try await f.registry.metadata.events(after: 0, limit: 1000)
            .filter { $0.action == .quarantine && $0.digest == vulnerable.string }
        #expect(events.last?.actor == ScanGate.actor)
        // A Failed image stays quarantined.
        await #expect(throws: RegistryError.self) {
            _ = try await PullAdmissionHarness(f).manifest("library/debian", "12")
        }

        // The bookworm fix is now the installed version: the re-match passes the image it had failed.
        let updated = FindingsTests.tracker
            .replacingOccurrences(of: "\"fixed_version\": \"2.36-9+deb12u4\"", with: "\"fixed_version\": \"2.36-9+deb12u3\"")
        _ = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)
        let rematcher = try #require(f.feature.rematcher())
        let rematched = try await rematcher.rematch(since: first.version)
        #expect(rematched.rematched >= 1)
        record = try #require(try await f.registry.metadata.manifest(repository: "library/debian", digest: vulnerable))
        #expect(record.quarantineState == .passed)
        _ = try await PullAdmissionHarness(f).manifest("library/debian", "12")
    }

    /// A verdict on an index moves its quarantined images with it: the scanner never gives one
    /// over a person's verdict on one of those images (review, high: a person's Failed became
    /// Passed by way of the index).
    @Test func theScannerLeavesAnIndexAloneWhenOneOfItsImagesHasAPersonsVerdict() async throws {
        let f = try ScanFixture(findings: true)
        let gate = try #require(f.feature.gate)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        try await quarantineOn(f)
        try await gate.update(ScanPolicyChange(blockSeverity: "High"), who: "alice")
        let repo = try RepositoryName("library/multi")
        let amd = try await f.image("library/multi", layers: [try cleanLayer()])
        let arm = try await f.image("library/multi", layers: [try cleanLayer(), try cleanLayer()])
        var children: [String] = []
        for (d, arch) in [(amd, "amd64"), (arm, "arm64")] {
            let size = try #require(try await f.registry.metadata.inlineContent(d)).count
            children.append("{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"\(d)\",\"size\":\(size),\"platform\":{\"os\":\"linux\",\"architecture\":\"\(arch)\"}}")
        }
        let index = Array("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[\(children.joined(separator: ","))]}".utf8)
        _ = try await f.registry.putManifest(repo, reference: .tag("1"), bytes: index, contentType: MediaType.ociIndex)
        try await f.registry.setQuarantine(repo, arm, state: .failed, reason: "known-bad build")
        try await f.drain(f.feature.runner())

        let person = try #require(try await f.registry.metadata.manifest(repository: repo.value, digest: arm))
        #expect(person.quarantineState == .failed && person.quarantineReason == "known-bad build")
        let scanned = try #require(try await f.registry.metadata.manifest(repository: repo.value, digest: amd))
        #expect(scanned.quarantineState == .passed)
        let ofIndex = try #require(try await f.registry.metadata.manifest(repository: repo.value, digest: Digest.compute(index)))
        #expect(ofIndex.quarantineState == .pending)
    }

    @Test func newHighOrCriticalFindingsAppendAScanEventOnPushAndOnRematchOnly() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let image = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        func scanEvents() async throws -> [Event] {
            try await f.registry.metadata.events(after: 0, limit: 10_000).filter { $0.action == .scan }
        }
        var events = try await scanEvents()
        #expect(events.count == 1)
        let event = try #require(events.first)
        #expect(event.repository == "library/debian" && event.digest == image.string && event.tag == "12" && event.actor == ScanGate.actor)
        let detail = try JSONDecoder().decode(ScanEventDetail.self, from: Data(try #require(event.detail).utf8))
        #expect(detail == ScanEventDetail(counts: ["High": 1, "Low": 2], new: ["CVE-2099-1001"], tags: ["12"]))

        // The same push handed over again: nothing new, no event.
        let pushes = try await f.registry.metadata.events(after: 0, limit: 1000).filter { $0.action == .manifestPush && $0.digest == image.string }
        try await ScanConsumer(inventorier: f.feature.inventorier, gate: f.feature.gate).handle(pushes, attempt: 1)
        #expect(try await scanEvents().count == 1)

        // A re-match that makes an open Low issue High: one event naming only it.
        let updated = FindingsTests.tracker.replacingOccurrences(of: "\"urgency\": \"unimportant\"", with: "\"urgency\": \"high\"")
        #expect(updated != FindingsTests.tracker)
        _ = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)
        let rematcher = try #require(f.feature.rematcher())
        _ = try await rematcher.rematch(since: first.version)
        events = try await scanEvents()
        #expect(events.count == 2)
        let second = try JSONDecoder().decode(ScanEventDetail.self, from: Data(try #require(events.last?.detail).utf8))
        #expect(second.new == ["CVE-2099-2002"] && second.counts["High"] == 2)
    }

    /// A finding an OpenVEX statement about the image suppresses is no news: a re-match that
    /// makes it High announces nothing of it and does not count it, while one not suppressed is
    /// still announced. Review: the `scan` webhook fired for suppressed findings.
    @Test func aFindingAnOpenVEXStatementSuppressesIsNoNews() async throws {
        let f = try ScanFixture(findings: true)
        let database = FindingsTests.database(f)
        let first = try await database.importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let image = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        func scanEvents() async throws -> [Event] {
            try await f.registry.metadata.events(after: 0, limit: 10_000).filter { $0.action == .scan }
        }
        #expect(try await scanEvents().count == 1)
        _ = try await VEXReferrerTests.attach(f, "library/debian", subject: image,
                                              document: VEXGateTests.notAffected(image, id: "CVE-2099-2002"))
        try await f.drain(f.feature.runner())
        #expect(try await scanEvents().count == 1)

        // CVE-2099-2002 (suppressed) and CVE-2099-1003 (not) both become High.
        let updated = FindingsTests.tracker
            .replacingOccurrences(of: "\"urgency\": \"unimportant\"", with: "\"urgency\": \"high\"")
            .replacingOccurrences(of: "\"urgency\": \"low\"", with: "\"urgency\": \"high\"")
        _ = try await database.importUpload(Data(updated.utf8), format: .debian, source: nil)
        let rematcher = try #require(f.feature.rematcher())
        _ = try await rematcher.rematch(since: first.version)
        let events = try await scanEvents()
        #expect(events.count == 2)
        let detail = try JSONDecoder().decode(ScanEventDetail.self, from: Data(try #require(events.last?.detail).utf8))
        #expect(detail.new == ["CVE-2099-1003"] && detail.counts["High"] == 2, "\(detail)")
    }

    @Test func nothingChangesWithoutABlockingSeverityOrWithoutQuarantine() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        try await quarantineOn(f)
        // No policy: the scanner is no gate, the image waits for a person.
        let waiting = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())
        #expect(try await f.registry.metadata.manifest(repository: "library/debian", digest: waiting)?.quarantineState == .pending)
    }

    @Test func pullGateRefusesFailingImagesOnV2AndAtAdmissionUntilAnExceptionCoversThem() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let image = try await f.image("library/debian", tag: "12", layers: [try FindingsTests.debianLayer()])
        let clean = try await f.image("library/zlib", tag: "1", layers: [try cleanLayer()])
        try await f.drain(f.feature.runner())
        #expect(try await f.backends.metadata.findings(manifest: clean)?.findings.isEmpty == true)

        let dir = NSTemporaryDirectory() + "berth-scan-keys-" + UUID().uuidString
        let access = try await AccessControl.open(store: f.registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir)
        _ = try await access.bootstrap(ownerPassword: "owner-test-password")
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try await BerthServer.makeApplication(registry: f.registry, access: access, features: [f.feature, AdmissionFeature()],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.router) { client in
            let challenge = try await client.execute(uri: "/v2/", method: .get).headers[.wwwAuthenticate] ?? ""
            let host = String(challenge.components(separatedBy: "service=\"").last?.prefix { $0 != "\"" } ?? "")
            func pull(_ path: String) async throws -> (HTTPResponse.Status, String) {
                var h = Self.owner
                h[.accept] = MediaType.ociManifest
                let r = try await client.execute(uri: "/v2/\(path)", method: .get, headers: h)
                return (r.status, String(buffer: r.body))
            }
            func admitted(_ image: String) async throws -> (Bool, String) {
                var h = Self.owner
                h[.contentType] = "application/json"
                let review: [String: Any] = [
                    "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "request": ["uid": "u", "kind": ["group": "", "version": "v1", "kind": "Pod"], "operation": "CREATE", "namespace": "p",
                                "object": ["apiVersion": "v1", "kind": "Pod", "metadata": ["name": "w"],
                                           "spec": ["containers": [["name": "c", "image": "\(host)/\(image)"]]]]],
                ]
                let r = try await client.execute(uri: "/admission/v1/validate", method: .post, headers: h,
                                                 body: ByteBuffer(bytes: Array(try JSONSerialization.data(withJSONObject: review))))
                #expect(r.status == .ok)
                let json = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any]
                let response = json?["response"] as? [String: Any]
                return (response?["allowed"] as? Bool ?? false, ((response?["status"] as? [String: Any])?["message"] as? String) ?? "")
            }
            func patch(_ body: String) async throws -> (HTTPResponse.Status, String) {
                var h = Self.owner
                h[.contentType] = "application/json"
                let r = try await client.execute(uri: "/api/v1/scan/policy", method: .patch, headers: h, body: ByteBuffer(string: body))
                return (r.status, String(buffer: r.body))
            }

            // The default policy blocks nothing.
            let shown = try await client.execute(uri: "/api/v1/scan/policy", method: .get, headers: Self.owner)
            #expect(shown.status == .ok)
            let view = try JSONSerialization.jsonObject(with: Data(buffer: shown.body)) as? [String: Any]
            #expect(view?["blockSeverity"] as? String == "None" && view?["blockPulls"] as? Bool == false)
            #expect(try await client.execute(uri: "/api/v1/scan/policy", method: .get).status == .unauthorized)
            #expect(try await pull("library/debian/manifests/12").0 == .ok)

            // Validation errors name the field.
            var (status, body) = try await patch(#"{"blockSeverity":"Severe"}"#)
            #expect(status == .badRequest && body.contains("blockSeverity"))
            (status, body) = try await patch(#"{"allow":[{"id":"CVE-2099-1001","until":"2099-01-01"}]}"#)
            #expect(status == .badRequest && body.contains("allow.why"))

            // High fails the Debian image: refused on /v2/ and at admission; the clean one passes.
            (status, body) = try await patch(#"{"blockSeverity":"High","blockPulls":true}"#)
            #expect(status == .ok && body.contains("\"blockPulls\":true"))
            (status, body) = try await pull("library/debian/manifests/12")
            #expect(status == .forbidden && body.contains("DENIED") && body.contains("scan policy") && body.contains("CVE-2099-1001"))
            #expect(try await pull("library/debian/manifests/\(image)").0 == .forbidden)
            #expect(try await pull("library/zlib/manifests/1").0 == .ok)
            var (allowed, message) = try await admitted("library/debian:12")
            #expect(!allowed && message.contains("scan policy") && message.contains("CVE-2099-1001"))
            #expect(try await admitted("library/zlib:1").0)

            // An exception for the one High finding lets it through, recorded with who asked.
            let until = ISO8601DateFormatter().string(from: Date().addingTimeInterval(30 * 86400))
            (status, body) = try await patch(#"{"allow":[{"id":"CVE-2099-1001","repository":"library/*","why":"backport pending","until":"\#(until)"}]}"#)
            #expect(status == .ok, "\(body)")
            let who = try #require((try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["allow"] as? [[String: Any]]).first?["who"] as? String
            #expect(who?.contains("owner") == true && body.contains("backport pending"))
            #expect(try await pull("library/debian/manifests/12").0 == .ok)
            (allowed, message) = try await admitted("library/debian:12")
            #expect(allowed, "\(message)")

            // Pulls are no longer blocked once blockPulls is off, whatever fails.
            (status, _) = try await patch(#"{"removeAllow":["CVE-2099-1001"]}"#)
            #expect(status == .ok)
            #expect(try await pull("library/debian/manifests/12").0 == .forbidden)
            (status, _) = try await patch(#"{"blockPulls":false}"#)
            #expect(status == .ok)
            #expect(try await pull("library/debian/manifests/12").0 == .ok)
        }
    }
}

/// The pull-admission chain over the fixture's registry with the feature's check, without HTTP.
struct PullAdmissionHarness {
    let f: ScanFixture
    init(_ f: ScanFixture) { self.f = f }

    func manifest(_ repository: String, _ tag: String) async throws -> ManifestContent {
        let admission = PullAdmission(registry: f.registry, access: nil, checks: [f.feature.gate!], host: "registry.test")
        return try await admission.manifest(try RepositoryName(repository), .tag(tag), for: Puller(caller: nil, address: nil))
    }
}

/// `GET /api/v1/scans`: images with finding counts by severity, only of repositories the caller may read.
@Suite struct ScanListTests {
    @Test func listsCountsFiltersBySeverityAndPatternAndNeverNamesUnreadableRepositories() async throws {
        let f = try ScanFixture(findings: true)
        _ = try await FindingsTests.database(f).importUpload(Data(FindingsTests.tracker.utf8), format: .debian, source: nil)
        let vulnerable = try await f.image("payments/api", tag: "1", layers: [try FindingsTests.debianLayer()])
        let clean = try await f.image("payments/zlib", tag: "1", layers: [try gzip(tar([("etc/os-release", osRelease),
            ("var/lib/dpkg/status", dpkgStatus([("zlib1g", "1:1.2.13.dfsg-1")]))]))])
        _ = try await f.image("billing/secret", tag: "v1", layers: [try FindingsTests.debianLayer()])
        try await f.drain(f.feature.runner())

        let dir = NSTemporaryDirectory() + "berth-scan-keys-" + UUID().uuidString
        let access = try await AccessControl.open(store: f.registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir)
        _ = try await access.bootstrap(ownerPassword: "owner-test-password")
        let actor = Actor(name: "test", address: "-")
        let entry = AccessState.ScopeMap.Entry(repository: try RepositoryPattern("payments/*"), actions: ["content/read", "metadata/read"])
        _ = try await access.putScopeMap(actor, name: "payments-read", description: nil, entries: [entry], create: true)
        let (_, pw) = try await access.createToken(actor, name: "reader", scopeMap: "payments-read")
        let reader: HTTPFields = [.authorization: "Basic " + Data("reader:\(pw["password1"]!)".utf8).base64EncodedString()]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let app = try await BerthServer.makeApplication(registry: f.registry, access: access, features: [f.feature],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.router) { client in
            func list(_ query: String, _ auth: HTTPFields = ScanGateTests.owner) async throws -> (HTTPResponse.Status, [[String: Any]]) {
                let r = try await client.execute(uri: "/api/v1/scans\(query)", method: .get, headers: auth)
                let json = try? JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any]
                return (r.status, json?["images"] as? [[String: Any]] ?? [])
            }
            var (status, images) = try await list("")
            #expect(status == .ok)
            #expect(Set(images.map { $0["repository"] as? String ?? "" }) == ["payments/api", "payments/zlib", "billing/secret"])
            let api = try #require(images.first { $0["repository"] as? String == "payments/api" })
            #expect(api["manifest"] as? String == vulnerable.string && api["tags"] as? [String] == ["1"])
            #expect(api["counts"] as? [String: Int] == ["High": 1, "Low": 2] && api["total"] as? Int == 3)
            let zlib = try #require(images.first { $0["repository"] as? String == "payments/zlib" })
            #expect(zlib["manifest"] as? String == clean.string && zlib["total"] as? Int == 0)

            (status, images) = try await list("?severity=high,Critical&repository=payments/*")
            #expect(status == .ok && images.map { $0["repository"] as? String ?? "" } == ["payments/api"])
            (status, _) = try await list("?severity=Severe")
            #expect(status == .badRequest)
            (status, _) = try await list("?repository=Payments/**")
            #expect(status == .badRequest)

            // A caller limited to payments/* never sees billing's image, whatever it asks.
            (status, images) = try await list("?severity=High", reader)
            #expect(status == .ok && images.map { $0["repository"] as? String ?? "" } == ["payments/api"])
            (status, images) = try await list("?repository=billing/secret", reader)
            #expect(status == .ok && images.isEmpty)
            #expect(try await client.execute(uri: "/api/v1/scans", method: .get).status == .unauthorized)

            // The catalog's listing rule (review, L1): a repository hidden from listings is not
            // named, nor a hidden tag, even to the owner.
            _ = try await f.registry.updateLock(try RepositoryName("billing/secret"), tag: nil, digest: nil, LockChange(listEnabled: false))
            _ = try await f.registry.updateLock(try RepositoryName("payments/api"), tag: "1", digest: nil, LockChange(listEnabled: false))
            (status, images) = try await list("")
            #expect(status == .ok && Set(images.map { $0["repository"] as? String ?? "" }) == ["payments/api", "payments/zlib"])
            #expect(images.first { $0["repository"] as? String == "payments/api" }?["tags"] as? [String] == [])
            (status, images) = try await list("?repository=billing/secret")
            #expect(status == .ok && images.isEmpty)
            // limit caps the answer, most findings first, and says it was cut.
            let r = try await client.execute(uri: "/api/v1/scans?limit=1", method: .get, headers: ScanGateTests.owner)
            let json = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as? [String: Any]
            #expect((json?["images"] as? [[String: Any]])?.map { $0["repository"] as? String } == ["payments/api"])
            #expect(json?["truncated"] as? Bool == true)
        }
    }
}
