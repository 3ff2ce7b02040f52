import Foundation
import NIOConcurrencyHelpers
import RegistryStore

/// Keeps a process's caches true to what other processes write: every event in the log drops the
/// cached copies it may have changed (a repository's manifests, tags and blob sizes; the lock
/// table; the setting it names), here and in every cache that registered with
/// `Registry.observeEvents` (content trust). It starts at the end of the log (what this process
/// has not cached it need not hear about) and keeps its cursor in memory only (see
/// `ProcessLocalCursors`): each process needs every event for itself, and a restarted process
/// starts with empty caches. The caches' TTL is the backstop if it falls behind or stops.
public struct CacheInvalidationConsumer: EventConsumer {
    public let name: String
    public var start: EventConsumerStart { .end }
    let registry: Registry

    /// Its cursor is in memory (`ProcessLocalCursors`), so the name needs to be unique within the
    /// process only.
    public init(registry: Registry, name: String = "cache-invalidation") {
        self.registry = registry
        self.name = name
    }

    public func handle(_ events: [Event]) async throws {
        registry.applyEvents(events)
    }
}

extension Registry {
    /// Registers a cache outside the core (content trust, …) to hear every event the
    /// cache-invalidation consumer applies; it must only drop what the events may have changed.
    public func observeEvents(_ observer: @escaping @Sendable ([Event]) -> Void) {
        eventObservers.withLockedValue { $0.append(observer) }
    }

    /// Told by the cache-invalidation loop that every event committed before `started` (the
    /// cache clock, taken before it read where the log ends) has been applied: while that keeps
    /// happening, cached copies are trusted for `cacheTTLWithFeed` instead of `cacheTTL`.
    public func feedCaughtUp(asOf started: Double) {
        if feed.caughtUp(asOf: started, now: configuration.cacheClock()) { cache.feedStarted() }
    }

    /// Whether a cached copy whose read began at `loadedAt` (the cache clock) is still trusted at
    /// `now`: younger than `cacheTTL`, or younger than `cacheTTLWithFeed` and covered by the feed.
    public func cacheTrusts(loadedAt: Double, now: Double) -> Bool {
        let age = now - loadedAt
        if age < configuration.cacheTTL { return true }
        return age < configuration.cacheTTLWithFeed && feed.covers(readAt: loadedAt, now: now)
    }

    /// Drops what `events` (written by any process) may have made stale.
    public func applyEvents(_ events: [Event]) {
        var repositories = Set<String>()
        var locks = false
        var everything = false
        for event in events {
            switch event.action {
            case EventAction.setting:
                if let name = event.detail { dropSetting(name) }
                if event.detail == Self.quarantineKey.name { everything = true }
            case EventAction.blobPush, EventAction.blobDelete, EventAction.manifestPush, EventAction.tagMove, EventAction.quarantine,
                 EventAction.registerMark:
                // (a mark changes no content and no lock: a re-push, or a peer's write known here;
                // a blob link's removal, by a client or by GC, changes no lock either)
                repositories.insert(event.repository)
            case EventAction.scan, EventAction.access:
                continue    // findings are no content: nothing cached here changes (observers still see it)
            default:
                // Deletions, restores, lock changes and lifecycle runs: a lock may have gone with
                // what was deleted, or been set.
                repositories.insert(event.repository)
                locks = true
            }
        }
        if everything { cache.invalidateAll() }
        for repository in repositories where !repository.isEmpty { cache.invalidate(repository) }
        if locks { reloadLocks() }
        for observer in eventObservers.withLockedValue({ $0 }) { observer(events) }
    }

    func dropSetting(_ name: String) {
        // The generation first: a reload still running then keeps nothing (`keep(ifStill:)`),
        // and one that kept its value just before is cleared below.
        lifecycle.dropped()
        switch name {
        case Self.retentionKey.name: lifecycle.retention.withLockedValue { $0 = nil }
        case Self.softDeleteKey.name: lifecycle.softDelete.withLockedValue { $0 = nil }
        case Self.gcKey.name: lifecycle.gc.withLockedValue { $0 = nil }
        case Self.quotasKey.name: lifecycle.quotas.withLockedValue { $0 = nil }
        case Self.quarantineKey.name: policyCache.value.withLockedValue { $0 = nil }
        default: break
        }
        _ = lifecycle.loadedAt.withLockedValue { $0.removeValue(forKey: name) }
    }
}

/// An event log whose consumer cursors live in this process's memory only; events are read from
/// the real log. For consumers that are per process by nature (cache invalidation): their cursor
/// must be neither shared with another process nor left behind in the database at exit.
public final class ProcessLocalCursors: EventLogStore {
    let log: any EventLogStore
    private let consumers = NIOLockedValueBox<[String: EventConsumerRecord]>([:])

    public init(log: any EventLogStore) { self.log = log }

    public func events(after: Int64, limit: Int) async throws -> [Event] { try await log.events(after: after, limit: limit) }
    public func events(since: Date, limit: Int) async throws -> [Event] { try await log.events(since: since, limit: limit) }
    public func latestEventSequence() async throws -> Int64 { try await log.latestEventSequence() }

    public func eventConsumers() async throws -> [EventConsumerRecord] {
        consumers.withLockedValue { $0.values.sorted { $0.name < $1.name } }
    }

    public func eventConsumer(named name: String) async throws -> EventConsumerRecord? {
        consumers.withLockedValue { $0[name] }
    }

    public func registerEventConsumer(name: String, start: EventConsumerStart) async throws -> EventConsumerRecord {
        if let found = consumers.withLockedValue({ $0[name] }) { return found }
        let cursor: Int64 = switch start {
        case .beginning: 0
        case .end: try await log.latestEventSequence()
        case .after(let sequence): sequence
        }
        return consumers.withLockedValue { all in
            if let found = all[name] { return found }
            let record = EventConsumerRecord(name: name, cursor: cursor, updatedAt: Date())
            all[name] = record
            return record
        }
    }

    public func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64) async throws -> Bool {
        consumers.withLockedValue { all in
            guard var record = all[name], record.cursor == expected else { return false }
            record.cursor = cursor
            record.attempts = 0
            record.nextAttemptAt = nil
            record.lastError = nil
            record.updatedAt = Date()
            all[name] = record
            return true
        }
    }

    public func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date) async throws {
        consumers.withLockedValue { all in
            all[name]?.attempts = attempts
            all[name]?.nextAttemptAt = nextAttemptAt
            all[name]?.lastError = String(error.prefix(1000))
            all[name]?.updatedAt = Date()
        }
    }

    public func setEventConsumerPaused(name: String, paused: Bool) async throws -> Bool {
        consumers.withLockedValue { all in
            guard all[name] != nil else { return false }
            all[name]?.paused = paused
            return true
        }
    }

    public func deleteEventConsumer(name: String) async throws -> Bool {
        consumers.withLockedValue { $0.removeValue(forKey: name) != nil }
    }
}
