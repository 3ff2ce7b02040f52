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

    /// Where the webhook is in the event log, and its retry state, are its event consumer's
    /// (`EventLogStore`), not the webhook's.
    public init(name: String, uri: String, actions: [String], scope: String?, headers: [String: String], sealedSecret: Data,
                enabled: Bool, createdAt: Date) {
        self.name = name
        self.uri = uri
        self.actions = actions
        self.scope = scope
        self.headers = headers
        self.sealedSecret = sealedSecret
        self.enabled = enabled
        self.createdAt = createdAt
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

/// Persistence of webhooks and their delivery history. Where each webhook is in the event log,
/// and its retry state, belong to its event consumer (`EventLogStore`), which the store moves
/// together with the webhook where the two must change at once.
public protocol WebhookStore: Sendable {
    func webhooks() async throws -> [WebhookRecord]
    func webhook(named: String) async throws -> WebhookRecord?
    /// Creates a webhook and, in the same transaction, starts its event consumer `consumer` at the
    /// end of the log (it sees what happens next): registered there, or a leftover one of that
    /// name moved there (forward only, failure state and pause cleared: a new webhook under a
    /// reused name does not start paused). False, and nothing
    /// changes, when the name is taken.
    func createWebhook(_ record: WebhookRecord, consumer: String) async throws -> Bool
    /// Changes the given fields. `restartConsumerIfReenabled` names the webhook's event consumer:
    /// when this call switches the webhook from disabled to enabled (`enabled == true` and the
    /// stored webhook disabled, as read inside the same transaction, not before it), that consumer
    /// moves to the end of the log in that transaction (forward only; registered there if it does
    /// not exist; its failure state cleared, its pause kept), so no drain in between delivers what
    /// happened while the webhook was off. Otherwise (already enabled, `enabled` false or nil) the
    /// consumer is left alone.
    func updateWebhook(name: String, uri: String?, actions: [String]?, scope: String??, headers: [String: String]?,
                       enabled: Bool?, restartConsumerIfReenabled: String?) async throws -> Bool
    func deleteWebhook(name: String) async throws -> Bool
    /// Records a delivery attempt, keeping the newest `keep` of its webhook (the caller's
    /// number; less than one keeps this one); returns its id.
    @discardableResult
    func recordDelivery(_ delivery: WebhookDelivery, keep: Int) async throws -> Int64
    func deliveries(webhook: String, limit: Int) async throws -> [WebhookDelivery]
}
