import Foundation

/// An event's origin and hybrid-logical-clock stamp (issue 13): wall-clock milliseconds and a
/// logical counter, and the region that made the change (nil: this region). Every backend keeps
/// one clock per database, moved in the transaction that appends the event: a local event gets
/// the next tick (`milliseconds` = max(wall clock, last), `logical` counting within one
/// millisecond); an event applied from a peer keeps the peer's region and stamp and moves the
/// clock up to it, so every later local change is stamped after what was applied. The order
/// regions agree on, and the parsing and drift checks of stamps from a peer, are
/// ReplicationFeature's (`HLCStamp`, `WriteStamp`).
public struct EventStamp: Sendable, Hashable, Codable {
    public var region: String?
    public var milliseconds: Int64
    public var logical: Int64

    public init(region: String?, milliseconds: Int64, logical: Int64) {
        self.region = region
        self.milliseconds = milliseconds
        self.logical = logical
    }

    /// The clock's next state and the stamp of the event being appended, from the clock's last
    /// state, the wall clock, and the peer's stamp when the event is applied from a peer. Pure: the
    /// backends call it inside the appending transaction.
    public static func advance(last: (milliseconds: Int64, logical: Int64), physical: Int64, replicated: EventStamp?)
        -> (clock: (milliseconds: Int64, logical: Int64), stamp: EventStamp) {
        if let r = replicated {
            let ahead = (r.milliseconds, r.logical) > (last.milliseconds, last.logical)
            return (ahead ? (milliseconds: r.milliseconds, logical: r.logical) : last, r)
        }
        let ms = max(physical, last.milliseconds)
        let logical: Int64 = physical > last.milliseconds ? 0 : last.logical + 1
        return ((milliseconds: ms, logical: logical), EventStamp(region: nil, milliseconds: ms, logical: logical))
    }
}
