import Foundation
import Logging
import Metrics
import RegistryStore

/// Something that follows the event log: retention today; scanning, tasks, replication and
/// cross-node cache invalidation next. The runner owns the cursor, the retries and the pause.
public protocol EventConsumer: Sendable {
    /// Unique and stable: the cursor is stored under it.
    var name: String { get }
    /// Where the consumer starts the first time it runs.
    var start: EventConsumerStart { get }
    /// False while the consumer is switched off: its cursor stays where it is, so it sees the
    /// events of that time when it is on again.
    func isActive() async throws -> Bool
    /// Handles a batch, oldest event first; throwing retries the same batch after a backoff. A
    /// batch may be handled again after a crash (delivery is at least once).
    func handle(_ events: [Event]) async throws
    /// The same, told which attempt at the first event of the batch this is: 1 the first time,
    /// then one more after each failed try (a consumer that gives up on an event after N tries
    /// records that and goes on). By default it calls `handle(_:)`.
    func handle(_ events: [Event], attempt: Int) async throws
}

extension EventConsumer {
    public func isActive() async throws -> Bool { true }
    public func handle(_ events: [Event], attempt: Int) async throws { try await handle(events) }
}

/// Thrown by a consumer that handled its batch up to and including `handledThrough` (nil: none of
/// it) and then failed: the cursor moves past what was handled (so it is not handled again) and
/// the failed event is retried after a backoff as the first of the next batch.
public struct EventBatchStopped: Error, CustomStringConvertible {
    public var handledThrough: Int64?
    public var error: any Error
    public init(handledThrough: Int64?, error: any Error) {
        self.handledThrough = handledThrough
        self.error = error
    }
    public var description: String { "\(error)" }
}

/// Runs one consumer: reads batches after its durable cursor, hands them over, and moves the
/// cursor only after the batch was handled (at least once). A failure is retried with
/// exponential backoff (recorded in the store, so it survives restarts); an operator can pause
/// and resume a consumer; its lag (events after its cursor) is a metric.
public final class EventConsumerRunner: Sendable {
    public let consumer: any EventConsumer
    let store: any EventLogStore
    let batchSize: Int
    let backoffBase: TimeInterval
    let backoffMax: TimeInterval
    let logger: Logger
    private let lag: Gauge
    private let failures: Counter

    public init(consumer: any EventConsumer, store: any EventLogStore, batchSize: Int = 500,
                backoffBase: TimeInterval = 1, backoffMax: TimeInterval = 300,
                logger: Logger = Logger(label: "berth.events")) {
        self.consumer = consumer
        self.store = store
        self.batchSize = max(1, batchSize)
        self.backoffBase = backoffBase
        self.backoffMax = backoffMax
        self.logger = logger
        self.lag = Gauge(label: "berth_event_consumer_lag_events", dimensions: [("consumer", consumer.name)])
        self.failures = Counter(label: "berth_event_consumer_failures_total", dimensions: [("consumer", consumer.name)])
    }

    public enum StepResult: Sendable, Equatable {
        /// A batch was handled and the cursor moved; there may be more.
        case advanced(to: Int64)
        /// Nothing to do now: no new events, paused, switched off, waiting for a retry, or
        /// another worker moved the cursor first.
        case idle
        /// The batch failed; it is retried after `retryAt`.
        case failed(retryAt: Date)
    }

    /// One step: at most one batch. Tests and the loop call it.
    @discardableResult
    public func step(now: Date = Date()) async throws -> StepResult {
        let (result, cursor) = try await stepOnce(now: now)
        if let cursor, let latest = try? await store.latestEventSequence() { lag.record(max(0, latest - cursor)) }
        return result
    }

