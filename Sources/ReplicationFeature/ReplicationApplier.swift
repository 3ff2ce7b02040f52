import Access
import BerthAPIContract
import Foundation
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryCore
import RegistryStore
import ServiceLifecycle
import UpstreamClient

/// The replication consumer (issue 13, item 2): for each replica, reads the peer's event feed after
/// this region's durable cursor (`replication:<location>`, an event consumer's record: pause,
/// backoff and last error as for any consumer) and applies each event in order through the core,
/// as a push does: a manifest's blobs fetched by digest from the peer's `/v2/` (verified streams
/// into `putBlob`) before the manifest, stored by digest; tags moved to the digest the event
/// carries (never read by name), tags, manifests (and so repositories) deleted, quarantine
/// verdicts and locks. Tags and locks are last-writer-wins registers ordered by (HLC, region): a
/// write older than the one here is not applied and the loser goes to the conflict log. Changes
/// applied keep the peer's stamp and origin region (`EventOrigin.replicated`), so they are never
/// sent back (echoes are skipped). The cursor moves past an event only once it was applied (or
/// recorded as a conflict); a failure is retried with backoff and shown in `ReplicaProgress`.
public final class ReplicationApplier: Sendable {
    let registry: Registry
    let service: ReplicationService
    let registers: any ReplicationConflictStore
    /// Where a peer's access records are written (identities, scope maps, tokens, registry
    /// flags); nil: `access` events are not applied (and so logged as lost).
    let access: AccessControl?
    let limits: UpstreamLimits
    let logger: Logger
    /// Events read from a peer per step.
    let pageSize: Int
    let backoffBase: TimeInterval
    let backoffMax: TimeInterval
    /// Clients per replica (endpoint and credential): their token caches live across steps.
    private let clients = NIOLockedValueBox<[String: (key: String, client: UpstreamClient)]>([:])
    /// Per replica: the bytes of the blobs still to fetch for the image being applied (`bytesPending`).
    private let pending = NIOLockedValueBox<[String: Int64]>([:])
    /// Per paused replica: when its peer's head may be read again (`readHead`).
    private let pausedReads = NIOLockedValueBox<[String: Date]>([:])
    /// A paused replica's head is read at most this often, and after a failed read not before
    /// `pausedBackoff`; each read is given `pausedDeadline` (replicas are stepped one after
    /// another: a hung peer that was paused must not hold up the others).
    static let pausedInterval: TimeInterval = 5
    static let pausedBackoff: TimeInterval = 60
    static let pausedDeadline: Duration = .seconds(2)
    /// The replica whose events this task applies (set by `step`): where a fetch reports its bytes.
    @TaskLocal static var applying: String?

    public init(registry: Registry, service: ReplicationService, registers: any ReplicationConflictStore, access: AccessControl? = nil,
                limits: UpstreamLimits = UpstreamLimits(), pageSize: Int = 200, backoffBase: TimeInterval = 1, backoffMax: TimeInterval = 60,
                logger: Logger = Logger(label: "berth.replication")) {
        self.registry = registry
        self.access = access
        self.service = service
        self.registers = registers
        self.limits = limits
        self.pageSize = max(1, min(pageSize, ReplicationService.maxFeedPage))
        self.backoffBase = backoffBase
        self.backoffMax = backoffMax
        self.logger = logger
    }

    var region: String { service.region }
    var events: any EventLogStore { service.events }

    // MARK: stepping

    public enum StepResult: Sendable, Equatable {
        /// Events were applied (the cursor is now `to`); there may be more.
        case advanced(to: Int64)
        /// Nothing to apply now (caught up, paused, or waiting for a retry).
        case idle
        case failed(String)
    }

