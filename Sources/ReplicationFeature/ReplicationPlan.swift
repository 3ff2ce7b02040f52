import Access
import BerthAPIContract
import Foundation
import OCIModel
import RegistryStore

// What the replication consumer does with one event of a peer's feed, as pure logic: which events
// it applies and how, and the conflict model's decision for a register write (tags, locks). The
// consumer (`ReplicationApplier`) does the I/O these values ask for.

/// One event of a peer's feed, parsed and checked.
public struct PeerEvent: Sendable, Equatable {
    public var sequence: Int64
    public var at: Date
    /// nil for an action this build does not know (applied as nothing, and said so).
    public var action: EventAction?
    public var rawAction: String
    public var repository: String
    public var digest: Digest?
    public var tag: String?
    public var size: Int64?
    public var subject: Digest?
    public var detail: String?
    /// The write's place in the order regions agree on: its HLC stamp and origin region.
    public var stamp: WriteStamp
    /// The write it replaced in the peer's log (register writes only).
    public var replaces: WriteStamp?

    public init(sequence: Int64, at: Date, action: EventAction?, rawAction: String, repository: String, digest: Digest?, tag: String?,
                size: Int64?, subject: Digest?, detail: String?, stamp: WriteStamp, replaces: WriteStamp?) {
        self.sequence = sequence
        self.at = at
        self.action = action
        self.rawAction = rawAction
        self.repository = repository
        self.digest = digest
        self.tag = tag
        self.size = size
        self.subject = subject
        self.detail = detail
        self.stamp = stamp
        self.replaces = replaces
    }

    /// Parses a feed entry; a malformed one is refused (the peer is not trusted with our state).
    public init(_ v: ReplicationEventView) throws(ReplicationError) {
        guard let hlc = HLCStamp(v.hlc) else { throw .invalid("event \(v.sequence): invalid hlc '\(v.hlc.prefix(40))'") }
        do { try ReplicationService.validate(region: v.region) } catch { throw .invalid("event \(v.sequence): invalid region") }
        var digest: Digest?
        if let raw = v.digest {
            guard let d = try? Digest(parsing: raw) else { throw .invalid("event \(v.sequence): invalid digest") }
            digest = d
        }
        var subject: Digest?
        if let raw = v.subject {
            guard let d = try? Digest(parsing: raw) else { throw .invalid("event \(v.sequence): invalid subject") }
            subject = d
        }
        // Names a peer sends are checked like a client's: a bad one is the peer's fault, shown
        // in the status, never written here.
        if let tag = v.tag, !Tag.isValid(tag) { throw .invalid("event \(v.sequence): invalid tag '\(tag.prefix(130))'") }
        if !v.repository.isEmpty, (try? RepositoryName(v.repository)) == nil {
            throw .invalid("event \(v.sequence): invalid repository name '\(v.repository.prefix(256))'")
        }
        var replaces: WriteStamp?
        if let raw = v.replaces {
            guard let parsed = WriteStamp(parsing: raw) else { throw .invalid("event \(v.sequence): invalid replaces") }
            replaces = parsed
        }
        self.init(sequence: v.sequence, at: v.at, action: EventAction(rawValue: v.action), rawAction: v.action, repository: v.repository,
                  digest: digest, tag: v.tag, size: v.size, subject: subject, detail: v.detail,
                  stamp: WriteStamp(hlc: hlc, region: v.region), replaces: replaces)
    }
}

extension WriteStamp {
    /// `<ms>.<logical>@<region>`, the wire form of `description`.
    public init?(parsing text: String) {
        guard let at = text.firstIndex(of: "@"), let hlc = HLCStamp(String(text[..<at])) else { return nil }
        let region = String(text[text.index(after: at)...])
        guard (try? ReplicationService.validate(region: region)) != nil else { return nil }
        self.init(hlc: hlc, region: region)
    }

    /// The stamp of an event of this region's log (its region nil: a change made here).
    public init(_ stamp: EventStamp, localRegion: String) {
        self.init(hlc: HLCStamp(milliseconds: stamp.milliseconds, logical: UInt32(clamping: stamp.logical)),
                  region: stamp.region ?? localRegion)
    }

    /// The stamp a change applied from a peer keeps in this region's log.
    public var eventStamp: EventStamp {
        EventStamp(region: region, milliseconds: hlc.milliseconds, logical: Int64(hlc.logical))
    }
}

/// Lock attributes as a `lock` event's detail states them (`read=true write=false ...`).
public struct LockAttributesWrite: Sendable, Equatable {
    public var readEnabled: Bool
    public var writeEnabled: Bool
    public var deleteEnabled: Bool
    public var listEnabled: Bool