    /// A step and the cursor it leaves (nil before the consumer is registered), for the lag metric.
    private func stepOnce(now: Date) async throws -> (StepResult, Int64?) {
        // A read on every step; the write transaction of registering only the first time.
        var found = try await store.eventConsumer(named: consumer.name)
        if found == nil { found = try await store.registerEventConsumer(name: consumer.name, start: consumer.start) }
        guard let record = found else { return (.idle, nil) }
        let cursor = record.cursor
        if record.paused { return (.idle, cursor) }
        if let next = record.nextAttemptAt, next > now { return (.idle, cursor) }
        do {
            // Inside: a consumer that cannot tell whether it is on, or cannot read its events (a
            // stored value this build does not know), is a failure with its backoff and its
            // error shown, not a loop that logs on every poll.
            guard try await consumer.isActive() else { return (.idle, cursor) }
            let events = try await store.events(after: record.cursor, limit: batchSize)
            guard let last = events.last else { return (.idle, cursor) }
            try await consumer.handle(events, attempt: record.attempts + 1)
            guard try await advance(from: record.cursor, to: last.sequence) else {
                return (.idle, cursor)
            }
            return (.advanced(to: last.sequence), last.sequence)
        } catch {
            failures.increment()
            var attempts = record.attempts + 1
            var cursor = cursor
            var error = error
            if let stopped = error as? EventBatchStopped {
                error = stopped.error
                if let handled = stopped.handledThrough, handled > record.cursor {
                    // Past what was handled; the failed event is the next one, at its first try.
                    guard try await advance(from: record.cursor, to: handled) else {
                        return (.idle, cursor)
                    }
                    cursor = handled
                    attempts = 1
                }
            }
            let delay = min(backoffBase * pow(2, Double(min(attempts - 1, 30))), backoffMax)
            let retryAt = now.addingTimeInterval(delay)
            if let fencing = LeaseFencing.current {
                guard try await fencing.store.recordEventConsumerFailure(name: consumer.name, error: "\(error)", attempts: attempts,
                                                                         nextAttemptAt: retryAt, fence: fencing.fence) else {
                    return (.idle, cursor)
                }
            } else {
                try await store.recordEventConsumerFailure(name: consumer.name, error: "\(error)", attempts: attempts,
                                                           nextAttemptAt: retryAt)
            }
            logger.warning("event consumer failed", metadata: ["consumer": "\(consumer.name)", "attempt": "\(attempts)",
                                                                "retry_in_s": "\(delay)", "error": "\(error)"])
            return (.failed(retryAt: retryAt), cursor)
        }
    }

    /// Moves the cursor; under a lease (`LeaseFencing.current`) only while the lease is still ours.
    private func advance(from expected: Int64, to cursor: Int64) async throws -> Bool {
        if let fencing = LeaseFencing.current {
            return try await fencing.store.advanceEventConsumer(name: consumer.name, from: expected, to: cursor, fence: fencing.fence)
        }
        return try await store.advanceEventConsumer(name: consumer.name, from: expected, to: cursor)
    }

    /// Runs until cancelled: steps while there is work, sleeps `poll` when idle.
    public func run(poll: Duration, isStopping: @Sendable () -> Bool = { false }) async {
        while !Task.isCancelled && !isStopping() {
            let result: StepResult
            do {
                result = try await step()
            } catch {
                logger.warning("event consumer step failed", metadata: ["consumer": "\(consumer.name)", "error": "\(error)"])
                result = .idle
            }
            if case .advanced = result { continue }
            try? await Task.sleep(for: poll)
        }
    }
}

/// A background service that runs event consumers, naming them, so the management API can say
/// which lease each consumer runs under (the service's own, in a cluster).
public protocol EventConsumerHost: Sendable {
    /// The consumers it runs: exact names, or a prefix ending in `*` for consumers it makes per
    /// item (`webhook:*`, `replication:*`).
    var consumerNames: [String] { get }
}

extension EventConsumerHost {
    /// Whether `consumer` is one this service runs.
    public func hosts(_ consumer: String) -> Bool {
        consumerNames.contains { $0.hasSuffix("*") ? consumer.hasPrefix($0.dropLast()) : consumer == $0 }
    }
}

/// An event consumer as the management API shows it.
public struct EventConsumerView: Codable, Sendable, Equatable {
    public var name: String
    public var cursor: Int64
    /// Events in the log after the cursor.
    public var lag: Int64
    public var paused: Bool
    public var attempts: Int
    public var nextAttemptAt: Date?
    public var lastError: String?
    public var updatedAt: Date
}

extension Registry {
    public func eventConsumerViews() async throws -> [EventConsumerView] {
        let latest = try await metadata.latestEventSequence()
        return try await metadata.eventConsumers().map {
            EventConsumerView(name: $0.name, cursor: $0.cursor, lag: max(0, latest - $0.cursor), paused: $0.paused,
                              attempts: $0.attempts, nextAttemptAt: $0.nextAttemptAt, lastError: $0.lastError,
                              updatedAt: $0.updatedAt)
        }
    }

    /// Pauses or resumes a consumer (it keeps its cursor while paused).
    public func setEventConsumerPaused(_ name: String, paused: Bool) async throws -> EventConsumerView {
        guard try await metadata.setEventConsumerPaused(name: name, paused: paused),
              let view = try await eventConsumerViews().first(where: { $0.name == name }) else {
            throw LifecycleError.notFound("no event consumer named \(name.prefix(100))")
        }
        return view
    }
}
