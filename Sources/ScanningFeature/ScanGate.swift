import Access
import Admission
import Foundation
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryCore
import RegistryStore
import Scanning

/// The scan policy at work: its stored setting (read through a cache dropped on a `scan-policy`
/// setting event), the quarantine verdicts the scanner gives after a scan or a re-match, and the
/// check of the pull-admission chain that refuses images failing the policy when `blockPulls` is
/// on (so `/v2/` pulls and the Kubernetes admission endpoints agree). Verdicts of the pull check
/// are cached briefly per repository and manifest, and dropped when the policy changes or the
/// scanner stores findings on this node (another node's new findings reach this cache within
/// `ttl`).
public final class ScanGate: Sendable {
    public static let settingKey = SettingKey<ScanPolicy>("scan-policy")
    /// The actor of the verdicts the scanner records (events and audit).
    public static let actor = "scanner"

    let registry: Registry
    let findings: any FindingStore
    let logger: Logger
    private let policy = NIOLockedValueBox<(value: ScanPolicy, at: Double)?>(nil)
    private struct Verdict { let verdict: ScanPolicyVerdict; let at: Date; let generation: Int }
    private let verdicts = NIOLockedValueBox<[String: Verdict]>([:])
    private let generation = NIOLockedValueBox(0)
    /// The re-judging job after a policy change: the running task, and whether another change
    /// came while it ran (it then runs once more).
    private let rejudging = NIOLockedValueBox<(task: Task<Void, Never>?, again: Bool)>((nil, false))
    let ttl: TimeInterval = 30

    public init(registry: Registry, findings: any FindingStore, logger: Logger = Logger(label: "berth.scan.policy")) {
        self.registry = registry
        self.findings = findings
        self.logger = logger
        registry.observeEvents { [weak self] events in
            guard let self else { return }
            if events.contains(where: { $0.action == EventAction.setting && $0.detail == Self.settingKey.name }) {
                self.policy.withLockedValue { $0 = nil }
                self.invalidate()
            } else if events.contains(where: { $0.action == .manifestPush || $0.action == .manifestDelete }) {
                // A pushed index or a deleted child changes what an index's verdict reads.
                self.invalidate()
            }
        }
    }

    /// The stored policy (the default, which blocks nothing, when none is stored). A stored
    /// policy that no longer reads fails closed (the error is thrown).
    public func current() async throws -> ScanPolicy {
        let now = registry.configuration.cacheClock()
        if let p = policy.withLockedValue({ $0 }), registry.cacheTrusts(loadedAt: p.at, now: now) { return p.value }
        let before = generation.withLockedValue { $0 }
        let loaded = try await registry.metadata.setting(Self.settingKey) ?? ScanPolicy()
        policy.withLockedValue { cached in
            // Install only what was read in one generation (an update meanwhile wins).
            if generation.withLockedValue({ $0 }) == before { cached = (loaded, now) }
        }
        return loaded
    }

    /// Applies `change` as `who` and stores the result; throws `ScanPolicyInvalid` for a bad field.
    @discardableResult
    public func update(_ change: ScanPolicyChange, who: String, now: Date = Date()) async throws -> ScanPolicy {
        let stored = try await registry.replacing({ try await registry.metadata.setting(Self.settingKey) }, default: nil) ?? ScanPolicy()
        let new = try change.applied(to: stored, who: who, now: now)
        try await registry.metadata.setSetting(Self.settingKey, new)
        invalidate()
        policy.withLockedValue { $0 = (new, registry.configuration.cacheClock()) }
        return new
    }

    /// Drops every cached verdict.
    public func invalidate() {
        generation.withLockedValue { $0 += 1 }
        verdicts.withLockedValue { $0.removeAll() }
    }

