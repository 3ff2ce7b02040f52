import Foundation

/// A durable reader of the event log: its cursor (the sequence number of the last event it has
/// handled), whether an operator paused it, and its retry state after a failure.
public struct EventConsumerRecord: Sendable, Equatable {
    public var name: String
    public var cursor: Int64
    public var paused: Bool
    /// Failed attempts at the batch after the cursor; 0 after a success.
    public var attempts: Int
    public var nextAttemptAt: Date?
    public var lastError: String?
    public var updatedAt: Date

    public init(name: String, cursor: Int64, paused: Bool = false, attempts: Int = 0, nextAttemptAt: Date? = nil,
                lastError: String? = nil, updatedAt: Date) {
        self.name = name
        self.cursor = cursor
        self.paused = paused
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.updatedAt = updatedAt
    }
}

/// Where a consumer that has never run starts reading.
public enum EventConsumerStart: Sendable, Equatable {
    /// Every event still in the log.
    case beginning
    /// Only what happens after it is registered.
    case end
    /// Events after this sequence number (a consumer taking over a cursor kept elsewhere before).
    case after(Int64)
}

/// The append-only event log and its consumers' cursors, kept next to it so a crash or a restart
/// loses and skips nothing (delivery is at least once: a batch handled but not yet acknowledged is
/// handled again).
public protocol EventLogStore: Sendable {
    /// Events after `after`, oldest first.
    func events(after: Int64, limit: Int) async throws -> [Event]
    /// Events at or after `since`, oldest first.
    func events(since: Date, limit: Int) async throws -> [Event]
    /// The sequence number of the newest event (0 for an empty log).
    func latestEventSequence() async throws -> Int64

    func eventConsumers() async throws -> [EventConsumerRecord]
    func eventConsumer(named name: String) async throws -> EventConsumerRecord?
    /// Creates the consumer when it does not exist yet; returns its record either way.
    func registerEventConsumer(name: String, start: EventConsumerStart) async throws -> EventConsumerRecord
    /// Moves the cursor from `expected` to `cursor` and clears the failure state. False (and
    /// nothing changes) when the cursor is no longer at `expected`: another worker moved it.
    func advanceEventConsumer(name: String, from expected: Int64, to cursor: Int64) async throws -> Bool
    /// Records a failed attempt at the batch after the cursor and when to try again.
    func recordEventConsumerFailure(name: String, error: String, attempts: Int, nextAttemptAt: Date) async throws
    /// Pauses or resumes a consumer; false when there is no such consumer.
    func setEventConsumerPaused(name: String, paused: Bool) async throws -> Bool
    /// Forgets a consumer (its cursor and retry state); false when there is no such consumer.
    func deleteEventConsumer(name: String) async throws -> Bool
}

/// Manifest pushes of one UTC day, summed by the database (the console's usage chart).
public struct DailyPushTotal: Sendable, Equatable {
    /// The start (00:00 UTC) of the day.
    public var day: Date
    public var pushes: Int
    /// The pushed manifests' bytes (the events' sizes).
    public var bytes: Int64

    public init(day: Date, pushes: Int, bytes: Int64) {
        self.day = day
        self.pushes = pushes
        self.bytes = bytes
    }
}

/// The event log summed per day, so a view of usage over time reads at most one row per day
/// whatever the number of events.
public protocol PushTotalsStore: Sendable {
    /// Manifest pushes (`EventAction.manifestPush`) at or after `since`, summed per UTC day (of
    /// one repository when `repository` is given), oldest day first; days without a push are
    /// left out.
    func dailyPushTotals(since: Date, repository: String?) async throws -> [DailyPushTotal]
}
