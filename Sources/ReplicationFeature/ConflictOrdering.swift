// The conflict model of issue 13 as pure logic: hybrid logical clocks, and tags and deletions as
// last-writer-wins registers ordered by (HLC, region), deletions as tombstones. No I/O: the
// consumer that applies a peer's changes (not built yet) asks these values what to keep.

/// A hybrid logical clock stamp (Kulkarni et al., 2014): wall-clock milliseconds and a logical
/// counter that orders events within one millisecond and after a clock moved back.
public struct HLCStamp: Comparable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var milliseconds: Int64
    public var logical: UInt32

    public init(milliseconds: Int64, logical: UInt32) {
        self.milliseconds = milliseconds
        self.logical = logical
    }

    public static let zero = HLCStamp(milliseconds: 0, logical: 0)

    public static func < (a: HLCStamp, b: HLCStamp) -> Bool {
        (a.milliseconds, a.logical) < (b.milliseconds, b.logical)
    }

    /// `<milliseconds>.<logical>`, both decimal: the wire and storage form.
    public var description: String { "\(milliseconds).\(logical)" }

    /// Parses the wire form; nil for anything else (signs, spaces, leading `+`, overflow, a third part).
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 20 && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }),
              let ms = Int64(parts[0]), let logical = UInt32(parts[1]) else { return nil }
        self.init(milliseconds: ms, logical: logical)
    }
}

/// Why a clock refused to move.
public enum ClockRefusal: Error, Equatable, Sendable {
    /// A peer's stamp is further ahead of this region's clock than the allowed drift.
    case tooFarAhead(remote: HLCStamp, physicalMilliseconds: Int64)
    /// The logical counter is exhausted within one millisecond (about four billion events).
    case logicalOverflow
}

/// One region's hybrid logical clock. A value: the caller keeps it (behind a lock or in an actor)
/// and stores the last stamp so a restart never goes back.
public struct HybridLogicalClock: Sendable, Equatable {
    public private(set) var last: HLCStamp
    /// How far ahead of this region's wall clock a peer's stamp may be (default five minutes):
    /// a peer with a broken clock cannot drag every region's clock into the future.
    public var maxDriftMilliseconds: Int64

    public init(last: HLCStamp = .zero, maxDriftMilliseconds: Int64 = 300_000) {
        self.last = last
        self.maxDriftMilliseconds = maxDriftMilliseconds
    }

    /// The stamp of a local change (or a message sent) at wall-clock time `physical`.
    public mutating func tick(physical: Int64) throws(ClockRefusal) -> HLCStamp {
        let next: HLCStamp
        if physical > last.milliseconds {
            next = HLCStamp(milliseconds: physical, logical: 0)
        } else {
            guard last.logical < UInt32.max else { throw .logicalOverflow }
            next = HLCStamp(milliseconds: last.milliseconds, logical: last.logical + 1)
        }
        last = next
        return next
    }

    /// Merges a peer's stamp at wall-clock time `physical`: the result is after both the peer's
    /// stamp and everything this clock stamped before.
    public mutating func receive(_ remote: HLCStamp, physical: Int64) throws(ClockRefusal) -> HLCStamp {
        guard remote.milliseconds <= physical || remote.milliseconds - physical <= maxDriftMilliseconds else {
            throw .tooFarAhead(remote: remote, physicalMilliseconds: physical)
        }
        let ms = max(last.milliseconds, remote.milliseconds, physical)
        let base: UInt32?
        if ms == last.milliseconds && ms == remote.milliseconds {
            base = max(last.logical, remote.logical)
        } else if ms == last.milliseconds {
            base = last.logical
        } else if ms == remote.milliseconds {
            base = remote.logical
        } else {
            base = nil
        }
        let next: HLCStamp
        if let base {
            guard base < UInt32.max else { throw .logicalOverflow }
            next = HLCStamp(milliseconds: ms, logical: base + 1)
        } else {
            next = HLCStamp(milliseconds: ms, logical: 0)
        }
        last = next
        return next
    }
}