    /// The findings a verdict on `digest` of `repository` judges: the image's own, or for an index
    /// the union of its images' (one level), split into those the policy judges and those a VEX
    /// statement suppresses (`not_affected`, `fixed`: OpenVEX referrers of the image, or of the
    /// index holding it, in that repository, uploaded or pushed); nil when nothing was matched
    /// (not scanned yet, or not an image). `bytes`: the manifest's own, when the caller has them
    /// (a pull, which may be of a manifest a cache serves before it is stored); else read.
    func findingsToJudge(_ repository: String, _ digest: Digest,
                         bytes known: [UInt8]? = nil) async throws -> (judged: [StoredFinding], suppressed: [StoredFinding])? {
        var parts: [(manifest: Digest, findings: [StoredFinding])] = []
        var holders: [String] = []
        if let own = try await findings.findings(manifest: digest) {
            parts = [(digest, own.findings)]
        } else {
            var manifestBytes = known
            if manifestBytes == nil { manifestBytes = try await registry.metadata.inlineContent(digest) }
            guard let bytes = manifestBytes,
                  let parsed = try? JSONDecoder().decode(ScannedManifest.self, from: Data(bytes)), let children = parsed.manifests else { return nil }
            for child in children.prefix(1000) {
                guard let d = try? Digest(parsing: child.digest), let f = try await findings.findings(manifest: d) else { continue }
                parts.append((d, f.findings))
            }
            if parts.isEmpty { return nil }
            holders = [digest.string]
        }
        // Statements are read only for images with findings (and the index itself).
        var subjects = parts.filter { !$0.findings.isEmpty }.map(\.manifest)
        if !holders.isEmpty, !subjects.isEmpty { subjects.append(digest) }
        let (vex, _) = subjects.isEmpty ? (VEXIndex(), []) : try await VEXReferrers.index(registry, repository: repository, subjects: subjects)
        var judged: [StoredFinding] = []
        var suppressed: [StoredFinding] = []
        for part in parts {
            for f in part.findings {
                let subject = VEXSubject(manifest: part.manifest.string, vulnerability: f.advisoryID, aliases: f.aliases, package: f.package,
                                         sourcePackage: f.sourcePackage, installedVersion: f.installedVersion, holders: holders)
                if !vex.isEmpty, vex.suppresses(subject) { suppressed.append(f) } else { judged.append(f) }
            }
        }
        return (judged, suppressed)
    }

    /// The policy's verdict on `digest` of `repository`, nil when it has no findings to judge.
    public func verdict(_ repository: String, _ digest: Digest, policy: ScanPolicy, now: Date = Date(),
                        bytes: [UInt8]? = nil) async throws -> ScanPolicyVerdict? {
        guard let found = try await findingsToJudge(repository, digest, bytes: bytes) else { return nil }
        return ScanPolicyEvaluation.evaluate(found.judged, repository: repository, policy: policy, now: now, suppressed: found.suppressed)
    }

    /// After a VEX document about `digest` reached `repository` (an upload, or a referrer
    /// pushed): the scanner's verdict on it, and on the indexes of the repository that hold it,
    /// again (only while quarantine is on and the policy is active; only Pending manifests and
    /// verdicts the scanner gave change).
    public func rejudge(repository: String, subject digest: Digest) async throws {
        invalidate()
        let policy = try await current()
        guard policy.isActive, try await registry.quarantinePolicy().enabled else { return }
        try await judge(repository: repository, digest: digest, policy: policy)
        for parent in try await registry.metadata.parents(repository: repository, child: digest) {
            try await judge(repository: repository, digest: parent, policy: policy)
        }
    }

    // MARK: Re-judging after a policy change

    /// After a policy change: the scanner's verdicts on existing images are given again in the
    /// background (`rejudgeAll`), from the stored findings, reading no layer. One job at a time
    /// per node; a change while it runs makes it run once more after.
    public func scheduleRejudgeAll() {
        rejudging.withLockedValue { state in
            if state.task != nil {
                state.again = true
                return
            }
            state.task = Task { [self] in await self.rejudgeLoop() }
        }
    }

    private func rejudgeLoop() async {
        while true {
            do {
                let changed = try await rejudgeAll()
                if changed > 0 { logger.info("quarantine verdicts given again after a scan policy change", metadata: ["manifests": "\(changed)"]) }
            } catch {
                logger.warning("re-judging after a scan policy change failed", metadata: ["error": "\(String(describing: error).prefix(300))"])
            }
            let again = rejudging.withLockedValue { state -> Bool in
                if state.again {
                    state.again = false
                    return true
                }
                state.task = nil
                return false
            }
            if !again { return }
        }
    }

