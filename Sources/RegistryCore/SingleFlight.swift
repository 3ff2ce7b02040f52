import NIOConcurrencyHelpers

/// Concurrent reads of one key share one read: the first caller starts it, the others that ask
/// for the same key while it runs wait for its result (value or error) instead of reading again.
///
/// The read cache's misses go through it: when a hot entry expires (the TTL backstop) or is
/// dropped by an event, every request in flight for it misses at once, and without this each of
/// them asks the metadata store (on PostgreSQL, ~130–280 round trips per expiry under 64
/// concurrent manifest GETs). Keys carry the repository's cache generation, so a read that
/// started before a change is never handed to a caller that arrived after it.
public final class SingleFlight<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct Flight {
        let task: Task<Value, any Error>
        var callers: Int
    }

    private let flights = NIOLockedValueBox<[Key: Flight]>([:])

    public init() {}

    /// `read`'s result for `key`, from a read already running for it when there is one.
    public func value(_ key: Key, _ read: @escaping @Sendable () async throws -> Value) async throws -> Value {
        let task: Task<Value, any Error> = flights.withLockedValue { flights in
            if let running = flights[key] {
                flights[key]?.callers += 1
                return running.task
            }
            // Unstructured, so that a caller that is cancelled does not fail the others' read.
            // It removes itself when done; it cannot get ahead of its own insertion (the lock).
            let task = Task<Value, any Error> {
                defer { _ = self.flights.withLockedValue { $0.removeValue(forKey: key) } }
                return try await read()
            }
            flights[key] = Flight(task: task, callers: 1)
            return task
        }
        return try await task.value
    }

    /// Starts `read` for `key` unless a read of it runs; whether it started. It runs to its end
    /// without a caller waiting (a fill the client left); `value(key)` joins it while it runs.
    public func startIfIdle(_ key: Key, _ read: @escaping @Sendable () async throws -> Value) -> Bool {
        flights.withLockedValue { flights in
            if flights[key] != nil { return false }
            let task = Task<Value, any Error> {
                defer { _ = self.flights.withLockedValue { $0.removeValue(forKey: key) } }
                return try await read()
            }
            flights[key] = Flight(task: task, callers: 1)
            return true
        }
    }

    /// How many callers wait for the read of `key` now, its starter included; 0 when none runs.
    public func callers(_ key: Key) -> Int {
        flights.withLockedValue { $0[key]?.callers ?? 0 }
    }
}