/// Where a write sits in the total order every region agrees on: its HLC stamp, then its origin
/// region's name (byte-wise) to break ties between regions that stamped the same instant.
public struct WriteStamp: Comparable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var hlc: HLCStamp
    public var region: String

    public init(hlc: HLCStamp, region: String) {
        self.hlc = hlc
        self.region = region
    }

    public static func < (a: WriteStamp, b: WriteStamp) -> Bool {
        if a.hlc != b.hlc { return a.hlc < b.hlc }
        return Array(a.region.utf8).lexicographicallyPrecedes(Array(b.region.utf8))
    }

    public var description: String { "\(hlc)@\(region)" }
}

/// What a register (a tag) holds: a manifest digest, or a tombstone for a deletion.
public enum RegisterValue: Hashable, Sendable, Codable {
    case digest(String)
    case tombstone
}

/// One write of a register: its value, its stamp, and the stamp of the write it replaced where
/// the writer saw one (nil for a first write). A write that names what it replaced is a causal
/// successor of it; one that does not is concurrent with whatever else is there.
public struct RegisterWrite: Hashable, Sendable, Codable {
    public var value: RegisterValue
    public var stamp: WriteStamp
    public var replaces: WriteStamp?

    public init(value: RegisterValue, stamp: WriteStamp, replaces: WriteStamp? = nil) {
        self.value = value
        self.stamp = stamp
        self.replaces = replaces
    }
}

/// What merging a write into a register did. `conflictLoser` is the write that lost to a concurrent
/// one (to keep in the conflict log); nil when nothing was lost (a first write, a successor of
/// the current write, a late copy of a write already superseded by its successor, a duplicate).
/// A losing write delivered again is reported again (the register keeps only the winner): the
/// conflict log keys losers by their stamp. Known limit: "replaces" names one predecessor, so with
/// three or more regions a successor that arrives before its predecessor's own write can report
/// that predecessor as a loser (an extra conflict-log entry, never a lost write).
public struct MergeOutcome: Equatable, Sendable {
    public enum Effect: Equatable, Sendable { case applied, discarded, duplicate }
    public var effect: Effect
    public var conflictLoser: RegisterWrite?
}

/// A last-writer-wins register: the write with the greatest `WriteStamp` wins in every region,
/// whatever order the writes arrive in; a deletion is a tombstone write, so a deletion and a tag
/// move converge too.
public struct LWWRegister: Equatable, Sendable {
    public private(set) var current: RegisterWrite?

    public init(current: RegisterWrite? = nil) { self.current = current }

    /// Merges `incoming`. Applying the same write twice changes nothing (at-least-once delivery).
    public mutating func merge(_ incoming: RegisterWrite) -> MergeOutcome {
        guard let existing = current else {
            current = incoming
            return MergeOutcome(effect: .applied, conflictLoser: nil)
        }
        if incoming.stamp == existing.stamp {
            // The same write again; two different writes with one stamp cannot come from correct
            // regions, but every region must still choose the same one: the greater value.
            // A write is its stamp and value; what it `replaces` depends on the path it came by (a
            // relaying region names its own predecessor), so the same write relayed through a third
            // region is still a duplicate, never its own conflict (found by the partition test).
            if incoming.value == existing.value { return MergeOutcome(effect: .duplicate, conflictLoser: nil) }
            if Self.valueOrder(existing, incoming) {
                current = incoming
                return MergeOutcome(effect: .applied, conflictLoser: existing)
            }
            return MergeOutcome(effect: .discarded, conflictLoser: incoming)
        }
        if existing.stamp < incoming.stamp {
            current = incoming
            let successor = incoming.replaces == existing.stamp
            return MergeOutcome(effect: .applied, conflictLoser: successor ? nil : existing)
        }
        // incoming is older than what is here
        let superseded = existing.replaces == incoming.stamp
        return MergeOutcome(effect: .discarded, conflictLoser: superseded ? nil : incoming)
    }

    /// A total order on writes with equal stamps (tombstone first, then digests byte-wise, then
    /// what they replaced), for the tie that correct regions never produce.
    static func valueOrder(_ a: RegisterWrite, _ b: RegisterWrite) -> Bool {
        func key(_ w: RegisterWrite) -> [UInt8] {
            switch w.value {
            case .tombstone: [0]
            case .digest(let d): [1] + Array(d.utf8)
            }
        }
        let (ka, kb) = (key(a), key(b))
        if ka != kb { return ka.lexicographicallyPrecedes(kb) }
        return Array((a.replaces?.description ?? "").utf8).lexicographicallyPrecedes(Array((b.replaces?.description ?? "").utf8))
    }
}