    /// Waits until no re-judging job runs (tests).
    public func rejudgeFinished() async {
        while let task = rejudging.withLockedValue({ $0.task }) { await task.value }
    }

    /// Gives the current policy's verdict again to every quarantined manifest whose verdict the
    /// scanner gave (and, while the policy blocks some severity, to `Pending` ones): a walk over
    /// the repositories, images before indexes, each judged from its stored findings. A verdict a
    /// person gave is never changed; a policy that blocks nothing passes what the scanner had
    /// failed. Nothing is done while quarantine is off. Answers how many manifests it judged.
    @discardableResult
    public func rejudgeAll() async throws -> Int {
        invalidate()
        let policy = try await current()
        guard try await registry.quarantinePolicy().enabled else { return 0 }
        var after: String?
        var judged = 0
        while true {
            let page = try await registry.metadata.repositories(after: after, limit: 500)
            if page.isEmpty { break }
            for repo in page {
                try Task.checkCancellation()
                guard let graph = try await registry.metadata.repositoryGraph(repo) else { continue }
                func isIndex(_ m: RepositoryGraph.Manifest) -> Bool { m.mediaType.contains("index") || m.mediaType.contains("manifest.list") }
                let quarantined = graph.manifests.values.filter { $0.quarantineState != nil }
                    .sorted { (isIndex($0) ? 1 : 0, $0.digest) < (isIndex($1) ? 1 : 0, $1.digest) }
                for m in quarantined {
                    guard let digest = try? Digest(parsing: m.digest),
                          let record = try await registry.metadata.manifest(repository: repo, digest: digest) else { continue }
                    let ours = record.quarantineReason?.hasPrefix(ScanPolicyEvaluation.reasonPrefix) == true
                    guard ours || (policy.isActive && record.quarantineState == .pending) else { continue }
                    try await judge(repository: repo, digest: digest, policy: policy)
                    judged += 1
                }
            }
            after = page.last
        }
        return judged
    }

    // MARK: Quarantine verdicts

    /// After a scan of `outcome` pushed to `repository`: each image (and an index after its
    /// images) gets the policy's verdict through the core's quarantine path, when quarantine is
    /// in use and the policy blocks some severity. Only `Pending` manifests and verdicts the
    /// scanner gave itself change; a verdict a person recorded, or a manifest never quarantined,
    /// is left as it is. Manifests are named by digest, never by tag.
    public func judge(repository: String, outcome: ScanOutcome) async throws {
        invalidate()
        let policy = try await current()
        guard policy.isActive, try await registry.quarantinePolicy().enabled else { return }
        for child in outcome.children { try await judge(repository: repository, digest: child.manifest, policy: policy) }
        try await judge(repository: repository, digest: outcome.manifest, policy: policy)
    }

    /// A manifest matched again: its findings before and after.
    public struct Rematched: Sendable {
        public var digest: Digest
        public var previous: StoredFindings?
        public var current: StoredFindings
        public init(digest: Digest, previous: StoredFindings?, current: StoredFindings) {
            self.digest = digest
            self.previous = previous
            self.current = current
        }
    }

    /// After a re-match of `digest`'s findings: as `rematched(_:)` for it alone.
    public func rematched(_ digest: Digest, previous: StoredFindings?, current: StoredFindings) async throws {
        try await rematched([Rematched(digest: digest, previous: previous, current: current)])
    }

