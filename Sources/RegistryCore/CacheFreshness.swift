import NIOConcurrencyHelpers

/// Whether this process hears the event feed, for the caches' TTL (`Registry.cacheTrusts`).
///
/// A cached read is trusted for `cacheTTL` seconds. While the cache-invalidation loop keeps
/// catching up with the feed, every change another process makes drops the copies it changes
/// within one poll, so a copy is trusted for `cacheTTLWithFeed` instead: the TTL is then only the
/// backstop against a write that appends no event. Two conditions make "heard":
/// - the last catch-up (every event committed before it was applied) began less than
///   `cacheFeedStaleness` ago; a feed that stops being read falls back to `cacheTTL` that long
///   after its last catch-up;
/// - the copy was read after the first catch-up (`since`). The loop's cursor starts at the end of
///   the log when it registers, so a change committed between a read begun before that and the
///   registration is behind the cursor: no event will ever drop that copy.
final class FeedWatch: Sendable {
    private struct State {
        var since: Double?
        var caughtUpAt: Double?
    }

    private let state = NIOLockedValueBox(State())
    let staleness: Double

    init(staleness: Double) { self.staleness = staleness }

    /// Every event committed before `started` has been applied; `now` is after the cursor was
    /// registered.
    /// Returns true the first time (the caller marks what was cached before as read unheard).
    @discardableResult
    func caughtUp(asOf started: Double, now: Double) -> Bool {
        state.withLockedValue { s in
            let first = s.since == nil
            if first { s.since = now }
            s.caughtUpAt = max(s.caughtUpAt ?? started, started)
            return first
        }
    }

    /// Whether the feed is heard now (the loop caught up recently).
    func isHeard(now: Double) -> Bool {
        state.withLockedValue { s in s.caughtUpAt.map { now - $0 < staleness } ?? false }
    }

    /// Whether a copy whose read began at `readAt` is covered by the feed now. A read that began
    /// at the very instant of the first catch-up may have begun before it: not covered.
    func covers(readAt: Double, now: Double) -> Bool {
        state.withLockedValue { s in
            guard let since = s.since, readAt > since, let at = s.caughtUpAt else { return false }
            return now - at < staleness
        }
    }
}
