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
        /// Pulls of manifests answered before they were stored (a pull-through cache's first
        /// pull): kept until the manifest is stored (`stored`), then pending like any other.
        var beforeStored: [Key: Date] = [:]

        /// Keeps the later time of `key`, or adds it within `capacity` (else counts it dropped).
        mutating func note(_ key: Key, _ at: Date, capacity: Int) {
            if let t = pending[key] {
                if at > t { pending[key] = at }
            } else if pending.count < capacity {
                pending[key] = at
            } else {
                dropped += 1
            }
        }
    }

    /// At most this many pulls wait for their manifest to be stored; older than
    /// `beforeStoredSeconds`, one is given up (its fill failed) when room is needed.
    static let beforeStoredCapacity = 1000
    static let beforeStoredSeconds: TimeInterval = 600

    public let capacity: Int
    private let state = NIOLockedValueBox(State())

    public init(capacity: Int = 50_000) {
        self.capacity = max(1, capacity)
    }

    /// Notes a pull of `digest` in `repository` (by `tag` when pulled by tag) at `at`.
    public func record(repository: String, digest: Digest, tag: String?, at: Date = Date()) {
        let key = Key(repository: repository, digest: digest, tag: tag)
        state.withLockedValue { $0.note(key, at, capacity: capacity) }
    }

    /// Notes a pull of a manifest served before it is stored: it waits until `stored` is told
    /// that manifest is stored (a store ignores pulls of manifests it does not hold).
    public func recordBeforeStored(repository: String, digest: Digest, tag: String?, at: Date = Date()) {
        let key = Key(repository: repository, digest: digest, tag: tag)
        state.withLockedValue { s in
            if let t = s.beforeStored[key] {
                if at > t { s.beforeStored[key] = at }
                return
            }
            if s.beforeStored.count >= Self.beforeStoredCapacity {
                let cutoff = at.addingTimeInterval(-Self.beforeStoredSeconds)
                s.beforeStored = s.beforeStored.filter { $0.value >= cutoff }
            }
            if s.beforeStored.count < Self.beforeStoredCapacity {
                s.beforeStored[key] = at
            } else {
                s.dropped += 1
            }
        }
    }

    /// A manifest was stored: its pulls noted before that are pending now.
    public func stored(repository: String, digest: Digest) {
        state.withLockedValue { s in
            guard !s.beforeStored.isEmpty else { return }
            for (key, at) in s.beforeStored where key.repository == repository && key.digest == digest {
                s.beforeStored[key] = nil
                s.note(key, at, capacity: capacity)
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
                s.note(Key(repository: r.repository, digest: r.digest, tag: r.tag), r.at, capacity: capacity)
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