    /// One page of one replica's feed.
    @discardableResult
    public func step(location: String, now: Date = Date()) async throws -> StepResult {
        guard let replica = try await service.store.replica(location: location) else { return .idle }
        let name = ReplicationService.consumerName(location)
        var found = try await events.eventConsumer(named: name)
        if found == nil { found = try await events.registerEventConsumer(name: name, start: .beginning) }
        guard let record = found else { return .idle }
        var progress = try await service.store.replicaProgress(location: location) ?? ReplicaProgress()
        if record.paused {
            // A paused replica applies nothing but still shows how far behind it is: without this
            // read its lag would stay at what it was when paused (0, say) while the peer moved on.
            await readHead(replica, cursor: record.cursor, progress: &progress, location: location, now: now)
            return .idle
        }
        if let next = record.nextAttemptAt, next > now { return .idle }
        var cursor = record.cursor
        do {
            let client = try await client(for: replica)
            let page = try await readPage(client, after: cursor)
            progress.peerSequence = page.latestSequence
            progress.peerSequenceAt = now
            var parsed: [PeerEvent] = []
            for v in page.events.sorted(by: { $0.sequence < $1.sequence }) where v.sequence > record.cursor {
                parsed.append(try PeerEvent(v))
            }
            progress.oldestPendingAt = parsed.first?.at
            guard !parsed.isEmpty else {
                progress.oldestPendingAt = nil
                if progress.lastError != nil, page.latestSequence <= cursor { progress.lastError = nil; progress.lastErrorAt = nil }
                try await recordProgress(location, progress)
                return .idle
            }
            for (i, event) in parsed.enumerated() {
                try await Self.$applying.withValue(location) {
                    try await apply(event, location: location, client: client, now: now)
                }
                guard try await advance(name, from: cursor, to: event.sequence) else {
                    // Another worker moved the cursor (or the lease was lost): stop here.
                    progress.bytesPending = pendingBytes(location)
                    try await recordProgress(location, progress)
                    return .idle
                }
                cursor = event.sequence
                progress.oldestPendingAt = i + 1 < parsed.count ? parsed[i + 1].at : (cursor < page.latestSequence ? event.at : nil)
            }
            progress.lastError = nil
            progress.lastErrorAt = nil
            progress.bytesPending = pendingBytes(location)
            // Refused: the lease went to another worker (or the replica was deleted) meanwhile.
            guard try await recordProgress(location, progress) else { return .idle }
            return .advanced(to: cursor)
        } catch {
            let message = Self.describe(error)
            let attempts = (cursor > record.cursor ? 0 : record.attempts) + 1
            let delay = min(backoffBase * pow(2, Double(min(attempts - 1, 30))), backoffMax)
            let retryAt = now.addingTimeInterval(delay)
            if let fencing = LeaseFencing.current {
                _ = try await fencing.store.recordEventConsumerFailure(name: name, error: message, attempts: attempts, nextAttemptAt: retryAt,
                                                                       fence: fencing.fence)
            } else {
                try await events.recordEventConsumerFailure(name: name, error: message, attempts: attempts, nextAttemptAt: retryAt)
            }
            progress.lastError = message
            progress.lastErrorAt = now
            progress.bytesPending = pendingBytes(location)
            try await recordProgress(location, progress)
            logger.warning("replication from a replica failed", metadata: ["location": "\(location)", "attempt": "\(attempts)",
                                                                           "retry_in_s": "\(delay)", "error": "\(message)"])
            return .failed(message)
        }
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? RegistryError { return "\(e.code.rawValue): \(e.message)" }
        if let e = error as? ReplicationError {
            switch e {
            case .invalid(let m), .conflict(let m): return m
            case .notFound(let m): return "\(m) not found"
            }
        }
        return String("\(error)".prefix(500))
    }

    /// The replica's progress, fenced by the lease this worker runs under (if any), so a worker
    /// that lost the lease leaves its successor's progress alone. The lease is checked in the
    /// replication store, which is the lease store's database (`backends.metadata` for both).
    @discardableResult
    private func recordProgress(_ location: String, _ progress: ReplicaProgress) async throws -> Bool {
        try await service.store.recordReplicaProgress(location: location, progress, fence: LeaseFencing.current?.fence)
    }

    private func advance(_ name: String, from: Int64, to: Int64) async throws -> Bool {
        if let fencing = LeaseFencing.current {
            return try await fencing.store.advanceEventConsumer(name: name, from: from, to: to, fence: fencing.fence)
        }
        return try await events.advanceEventConsumer(name: name, from: from, to: to)
    }

    /// The peer's endpoint as a registry host for `UpstreamClient` (its path, if any, is not used).
    func client(for replica: ReplicaRecord) async throws -> UpstreamClient {
        let credential = try await service.credential(location: replica.location)
        let key = replica.endpoint + "\u{0}" + (credential ?? "")
        if let cached = clients.withLockedValue({ $0[replica.location] }), cached.key == key { return cached.client }
        guard let url = URLComponents(string: replica.endpoint), let host = url.host else {
            throw ReplicationError.invalid("replica \(replica.location) has an unusable endpoint")
        }
        let hostPort = (host.contains(":") ? "[\(host)]" : host) + (url.port.map { ":\($0)" } ?? "")
        let credentials: UpstreamCredentials? = credential.flatMap { c in
            guard let colon = c.firstIndex(of: ":") else { return nil }
            return UpstreamCredentials(username: String(c[..<colon]), password: String(c[c.index(after: colon)...]))
        }
        let client = try UpstreamClient(registry: hostPort, plainHTTP: url.scheme == "http", credentials: credentials,
                                        policy: service.policy, limits: limits)
        clients.withLockedValue { $0[replica.location] = (key, client) }
        return client
    }

    /// The peer's newest sequence and its oldest event not applied here, read with a page of one
    /// event, for a paused replica's lag: every `pausedInterval`, within `pausedDeadline`. A failed
    /// read leaves the progress as it was (the pause is the operator's; an error shows once
    /// replication runs again) and waits `pausedBackoff`.
    private func readHead(_ replica: ReplicaRecord, cursor: Int64, progress: inout ReplicaProgress, location: String, now: Date) async {
        if let next = pausedReads.withLockedValue({ $0[location] }), next > now { return }
        let read: Result<ReplicationEventPage, any Error> = await PeerHealthService.withDeadline(
            Self.pausedDeadline, onTimeout: .failure(ReplicationError.invalid("no answer within \(Self.pausedDeadline)"))) {
            do {
                return .success(try await self.readPage(try await self.client(for: replica), after: cursor, limit: 1))
            } catch {
                return .failure(error)
            }
        }
        do {
            let page = try read.get()
            pausedReads.withLockedValue { $0[location] = now.addingTimeInterval(Self.pausedInterval) }
            progress.peerSequence = page.latestSequence
            progress.peerSequenceAt = now
            progress.oldestPendingAt = page.latestSequence > cursor ? page.events.filter { $0.sequence > cursor }.map(\.at).min() : nil
            try await recordProgress(location, progress)
        } catch {
            pausedReads.withLockedValue { $0[location] = now.addingTimeInterval(Self.pausedBackoff) }
            logger.debug("a paused replica's feed could not be read", metadata: ["location": "\(location)", "error": "\(Self.describe(error))"])
        }
    }

