import Foundation

/// A webhook as stored. The signing secret is kept sealed (AES-GCM) by the caller; the store
/// never sees it in the clear.
public struct WebhookRecord: Sendable, Codable, Equatable {
    public var name: String
    public var uri: String
    public var actions: [String]
    /// `repository-pattern:tag-pattern` (`*` wildcards), or nil for everything.
    public var scope: String?
    public var headers: [String: String]
    public var sealedSecret: Data
    public var enabled: Bool
    public var createdAt: Date
    /// Sequence number of the last event this webhook has dealt with.
    public var cursor: Int64
    /// Delivery attempts made for the event after the cursor, and when the next may be made.
    public var attempts: Int
    public var nextAttemptAt: Date?

    public init(name: String, uri: String, actions: [String], scope: String?, headers: [String: String], sealedSecret: Data,
                enabled: Bool, createdAt: Date, cursor: Int64, attempts: Int = 0, nextAttemptAt: Date? = nil) {
        self.name = name
        self.uri = uri
        self.actions = actions
        self.scope = scope
        self.headers = headers
        self.sealedSecret = sealedSecret
        self.enabled = enabled
        self.createdAt = createdAt
        self.cursor = cursor
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
    }
}

/// One delivery attempt.
public struct WebhookDelivery: Sendable, Codable, Equatable {
    public var id: Int64
    public var webhook: String
    public var eventSequence: Int64?
    public var action: String
    public var attempt: Int
    public var statusCode: Int?
    public var latencyMilliseconds: Double
    public var error: String?
    public var timestamp: Date
    public var payload: String

    public init(id: Int64 = 0, webhook: String, eventSequence: Int64?, action: String, attempt: Int, statusCode: Int?,
                latencyMilliseconds: Double, error: String?, timestamp: Date = Date(), payload: String) {
        self.id = id
        self.webhook = webhook
        self.eventSequence = eventSequence
        self.action = action
        self.attempt = attempt
        self.statusCode = statusCode
        self.latencyMilliseconds = latencyMilliseconds
        self.error = error
        self.timestamp = timestamp
        self.payload = payload
    }
}

/// Persistence of webhooks, their cursors into the event log, and their delivery history. The
/// cursor lives in the database, so no event is lost or skipped across restarts.
public protocol WebhookStore: Sendable {
    func webhooks() async throws -> [WebhookRecord]
    func webhook(named: String) async throws -> WebhookRecord?
    /// Creates a webhook whose cursor starts at the end of the event log (it sees what happens next).
    func createWebhook(_ record: WebhookRecord) async throws -> Bool
    /// Changes the given fields. With `restartConsumer` (the core's decision when a disabled
    /// webhook is enabled again: the name of the webhook's event consumer), in the same
    /// transaction the webhook's cursor moves to the end of the log and that consumer's cursor
    /// does too (never back; registered there if it does not exist; its failure state cleared, its
    /// pause kept), so no drain in between delivers what happened while the webhook was off.
    func updateWebhook(name: String, uri: String?, actions: [String]?, scope: String??, headers: [String: String]?,
                       enabled: Bool?, restartConsumer: String?) async throws -> Bool
    func deleteWebhook(name: String) async throws -> Bool
    /// Records an attempt and moves the cursor past the event (`advance`) or schedules a retry.
    @discardableResult
    func recordDelivery(_ delivery: WebhookDelivery, advanceTo cursor: Int64?, nextAttemptAt: Date?, attempts: Int) async throws -> Int64
    func deliveries(webhook: String, limit: Int) async throws -> [WebhookDelivery]
    /// The sequence number of the newest event.
}