    public init?(detail: String?) {
        guard let detail else { return nil }
        var values: [String: Bool] = [:]
        for part in detail.split(separator: " ") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, let v = Bool(String(kv[1])) else { return nil }
            values[String(kv[0])] = v
        }
        guard let r = values["read"], let w = values["write"], let d = values["delete"], let l = values["list"], values.count == 4 else { return nil }
        (readEnabled, writeEnabled, deleteEnabled, listEnabled) = (r, w, d, l)
    }

    public var detail: String { "read=\(readEnabled) write=\(writeEnabled) delete=\(deleteEnabled) list=\(listEnabled)" }
}

/// What applying one peer event takes.
public enum ApplyStep: Sendable, Equatable {
    /// Nothing to do here: an echo of this region's own change, content that arrives with the
    /// manifests naming it (blob events), or an event of a kind not replicated (runs, settings).
    case skip(String)
    /// Fetch the manifest (and what it names) by digest and store it by digest.
    case manifest(repository: String, digest: Digest)
    /// A tag's register write: a move to the digest the event carries, or a tombstone.
    case tag(repository: String, tag: String, write: RegisterWrite)
    /// Delete the manifest (a tombstone of its presence). A tag write older than it is void: the
    /// tags it took at the peer come before it as `cascade` steps, and any tag here that still
    /// points at it by an older write goes with it. Its referrers and index children do not: those
    /// the peer's deletion took follow as deletions of their own.
    case deleteManifest(repository: String, digest: Digest)
    /// A tag that went with its manifest at the peer (`EventAction.cascadeDetail`): not a write of
    /// the tag's register. Here the tag goes too if it points at that manifest by a write older
    /// than this one (the manifest's deletion follows and says the same; this step only tells a
    /// deletion the peer knew of from a concurrent tag write, which is logged as lost).
    case cascade(repository: String, tag: String, digest: Digest)
    case quarantine(repository: String, digest: Digest, state: QuarantineState, reason: String?)
    /// A lock's register write (its attributes as the value's text).
    case lock(repository: String, tag: String?, digest: Digest?, attributes: LockAttributesWrite, stamp: WriteStamp)
    /// A registry-wide setting's register write: the document whose digest the event carries.
    case setting(name: String, write: RegisterWrite)
    /// An access record's register write (identity, scope map, token, registry flag): the record
    /// whose digest the event carries, or a tombstone.
    case access(kind: AccessRecordKind, name: String, write: RegisterWrite)
}

public enum ReplicationPlan {
    /// How far ahead of this region's clock a peer's stamp may be.
    public static let maxDriftMilliseconds: Int64 = 300_000

    /// What to do with `event` in the region `localRegion`.
    public static func step(_ event: PeerEvent, localRegion: String) -> ApplyStep {
        if event.stamp.region == localRegion { return .skip("echo of this region's change") }
        guard let action = event.action else { return .skip("action \(event.rawAction.prefix(40)) unknown to this build") }
        let repo = event.repository
        switch action {
        case .blobPush, .blobDelete:
            return .skip("blobs are fetched with the manifests that name them")
        case .manifestPush:
            guard let d = event.digest, !repo.isEmpty else { return .skip("push without a digest") }
            return .manifest(repository: repo, digest: d)
        case .tagMove:
            guard let d = event.digest, let tag = event.tag, !repo.isEmpty else { return .skip("tag move without a tag or digest") }
            return .tag(repository: repo, tag: tag, write: RegisterWrite(value: .digest(d.string), stamp: event.stamp, replaces: event.replaces))
        case .tagDelete:
            guard let tag = event.tag, !repo.isEmpty else { return .skip("tag deletion without a tag") }
            if event.detail == EventAction.cascadeDetail {
                guard let d = event.digest else { return .skip("tag deletion with its manifest without a digest") }
                return .cascade(repository: repo, tag: tag, digest: d)
            }
            return .tag(repository: repo, tag: tag, write: RegisterWrite(value: .tombstone, stamp: event.stamp, replaces: event.replaces))
        case .registerMark:
            // A write the peer recorded without changing content: applied here as the write it
            // stands for (its stamp decides, as for the write itself).
            guard let detail = event.detail, let standing = EventAction(rawValue: detail),
                  [.manifestPush, .manifestDelete, .tagMove, .tagDelete].contains(standing) else {
                return .skip("mark of an action this build does not know")
            }
            var write = event
            write.action = standing
            write.rawAction = standing.rawValue
            write.detail = nil
            return step(write, localRegion: localRegion)
        case .manifestDelete:
            guard let d = event.digest, !repo.isEmpty else { return .skip("deletion without a digest") }
            return .deleteManifest(repository: repo, digest: d)
        case .quarantine:
            guard let d = event.digest, !repo.isEmpty, let detail = event.detail else { return .skip("quarantine without a verdict") }
            let head = detail.split(separator: ":", maxSplits: 1)
            guard let first = head.first, let state = QuarantineState(rawValue: String(first)) else {
                return .skip("quarantine verdict not understood")
            }
            let reason = head.count == 2 ? head[1].trimmingCharacters(in: .whitespaces) : nil
            return .quarantine(repository: repo, digest: d, state: state, reason: reason)
        case .lock:
            guard !repo.isEmpty, let attributes = LockAttributesWrite(detail: event.detail) else { return .skip("lock without attributes") }
            return .lock(repository: repo, tag: event.tag, digest: event.digest, attributes: attributes, stamp: event.stamp)
        case .setting:
            // Cache rule changes and writes of older builds carry no document digest.
            guard let name = event.detail, let d = event.digest else { return .skip("setting change without its document's digest") }
            guard isReplicatedSetting(name) else { return .skip("setting \(name.prefix(64)) is not replicated") }
            return .setting(name: name, write: RegisterWrite(value: .digest(d.string), stamp: event.stamp, replaces: event.replaces))
        case .access:
            guard let detail = event.detail, let (rawKind, name) = AccessRecordChange.parse(detail: detail),
                  let kind = AccessRecordKind(rawValue: rawKind) else { return .skip("access change of a kind this build does not know") }
            guard isReplicableAccessName(name) else { return .skip("access record name not acceptable") }
            if kind == .registry, !AccessRecordKind.registryRecords.contains(name) { return .skip("registry flag \(name.prefix(64)) unknown") }
            let value: RegisterValue = event.digest.map { .digest($0.string) } ?? .tombstone
            if kind == .registry, value == .tombstone { return .skip("a registry flag is never deleted") }
            return .access(kind: kind, name: name, write: RegisterWrite(value: value, stamp: event.stamp, replaces: event.replaces))
        default:
            return .skip("\(action.rawValue) is not replicated")
        }
    }