    /// Drops what is kept per replica (its client, its paused read's next time, its bytes pending) for the replicas
    /// not in `locations`: deleted ones, whose entries stayed until a restart.
    func forget(except locations: Set<String>) {
        clients.withLockedValue { $0 = $0.filter { locations.contains($0.key) } }
        pausedReads.withLockedValue { $0 = $0.filter { locations.contains($0.key) } }
        pending.withLockedValue { $0 = $0.filter { locations.contains($0.key) } }
    }

    /// The replicas whose paused read has a next time (for tests).
    var pausedReadLocations: Set<String> { pausedReads.withLockedValue { Set($0.keys) } }

    func readPage(_ client: UpstreamClient, after: Int64, limit: Int? = nil) async throws -> ReplicationEventPage {
        let bytes = try await client.document(path: "/api/v1/replication/events?after=\(after)&limit=\(limit ?? pageSize)", limit: 16 << 20)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(ReplicationEventPage.self, from: Data(bytes))
        } catch {
            throw ReplicationError.invalid("the peer's event feed cannot be read: \(String("\(error)".prefix(200)))")
        }
    }

    // MARK: applying one event

    func apply(_ event: PeerEvent, location: String, client: UpstreamClient, now: Date) async throws {
        let step = ReplicationPlan.step(event, localRegion: region)
        if case .skip = step { return }
        try ReplicationPlan.checkDrift(event.stamp, now: now)
        let origin = EventOrigin(actor: "replication:" + location, address: "-", replicated: event.stamp.eventStamp)
        do {
            try await EventOrigin.$current.withValue(origin) {
                // A tag this step decided on changed before its effect (a client's write here, or
                // another worker's): decided again from what is there now, as many times as it
                // takes within `tagAttempts` (then the step fails and is retried with backoff).
                for attempt in 1... {
                    do {
                        try await self.apply(step, event: event, location: location, client: client, now: now)
                        return
                    } catch is Registry.TagMovedMeanwhile where attempt < Self.tagAttempts {
                        continue
                    }
                }
            }
        } catch let e as RegistryError where e.code == .denied {
            // Refused here (a lock, a quota, a pull-through cache's target): this region's state
            // wins and the peer's write is kept as lost, instead of stopping replication for good.
            let (kind, repository, key, value) = Self.describe(step)
            try await recordConflict(location, kind: kind, repository: repository, key: key,
                                     loser: RegisterWrite(value: value, stamp: event.stamp), winner: nil, now: now,
                                     winnerValue: "refused: " + e.message)
        }
    }

    /// The conflict log's kind, repository, key and value of a step refused here.
    static func describe(_ step: ApplyStep) -> (String, String, String, RegisterValue) {
        switch step {
        case .skip: ("none", "", "", .tombstone)
        case .manifest(let r, let d): ("manifest", r, d.string, .digest(d.string))
        case .tag(let r, let t, let w): ("tag", r, t, w.value)
        case .deleteManifest(let r, let d): ("manifest-delete", r, d.string, .tombstone)
        case .cascade(let r, let t, _): ("tag", r, t, .tombstone)
        case .quarantine(let r, let d, let state, _): ("quarantine", r, d.string, .digest(state.rawValue))
        case .lock(let r, let t, let d, let a, _): ("lock", r, t.map { "tag:" + $0 } ?? d.map { "digest:" + $0.string } ?? "", .digest(a.detail))
        case .setting(let name, let w): ("setting", "", name, w.value)
        case .access(let kind, let name, let w): ("access", "", kind.rawValue + ":" + name, w.value)
        }
    }

    /// How many times a step is decided again when a tag it decided on moved before its effect.
    static let tagAttempts = 5

    private func apply(_ step: ApplyStep, event: PeerEvent, location: String, client: UpstreamClient, now: Date) async throws {
        switch step {
        case .skip:
            return
        case .manifest(let repo, let digest):
            try await applyPresence(repo, digest, stamp: event.stamp, recordedByTagMove: false, location: location, client: client, now: now)
        case .tag(let repo, let tag, let write):
            // Where the tag points when the merge is decided: every effect below is made only
            // while it still points there (a client's write in between, newer than this one, must
            // not be undone under this older stamp: the partition test found a region removing
            // its own client's newer tag, and the regions diverging).
            // (The target first, then the register: a client's write between the two reads then
            // fails the precondition; the other order would let a stale decision through.)
            let target = try await registry.metadata.tagTarget(repository: repo, tag: tag)
            let current = try await tagWrite(repo, tag)
            let unchanged = Registry.TagPrecondition(target: target)
            let outcome = ReplicationPlan.merge(write, into: current)
            if let loser = outcome.conflictLoser {
                let winner = loser == write ? current : write
                try await recordConflict(location, kind: "tag", repository: repo, key: tag, loser: loser, winner: winner, now: now)
            }
            let wins = outcome.effect == .applied
            let name = try RepositoryName(repo)
            guard case .digest(let raw) = write.value else {
                guard wins else { return }
                do {
                    try await registry.deleteManifest(name, .tag(tag), ifTagTarget: unchanged)
                } catch let e as RegistryError where e.code == .manifestUnknown || e.code == .nameUnknown {
                    // Not here (never arrived, or gone with its manifest): the register still learns it.
                    try await registers.appendRegisterMark(repository: repo, standingFor: .tagDelete, digest: nil, tag: tag)
                } catch let e as RegistryError where e.code == .denied {
                    try await recordConflict(location, kind: "tag", repository: repo, key: tag, loser: write, winner: nil, now: now,
                                             winnerValue: "refused: " + e.message)
                }
                return
            }
            let digest = try Digest(parsing: raw)
            // A deletion of the manifest stamped after this move voids it, wherever it arrives first
            // (the deletion took the tags pointing at the manifest by older writes).
            if let deleted = try await newestDeletion(repo, raw), write.stamp < deleted {
                guard wins else { return }
                try await recordConflict(location, kind: "tag", repository: repo, key: tag, loser: write,
                                         winner: RegisterWrite(value: .tombstone, stamp: deleted), now: now, winnerValue: "manifest deleted")
                // The tag first: the mark makes the write a duplicate, so a failure in between
                // would never be repaired.
                try await removeTag(name, tag, write: write, location: location, now: now, ifTarget: unchanged)
                try await registers.appendRegisterMark(repository: repo, standingFor: .tagMove, digest: raw, tag: tag)
                return
            }
            // A move writes the manifest's presence too, whether or not it wins the tag: a deletion
            // older than it does not take the manifest, in every region alike.
            let present = try await applyPresence(repo, digest, stamp: write.stamp, recordedByTagMove: wins, location: location,
                                                  client: client, now: now)
            guard wins else { return }
            guard present else {
                // Gone at the peer too (its deletion follows in the feed): the tag's register learns
                // the move, and the tag's older target is not kept.
                try await removeTag(name, tag, write: write, location: location, now: now, ifTarget: unchanged)
                try await registers.appendRegisterMark(repository: repo, standingFor: .tagMove, digest: raw, tag: tag)
                return
            }
            // Already there (a concurrent move of the same tag to the same manifest): nothing to
            // move, and the store appends nothing, so the write is recorded as a mark (it counts in
            // the tag's register and in the manifest's presence).
            if target == digest {
                try await registers.appendRegisterMark(repository: repo, standingFor: .tagMove, digest: raw, tag: tag)
                return
            }
            let content = try await registry.manifest(name, .digest(digest))
            do {
                _ = try await registry.putManifest(name, reference: .tag(tag), bytes: Array(content.bytes.readableBytesView),
                                                   contentType: content.mediaType, ifTagTarget: unchanged)
            } catch let e as RegistryError where e.code == .denied {
                // A lock here refuses the move: the lock wins, and the move is kept as lost. It
                // still wrote the manifest's presence.
                try await recordConflict(location, kind: "tag", repository: repo, key: tag, loser: write, winner: nil, now: now,
                                         winnerValue: "refused: " + e.message)
                if let current = try await presence(repo, raw), !(current.stamp < write.stamp) { return }
                try await registers.appendRegisterMark(repository: repo, standingFor: .manifestPush, digest: raw, tag: nil)
            }
        case .cascade(let repo, let tag, let digest):
            // The peer's deletion of the manifest took this tag there; here it goes too when it
            // points at that manifest by an older write (the deletion, which follows, would take it).
            guard try await registry.metadata.tagTarget(repository: repo, tag: tag) == digest else { return }
            if let write = try await tagWrite(repo, tag), !(write.stamp < event.stamp) { return }
            try await removeTag(try RepositoryName(repo), tag, write: RegisterWrite(value: .tombstone, stamp: event.stamp), location: location,
                                now: now, ifTarget: Registry.TagPrecondition(target: digest))
        case .deleteManifest(let repo, let digest):
            let name = try RepositoryName(repo)
            // Every tag here that points at the manifest by a write older than the deletion goes
            // with it, whether or not the deletion wins the manifest's presence: those writes are
            // void in every region (the partition test found regions keeping a manifest whose
            // concurrent, earlier tag write had moved on, and regions diverging on such tags).
            for kept in try await registry.metadata.tags(repository: repo, pointingAt: digest, limit: 1000) {
                let write = try await tagWrite(repo, kept)
                if let write, !(write.stamp < event.stamp) { continue }
                if let write {
                    try await recordConflict(location, kind: "tag", repository: repo, key: kept, loser: write,
                                             winner: RegisterWrite(value: .tombstone, stamp: event.stamp), now: now, winnerValue: "manifest deleted")
                }
                try await removeTag(name, kept, write: RegisterWrite(value: .tombstone, stamp: event.stamp), location: location, now: now,
                                    ifTarget: Registry.TagPrecondition(target: digest))
            }
            if let current = try await presence(repo, digest.string), !(current.stamp < event.stamp) {
                // Pushed (or a tag moved to it) here after the deletion was made: the manifest
                // stays. The deletion is kept as lost, and remembered: a tag write older than it
                // arriving later is void here as everywhere.
                if current.stamp != event.stamp {
                    if current.value != .tombstone {   // two deletions are no conflict
                        try await recordConflict(location, kind: "manifest-delete", repository: repo, key: digest.string,
                                                 loser: RegisterWrite(value: .tombstone, stamp: event.stamp), winner: current, now: now,
                                                 winnerValue: "pushed")
                    }
                    // Once: the same deletion relayed by another peer finds it (a mark appended
                    // again would be relayed back and forth for ever).
                    if let known = try await newestDeletion(repo, digest.string), !(known < event.stamp) { return }
                    try await registers.appendRegisterMark(repository: repo, standingFor: .manifestDelete, digest: digest.string, tag: nil)
                }
                return
            }
            guard try await registry.metadata.manifest(repository: repo, digest: digest) != nil else {
                // Never stored here (or gone already): the deletion is remembered, so an older
                // push relayed later does not bring it back.
                try await registers.appendRegisterMark(repository: repo, standingFor: .manifestDelete, digest: digest.string, tag: nil)
                return
            }
            do {
                // The manifest and its tags only: its referrers and the index children it alone
                // kept went with it at the peer as deletions of their own, which follow in its
                // feed with their own stamps and are applied as any deletion (their presence
                // registers decide). A referrer or child written here after this deletion was
                // made (a push, a tag move) stays, as it does where the peer's cascade arrives
                // after that write (the partition test found regions keeping different referrers
                // when this deletion took them under its own stamp).
                try await registry.deleteManifest(name, .digest(digest), dependents: false)
            } catch let e as RegistryError where e.code == .manifestUnknown || e.code == .nameUnknown {
                // Gone meanwhile: remembered. Still stored (the core keeps a manifest a live index
                // lists): this region keeps it, and the deletion is kept as lost.
                guard try await registry.metadata.manifest(repository: repo, digest: digest) != nil else {
                    try await registers.appendRegisterMark(repository: repo, standingFor: .manifestDelete, digest: digest.string, tag: nil)
                    return
                }
                try await recordConflict(location, kind: "manifest-delete", repository: repo, key: digest.string,
                                         loser: RegisterWrite(value: .tombstone, stamp: event.stamp), winner: nil, now: now,
                                         winnerValue: "refused: still listed by an index here")
            } catch let e as RegistryError where e.code == .denied {
                try await recordConflict(location, kind: "manifest-delete", repository: repo, key: digest.string,
                                         loser: RegisterWrite(value: .tombstone, stamp: event.stamp), winner: nil, now: now,
                                         winnerValue: "refused: " + e.message)
            }
        case .quarantine(let repo, let digest, let state, let reason):
            guard try await registry.metadata.manifest(repository: repo, digest: digest) != nil else { return }
            try await registry.setQuarantine(try RepositoryName(repo), digest, state: state, reason: reason)
        case .lock(let repo, let tag, let digest, let attributes, let stamp):
            let write = RegisterWrite(value: .digest(attributes.detail), stamp: stamp, replaces: event.replaces)
            let key = RegisterKey.lock(tag: tag, digest: digest?.string)
            let current = ReplicationPlan.current(try await registers.registerWrites(repository: repo, key: key, before: nil, limit: 2),
                                                  localRegion: region)
            let outcome = ReplicationPlan.merge(write, into: current)
            let target = tag.map { "tag:" + $0 } ?? digest.map { "digest:" + $0.string } ?? ""
            if let loser = outcome.conflictLoser {
                let winner = loser == write ? current : write
                try await recordConflict(location, kind: "lock", repository: repo, key: target, loser: loser, winner: winner, now: now)
            }
            guard outcome.effect == .applied else { return }
            do {
                _ = try await registry.updateLock(try RepositoryName(repo), tag: tag, digest: digest,
                                                  LockChange(readEnabled: attributes.readEnabled, writeEnabled: attributes.writeEnabled,
                                                             deleteEnabled: attributes.deleteEnabled, listEnabled: attributes.listEnabled))
            } catch is LifecycleError {
                return   // its repository, tag or manifest is not here (gone, or never replicated)
            }
        case .setting(let name, let write):
            let current = ReplicationPlan.current(try await registers.registerWrites(repository: "", key: .setting(name), before: nil, limit: 2),
                                                  localRegion: region)
            let outcome = ReplicationPlan.merge(write, into: current)
            if let loser = outcome.conflictLoser {
                let winner = loser == write ? current : write
                try await recordConflict(location, kind: "setting", repository: "", key: name, loser: loser, winner: winner, now: now)
            }
            guard outcome.effect == .applied, case .digest(let raw) = write.value else { return }
            // Exactly the document the event names: the peer's current one, if it still has that
            // digest (else the peer wrote the setting again, and that write follows in its feed).
            let answer: [UInt8]
            do {
                answer = try await client.document(path: "/api/v1/replication/settings/\(name)", limit: Self.maxSettingBytes)
            } catch {
                if error.kind == .notFound { return }
                throw error
            }
            guard let view = try? JSONDecoder().decode(ReplicatedSettingView.self, from: Data(answer)), view.name == name else {
                throw ReplicationError.invalid("the peer's answer for setting \(name) cannot be read")
            }
            let document = Array(view.document.utf8)
            guard Digest.compute(document).string == raw else { return }
            // Stored only when this build reads it as its type (a peer on a newer build, or a part
            // this region is composed without, such as content trust, whose switched-on policy
            // would keep the server from starting): otherwise kept as lost, and replication goes on.
            if let problem = registry.settingDocumentProblem(name, Data(document)) {
                throw RegistryError(.denied, problem)
            }
            try await registry.metadata.setSettingDocument(name, Data(document))
        case .access(let kind, let name, let write):
            try await applyAccess(kind: kind, name: name, write: write, location: location, client: client, now: now)
        }
    }

    /// An access record's register write: merged against the record's current write in this
    /// log (the loser to the conflict log as kind `access`); a winning write is the record the
    /// peer serves, applied only when it still has the digest the event carries (else the peer's
    /// later write follows in its feed), or the tombstone; written through `AccessControl` (its
    /// `access` event keeps the peer's stamp, so it is not sent back).
    func applyAccess(kind: AccessRecordKind, name: String, write: RegisterWrite, location: String, client: UpstreamClient,
                     now: Date) async throws {
        let key = kind.rawValue + ":" + name
        func decide() async throws -> (effect: Bool, loser: RegisterWrite?, current: RegisterWrite?) {
            let current = ReplicationPlan.current(try await registers.registerWrites(repository: "", key: .access(kind: kind.rawValue, name: name),
                                                                                      before: nil, limit: 2), localRegion: region)
            let outcome = ReplicationPlan.merge(write, into: current)
            return (outcome.effect == .applied, outcome.conflictLoser, current)
        }
        func logLoser(_ loser: RegisterWrite, current: RegisterWrite?) async throws {
            let winner = loser == write ? current : write
            try await recordConflict(location, kind: "access", repository: "", key: key, loser: loser, winner: winner, now: now)
        }
        let first = try await decide()
        guard first.effect else {
            if let loser = first.loser { try await logLoser(loser, current: first.current) }
            return
        }
        guard let access else { throw RegistryError(.denied, "this region applies no access records") }
        var document: Data?
        if case .digest(let raw) = write.value {
            let answer: [UInt8]
            do {
                answer = try await client.document(path: "/api/v1/replication/access/\(kind.rawValue)/\(name)", limit: Self.maxAccessRecordBytes)
            } catch {
                if error.kind == .notFound { return }   // deleted since: its tombstone follows in the feed
                throw error
            }
            guard let view = try? JSONDecoder().decode(ReplicatedAccessRecordView.self, from: Data(answer)),
                  view.kind == kind.rawValue, view.name == name else {
                throw ReplicationError.invalid("the peer's answer for access record \(key) cannot be read")
            }
            let bytes = Array(view.record.utf8)
            guard Digest.compute(bytes).string == raw else { return }   // changed since: that write follows
            document = Data(bytes)
        }
        // Decided again and written under one version of the access state: a write here while the
        // record was fetched (a disable, a delete) makes the write fail and is merged with first,
        // so an older peer write never overwrites a newer local one.
        for _ in 0..<5 {
            let version = try await access.storedAccessStateVersion()
            let decision = try await decide()
            guard decision.effect else {
                if let loser = decision.loser { try await logLoser(loser, current: decision.current) }
                return
            }
            let written: Bool
            do {
                written = try await access.applyReplicatedRecord(kind: kind, name: name, document: document, actor: "replication:" + location,
                                                                 ifVersion: version)
            } catch AccessError.invalid(let message) {
                // A record this build cannot take (unreadable, a built-in scope map): kept as lost.
                throw RegistryError(.denied, "access record \(key) refused: \(message)")
            }
            if written {
                if let loser = decision.loser { try await logLoser(loser, current: decision.current) }
                return
            }
        }
        throw ReplicationError.invalid("access record \(key): the access state kept changing while it was applied; tried again later")
    }

    /// The largest access record a peer may send.
    static let maxAccessRecordBytes = 1 << 20

    /// The manifest's presence here as a register: the write with the greatest stamp among its
    /// pushes, restores, tag moves to it, deletions (tombstones) and marks standing for them; nil
    /// when the log has none.
    func presence(_ repo: String, _ digest: String) async throws -> RegisterWrite? {
        ReplicationPlan.newest(try await registers.registerWrites(repository: repo, key: .manifest(digest), before: nil, limit: 4),
                               localRegion: region)
    }

    /// A tag's current write here (naming the write before it as what it replaced), nil for none.
    func tagWrite(_ repo: String, _ tag: String) async throws -> RegisterWrite? {
        ReplicationPlan.current(try await registers.registerWrites(repository: repo, key: .tag(tag), before: nil, limit: 2), localRegion: region)
    }

    /// The stamp of the manifest's newest deletion here (applied, or remembered by a mark).
    func newestDeletion(_ repo: String, _ digest: String) async throws -> WriteStamp? {
        ReplicationPlan.newest(try await registers.registerWrites(repository: repo, key: .manifestDeletion(digest), before: nil, limit: 4),
                               localRegion: region)?.stamp
    }

    /// A write of the manifest's presence (its push, or a tag moved to it) stamped `stamp`. When it
    /// is the newest, the manifest must be here: fetched from the peer if missing (the fetch's push
    /// keeps the stamp) or else remembered by a mark, unless `recordedByTagMove` (the tag move
    /// applied next records it). Older than a deletion here, it is kept as lost. True when the
    /// manifest is stored here afterwards.
    @discardableResult
    func applyPresence(_ repo: String, _ digest: Digest, stamp: WriteStamp, recordedByTagMove: Bool, location: String,
                       client: UpstreamClient, now: Date) async throws -> Bool {
        let stored = try await registry.metadata.manifest(repository: repo, digest: digest) != nil
        let current = try await presence(repo, digest.string)
        let write = RegisterWrite(value: .digest(digest.string), stamp: stamp)
        if let current, !(current.stamp < stamp) {
            if current.value == .tombstone {
                if current.stamp != stamp {
                    try await recordConflict(location, kind: "manifest", repository: repo, key: digest.string, loser: write, winner: current,
                                             now: now, winnerValue: "manifest deleted")
                }
                return stored
            }
            // The newest write here says it is present: a manifest a fetch could not bring before
            // (the peer lacked a blob) or a cascade here took is fetched now.
            if stored { return true }
            return try await ensureManifest(try RepositoryName(repo), digest, client: client, depth: 0)
        }
        if stored {
            if !recordedByTagMove {
                try await registers.appendRegisterMark(repository: repo, standingFor: .manifestPush, digest: digest.string, tag: nil)
            }
            return true
        }
        guard try await ensureManifest(try RepositoryName(repo), digest, client: client, depth: 0) else { return false }
        if let current, current.value == .tombstone {
            // Deleted here before this newer write arrived: the manifest is back, the deletion lost.
            try await recordConflict(location, kind: "manifest-delete", repository: repo, key: digest.string, loser: current, winner: write,
                                     now: now, winnerValue: "pushed")
        }
        return true
    }

    /// Removes a tag whose manifest's deletion took it, or whose newer write cannot take effect
    /// here: a `tag.delete` with `EventAction.cascadeDetail`, which writes no register (peers read
    /// it as a `cascade` step). A lock that refuses it keeps the tag, and `write` is logged as lost.
    /// Only while the tag points where `ifTarget` says (else `Registry.TagMovedMeanwhile`: the
    /// step is decided again).
    func removeTag(_ name: RepositoryName, _ tag: String, write: RegisterWrite, location: String, now: Date,
                   ifTarget: Registry.TagPrecondition) async throws {
        do {
            try await registry.deleteManifest(name, .tag(tag), tagDetail: EventAction.cascadeDetail, ifTagTarget: ifTarget)
        } catch let e as RegistryError where e.code == .manifestUnknown || e.code == .nameUnknown {
            return
        } catch let e as RegistryError where e.code == .denied {
            try await recordConflict(location, kind: "tag", repository: name.value, key: tag, loser: write, winner: nil, now: now,
                                     winnerValue: "refused: " + e.message)
        }
    }

    /// The largest setting document a peer may send.
    static let maxSettingBytes = 1 << 20

    func recordConflict(_ location: String, kind: String, repository: String, key: String, loser: RegisterWrite, winner: RegisterWrite?,
                        now: Date, winnerValue: String? = nil) async throws {
        let conflict = ReplicationConflict(location: location, kind: kind, repository: repository, key: key, loserValue: Self.text(loser.value),
                                           loserStamp: loser.stamp.eventStamp, winnerValue: winnerValue ?? winner.map { Self.text($0.value) },
                                           winnerStamp: winner?.stamp.eventStamp, recordedAt: now)
        if try await registers.recordReplicationConflict(conflict) {
            logger.info("replication conflict", metadata: ["location": "\(location)", "kind": "\(kind)", "repository": "\(repository)",
                                                           "key": "\(key)", "loser": "\(loser.stamp)"])
        }
    }

    static func text(_ v: RegisterValue) -> String {
        switch v {
        case .tombstone: "tombstone"
        case .digest(let d): d
        }
    }

    // MARK: content

    static let maxDepth = 4

    /// Makes sure the manifest is stored here, fetching it (and its blobs, children first) from the
    /// peer by digest. False when the peer no longer has it (a later event of its log says why).
    func ensureManifest(_ repository: RepositoryName, _ digest: Digest, client: UpstreamClient, depth: Int) async throws -> Bool {
        if try await registry.metadata.manifest(repository: repository.value, digest: digest) != nil { return true }
        guard depth <= Self.maxDepth else { throw ReplicationError.invalid("indexes nested deeper than \(Self.maxDepth) levels") }
        let manifest: UpstreamManifest
        do {
            manifest = try await client.manifest(repository: repository.value, reference: .digest(digest))
        } catch {
            if error.kind == .notFound { return false }
            throw error
        }
        // A referrer is fetched whether or not its subject is here (OCI lets a referrer be pushed
        // before its subject, and one may outlive it): its own presence register decided that it
        // is wanted, as for any manifest.
        let parsed = try ManifestParser.parse(manifest.bytes, contentType: manifest.mediaType)
        if parsed.kind == .index {
            for child in parsed.children {
                guard try await ensureManifest(repository, child, client: client, depth: depth + 1) else { return false }
            }
        } else {
            let sizes = Self.blobSizes(manifest.bytes)
            var missing: [Digest] = []
            for blob in parsed.blobs where try await registry.metadata.linkedBlobSize(repository: repository.value, digest: blob) == nil {
                missing.append(blob)
            }
            try await reportPending(missing.reduce(0) { $0 &+ max(0, sizes[$1] ?? 0) })
            for blob in missing {
                guard try await ensureBlob(repository, blob, size: sizes[blob], client: client) else { return false }
                try await reportPending(pendingBytes(Self.applying) - max(0, sizes[blob] ?? 0))
            }
        }
        _ = try await registry.putManifest(repository, reference: .digest(digest), bytes: manifest.bytes, contentType: manifest.mediaType)
        if parsed.kind != .index { try await reportPending(0) }
        return true
    }

    /// Fetches a blob the repository does not hold from the peer, verified while it streams into
    /// the blob store; false when the peer no longer has it.
    func ensureBlob(_ repository: RepositoryName, _ digest: Digest, size: Int64?, client: UpstreamClient) async throws -> Bool {
        if try await registry.metadata.linkedBlobSize(repository: repository.value, digest: digest) != nil { return true }
        // Past the inline limit (or of no stated size), resumable: `ResumableBlobFetch.swift`.
        if let size, registry.keepsInline(size: size) { return try await fetchBlobWhole(repository, digest, size: size, client: client) }
        return try await fetchBlobResumably(repository, digest, size: size, client: client)
    }

    // MARK: bytes pending

    /// The bytes still to fetch for the image the replica's consumer is applying: the missing blobs'
    /// sizes as its manifest states them, counted down as each blob is stored (0 between images).
    /// Only the image being applied: the blobs of later events are known once their manifests are
    /// read.
    func pendingBytes(_ location: String?) -> Int64 {
        guard let location else { return 0 }
        return pending.withLockedValue { $0[location] ?? 0 }
    }

    /// Records the bytes pending of the replica being applied (none outside `step`), so
    /// `berth replication status` and the gauge on every node show them while a large image arrives.
    private func reportPending(_ bytes: Int64) async throws {
        guard let location = Self.applying else { return }
        let value = max(0, bytes)
        let changed = pending.withLockedValue { p -> Bool in
            defer { p[location] = value }
            return p[location, default: 0] != value
        }
        guard changed, var progress = try await service.store.replicaProgress(location: location) else { return }
        progress.bytesPending = value
        _ = try await recordProgress(location, progress)
    }

    /// The sizes an image manifest states for its config, layers and blobs.
    static func blobSizes(_ bytes: [UInt8]) -> [Digest: Int64] {
        struct Shape: Decodable { var config: Descriptor?; var layers: [Descriptor]?; var blobs: [Descriptor]? }
        guard let shape = try? JSONDecoder().decode(Shape.self, from: Data(bytes)) else { return [:] }
        var sizes: [Digest: Int64] = [:]
        for d in [shape.config].compactMap({ $0 }) + (shape.layers ?? []) + (shape.blobs ?? []) {
            if let digest = try? Digest(parsing: d.digest), d.size >= 0 { sizes[digest] = d.size }
        }
        return sizes
    }
}

/// Runs the replication consumer of every replica until the server stops (under one lease in a
/// cluster: `BerthServer.clusterOnce`).
public struct ReplicationApplierService: Service, EventConsumerHost {
    let applier: ReplicationApplier
    let poll: Duration

    /// One consumer per replica, `replication:<location>`.
    public var consumerNames: [String] { [ReplicationService.consumerName("") + "*"] }

    public init(applier: ReplicationApplier, poll: Duration) {
        self.applier = applier
        self.poll = poll
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                var busy = false
                do {
                    let replicas = try await applier.service.store.replicas()
                    applier.forget(except: Set(replicas.map(\.location)))
                    for replica in replicas {
                        if case .advanced = try await applier.step(location: replica.location) { busy = true }
                    }
                } catch is CancellationError {
                    return
                } catch {
                    applier.logger.warning("replication step failed", metadata: ["error": "\(error)"])
                }
                if !busy { try? await Task.sleep(for: poll) }
            }
        }
    }
}
