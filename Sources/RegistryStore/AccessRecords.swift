import Foundation

/// One audit record: an authentication failure, a denied request, or a write.
public struct AuditRecord: Sendable, Codable, Equatable {
    public var sequence: Int64
    public var timestamp: Date
    public var actor: String
    public var address: String
    public var action: String
    public var target: String
    public var outcome: String
    public var detail: String?

    public init(sequence: Int64 = 0, timestamp: Date = Date(), actor: String, address: String, action: String,
                target: String, outcome: String, detail: String? = nil) {
        self.sequence = sequence
        self.timestamp = timestamp
        self.actor = actor
        self.address = address
        self.action = action
        self.target = target
        self.outcome = outcome
        self.detail = detail
    }
}

/// Persistence of access-control state (identities, roles, scope maps, tokens, settings) and the
/// audit log. The access state is one versioned document: it is small, read whole into memory at
/// start, and every change is a compare-and-swap on its version, so concurrent writers never
/// lose each other's changes.
public protocol AccessStateStore: LoginFailureStore {
    /// The stored document and its version, or nil before the first write.
    func loadAccessState() async throws -> (version: Int64, document: Data)?
    /// The stored version alone (nil before the first write): how a process holding the document
    /// in memory notices, cheaply, that another process changed it.
    func accessStateVersion() async throws -> Int64?
    /// Writes `document` if the stored version is still `expectedVersion` (0 = none yet).
    /// Returns false when somebody else wrote in between.
    /// Each of `changes` is appended as an `access` event (origin `EventOrigin.current`) in the
    /// same transaction, so a change is in the event log exactly when it is stored.
    func storeAccessState(_ document: Data, expectedVersion: Int64, audit: AuditRecord?, changes: [AccessRecordChange]) async throws -> Bool

    func appendAudit(_ records: [AuditRecord]) async throws
    func audit(since: Date, limit: Int) async throws -> [AuditRecord]
}

extension AccessStateStore {
    public func accessStateVersion() async throws -> Int64? { try await loadAccessState()?.version }

    /// A write that appends no `access` event.
    public func storeAccessState(_ document: Data, expectedVersion: Int64, audit: AuditRecord?) async throws -> Bool {
        try await storeAccessState(document, expectedVersion: expectedVersion, audit: audit, changes: [])
    }
}

/// One access record's change as the event log states it (issue 13: each record is a
/// last-writer-wins register keyed by kind and name): the SHA-256 of its canonical JSON, or nil
/// when it was deleted (a tombstone). Never the record itself: the log is read by webhooks and
/// the feed, and a record holds password hashes.
public struct AccessRecordChange: Sendable, Equatable, Hashable {
    public var kind: String
    public var name: String
    public var digest: String?

    public init(kind: String, name: String, digest: String?) {
        self.kind = kind
        self.name = name
        self.digest = digest
    }

    /// The event's detail: `<kind>:<name>` (a kind has no colon).
    public var detail: String { kind + ":" + name }

    /// Kind and name of an `access` event's detail.
    public static func parse(detail: String) -> (kind: String, name: String)? {
        guard let colon = detail.firstIndex(of: ":") else { return nil }
        let kind = String(detail[..<colon]), name = String(detail[detail.index(after: colon)...])
        guard !kind.isEmpty, !name.isEmpty else { return nil }
        return (kind, name)
    }
}