    /// The registry-wide settings that are one value in every region (policies: quarantine,
    /// scanning, content trust, retention, soft delete, GC, quotas), by name: only these are
    /// served to a peer or written from one (review: any name a peer sent was written, and a
    /// setting added later, perhaps a region's own, would have replicated unasked).
    public static let replicatedSettings: Set<String> = [
        "quarantine-policy", "scan-policy", "content-trust", "retention-policy", "soft-delete-policy", "gc-policy", "storage-quotas",
    ]

    public static func isReplicatedSetting(_ name: String) -> Bool { replicatedSettings.contains(name) }

    /// An access record's name as a peer may send it: what a name made here may be (1-64
    /// characters of a-z, 0-9, '.', '_', '-'; it goes into the path the record is fetched from).
    public static func isReplicableAccessName(_ name: String) -> Bool {
        (try? AccessControl.checkName(name, what: "record")) != nil
    }

    /// The register's current write in this region, from its newest writes in the log (newest
    /// first): the newest, naming the one before it as what it replaced.
    public static func current(_ writes: [Event], localRegion: String) -> RegisterWrite? {
        guard let newest = writes.first else { return nil }
        return RegisterWrite(value: value(of: newest), stamp: WriteStamp(newest.stamp, localRegion: localRegion),
                             replaces: writes.dropFirst().first.map { WriteStamp($0.stamp, localRegion: localRegion) })
    }

    /// What an event writes into its register: a tombstone for a deletion, else the digest (or
    /// lock attributes) it carries.
    public static func value(of newest: Event) -> RegisterValue {
        switch newest.action {
        case .tagDelete, .manifestDelete: .tombstone
        case .registerMark where newest.detail == EventAction.tagDelete.rawValue || newest.detail == EventAction.manifestDelete.rawValue:
            .tombstone
        case .lock: .digest(newest.detail ?? "")
        case .access: newest.digest.map { .digest($0) } ?? .tombstone
        default: .digest(newest.digest ?? "")
        }
    }

    /// The write with the greatest stamp among `writes` (a register whose log order is not its
    /// stamp order: a manifest's presence), nil for none.
    public static func newest(_ writes: [Event], localRegion: String) -> RegisterWrite? {
        writes.map { RegisterWrite(value: value(of: $0), stamp: WriteStamp($0.stamp, localRegion: localRegion)) }
            .max { $0.stamp < $1.stamp }
    }

    /// The conflict model's decision on an incoming register write against the current one.
    public static func merge(_ incoming: RegisterWrite, into current: RegisterWrite?) -> MergeOutcome {
        var register = LWWRegister(current: current)
        return register.merge(incoming)
    }

    /// A peer's stamp too far in this region's future is refused (retried later) rather than let
    /// it drag every region's clock forward.
    public static func checkDrift(_ stamp: WriteStamp, now: Date) throws(ReplicationError) {
        let physical = Int64((now.timeIntervalSince1970 * 1000).rounded(.down))
        if stamp.hlc.milliseconds > physical, stamp.hlc.milliseconds - physical > maxDriftMilliseconds {
            throw .invalid("a write stamped \(stamp) is more than \(maxDriftMilliseconds / 1000) s ahead of this region's clock")
        }
    }
}