    /// After a re-match of a chunk of manifests: a `scan` event for each one with new High or
    /// Critical findings, and (only while quarantine is on and the policy is active) each one's
    /// verdict, and its indexes', in every repository that holds it. The repositories come from
    /// one store read by the manifests' digests (`manifestHolders`), in name order, for the
    /// whole chunk and both steps: no walk over the repositories (it used to be one walk per
    /// chunk, each asking every repository about every manifest); none at all when nothing is to
    /// be announced and no verdict is to be given.
    public func rematched(_ items: [Rematched]) async throws {
        guard !items.isEmpty else { return }
        invalidate()
        let announcing = Set(items.filter { !Self.newSevere(previous: $0.previous, current: $0.current).isEmpty }.map(\.digest))
        let policy = try await self.current()
        let judging = policy.isActive ? try await registry.quarantinePolicy().enabled : false
        let visited = judging ? items : items.filter { announcing.contains($0.digest) }
        guard !visited.isEmpty else { return }
        var byDigest: [String: Rematched] = [:]
        for item in visited { byDigest[item.digest.string] = item }
        for holder in try await registry.metadata.manifestHolders(visited.map(\.digest)) {
            guard let item = byDigest[holder.digest] else { continue }
            if announcing.contains(item.digest) {
                try await announce(repository: holder.repository, digest: item.digest, previous: item.previous, current: item.current)
            }
            guard judging else { continue }
            try await judge(repository: holder.repository, digest: item.digest, policy: policy)
            for parent in try await registry.metadata.parents(repository: holder.repository, child: item.digest) {
                try await judge(repository: holder.repository, digest: parent, policy: policy)
            }
        }
    }

    // MARK: `scan` events

    /// The ids of High and Critical findings of `current` that `previous` did not have (by
    /// advisory id, sorted).
    public static func newSevere(previous: StoredFindings?, current: StoredFindings) -> [String] {
        severeIDs(current.findings).subtracting(severeIDs(previous?.findings ?? [])).sorted()
    }

    /// The advisory ids of the High and Critical findings among `findings`.
    static func severeIDs(_ findings: [StoredFinding]) -> Set<String> {
        Set(findings.filter { $0.severity == "High" || $0.severity == "Critical" }.map(\.advisoryID))
    }

    /// Appends a `scan` event for `digest` of `repository` when new High or Critical findings
    /// appeared (`newSevere`) that no OpenVEX statement about the image suppresses, so webhooks
    /// subscribed to `scan` hear of it: the counts by severity of the findings not suppressed, the
    /// new ids (at most 100) and the image's tags (the first as the event's tag).
    public func announce(repository: String, digest: Digest, previous: StoredFindings?, current: StoredFindings) async throws {
        var new = Self.newSevere(previous: previous, current: current)
        guard !new.isEmpty else { return }
        // What an OpenVEX statement about the image suppresses (`not_affected`, `fixed`: as the
        // verdicts read them) is no news and is not counted (review: a webhook fired for it). When
        // the statements cannot be read, the event goes out unfiltered (review: failing here lost
        // it, since the retry finds the findings already stored).
        var vex = VEXIndex()
        do {
            (vex, _) = try await VEXReferrers.index(registry, repository: repository, subjects: [digest])
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.warning("OpenVEX statements not read for a scan event; announced unfiltered",
                           metadata: ["repository": "\(repository)", "manifest": "\(digest)", "error": "\(String(describing: error).prefix(300))"])
        }
        let open = vex.isEmpty ? current.findings : current.findings.filter { f in
            !vex.suppresses(VEXSubject(manifest: digest.string, vulnerability: f.advisoryID, aliases: f.aliases, package: f.package,
                                       sourcePackage: f.sourcePackage, installedVersion: f.installedVersion))
        }
        let openSevere = Self.severeIDs(open)
        new = new.filter { openSevere.contains($0) }
        guard !new.isEmpty else { return }
        var counts: [String: Int] = [:]
        for f in open { counts[f.severity, default: 0] += 1 }
        // By the tags' digest index: the whole repository graph per scanned image made scanning
        // quadratic in the repository's size (a 10,000-image repository fell below 7 images/s).
        let tags = try await registry.metadata.tags(repository: repository, pointingAt: digest, limit: 100)
        let detail = ScanEventDetail(counts: counts, new: Array(new.prefix(100)), tags: Array(tags.prefix(100)))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(detail), as: UTF8.self)
        try await EventOrigin.$current.withValue(EventOrigin(actor: Self.actor, address: "-")) {
            try await findings.appendScanEvent(repository: repository, digest: digest, tag: tags.first, detail: json)
        }
    }

    func judge(repository: String, digest: Digest, policy: ScanPolicy) async throws {
        guard let record = try await registry.metadata.manifest(repository: repository, digest: digest),
              let state = record.quarantineState else { return }
        let ours = record.quarantineReason?.hasPrefix(ScanPolicyEvaluation.reasonPrefix) == true
        guard state == .pending || ours else { return }
        guard let verdict = try await verdict(repository, digest, policy: policy) else { return }
        // A verdict on an index moves its quarantined images with it (the core's rule): never
        // over a verdict a person gave one of them (review, high: a person's Failed on an image
        // became Passed by way of its index). Such an index is left to a person.
        if try await aChildHasAPersonsVerdict(repository, digest) {
            logger.info("quarantine verdict left to a person: an image of the index has a person's verdict",
                        metadata: ["repository": "\(repository)", "manifest": "\(digest)"])
            return
        }
        let next: QuarantineState = verdict.passed ? .passed : .failed
        if next == state && verdict.reason == record.quarantineReason { return }
        let name = try RepositoryName(repository)
        try await EventOrigin.$current.withValue(EventOrigin(actor: Self.actor, address: "-")) {
            try await registry.setQuarantine(name, digest, state: next, reason: verdict.reason)
        }
        logger.info("quarantine verdict", metadata: ["repository": "\(repository)", "manifest": "\(digest)", "state": "\(next.rawValue)"])
    }
}

