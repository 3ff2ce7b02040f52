import Foundation
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore

/// Collects the pulls `/v2/` serves (manifest GETs) in memory, so a pull never waits for a store
/// write: one entry per (repository, digest, tag) with its latest time, at most `capacity` of them
/// (a pull of a new key past that is counted as dropped until the next flush makes room). A
/// background service hands them to the store in one call every few seconds and at shutdown
/// (`Registry.flushPullTimes`); a failed write puts them back, to go with the next one.
public final class PullTimeRecorder: Sendable {
    struct Key: Hashable {
        var repository: String
        var digest: Digest
        var tag: String?
    }

    struct State {
        var pending: [Key: Date] = [:]
        var dropped = 0
    }

    public let capacity: Int
    private let state = NIOLockedValueBox(State())

    public init(capacity: Int = 50_000) {
        self.capacity = max(1, capacity)
    }

    /// Notes a pull of `digest` in `repository` (by `tag` when pulled by tag) at `at`.
    public func record(repository: String, digest: Digest, tag: String?, at: Date = Date()) {
        let key = Key(repository: repository, digest: digest, tag: tag)
        state.withLockedValue { s in
            if let t = s.pending[key] {
                if at > t { s.pending[key] = at }
            } else if s.pending.count < capacity {
                s.pending[key] = at
            } else {
                s.dropped += 1
            }
        }
    }

    /// How many pulls are waiting for the store.
    public var pendingCount: Int { state.withLockedValue { $0.pending.count } }

    /// Pulls refused because the recorder was full (since it started).
    public var droppedCount: Int { state.withLockedValue { $0.dropped } }

    /// Takes every pending pull.
    func drain() -> [PullRecord] {
        state.withLockedValue { s in
            let records = s.pending.map { PullRecord(repository: $0.key.repository, digest: $0.key.digest, tag: $0.key.tag, at: $0.value) }
            s.pending.removeAll(keepingCapacity: true)
            return records
        }
    }

    /// Puts back pulls a failed write did not store (keeping the later time; within capacity).
    func restore(_ records: [PullRecord]) {
        state.withLockedValue { s in
            for r in records {
                let key = Key(repository: r.repository, digest: r.digest, tag: r.tag)
                if let t = s.pending[key] {
                    if r.at > t { s.pending[key] = r.at }
                } else if s.pending.count < capacity {
                    s.pending[key] = r.at
                } else {
                    s.dropped += 1
                }
            }
        }
    }
}

extension Registry {
    /// Writes the pulls collected since the last flush to the store in one call; answers how
    /// many (repository, digest, tag) entries it wrote. On failure they are kept for the next one.
    @discardableResult
    public func flushPullTimes() async throws -> Int {
        let records = pullTimes.drain()
        guard !records.isEmpty else { return 0 }
        do {
            try await metadata.recordPulls(records)
        } catch {
            pullTimes.restore(records)
            throw error
        }
        return records.count
    }
}