extension ScanGate {
    /// Whether `digest` is an index one of whose images in `repository` carries a verdict that
    /// is not Pending and was not given by the scanner.
    func aChildHasAPersonsVerdict(_ repository: String, _ digest: Digest) async throws -> Bool {
        guard let bytes = try await registry.metadata.inlineContent(digest),
              let parsed = try? JSONDecoder().decode(ScannedManifest.self, from: Data(bytes)), let children = parsed.manifests else {
            return false
        }
        for child in children.prefix(1000) {
            guard let d = try? Digest(parsing: child.digest),
                  let record = try await registry.metadata.manifest(repository: repository, digest: d),
                  let state = record.quarantineState, state != .pending else { continue }
            if record.quarantineReason?.hasPrefix(ScanPolicyEvaluation.reasonPrefix) != true { return true }
        }
        return false
    }
}

/// The scan policy is a check of the pull-admission chain (after locks and quarantine).
extension ScanGate: PullAdmissionCheck {
    public func refusal(for pull: PullAdmission.Subject) async throws -> String? {
        let gen = generation.withLockedValue { $0 }
        let policy = try await current()
        guard policy.blockPulls, policy.isActive else { return nil }
        // Signatures, SBOMs and other artifacts that are referrers are not judged; an image or an
        // index carrying a `subject` is (review, M3: a `subject` exempted a runnable image).
        if pull.content.subject != nil {
            let parsed = try? JSONDecoder().decode(ScannedManifest.self, from: Data(pull.content.bytes.readableBytesView))
            if parsed?.isRunnable != true { return nil }
        }
        let key = "\(pull.repository.value)@\(pull.content.digest)"
        let cached = verdicts.withLockedValue { $0[key] }
        let verdict: ScanPolicyVerdict
        if let cached, cached.generation == gen, Date().timeIntervalSince(cached.at) < ttl {
            verdict = cached.verdict
        } else {
            // Not scanned yet: admitted (quarantine-on-push is the gate for what is not scanned yet).
            guard let v = try await self.verdict(pull.repository.value, pull.content.digest, policy: policy,
                                                 bytes: Array(pull.content.bytes.readableBytesView)) else { return nil }
            verdict = v
            verdicts.withLockedValue { map in
                if map.count > 10_000 { map.removeAll() }
                map[key] = Verdict(verdict: v, at: Date(), generation: gen)
            }
        }
        if verdict.passed { return nil }
        return "refused by the scan policy (block-pulls, block-severity \(policy.blockSeverity)): "
            + String(verdict.reason.dropFirst(ScanPolicyEvaluation.reasonPrefix.count))
    }
}
