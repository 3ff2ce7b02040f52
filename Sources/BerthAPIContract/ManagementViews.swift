import Foundation

// The management API's answers (`/api/v1` response bodies). The server's targets keep their own
// records and map them into these at the HTTP edge (HTTPAPI, WebhooksAPI), so the domain targets
// do not depend on this one; the CLI decodes these. Dates are ISO 8601 and optionals left out
// when nil (both sides' JSON coders), except where a type says otherwise.

// MARK: access

public struct RoleAssignmentView: Codable, Sendable, Equatable {
    public var assignee: String
    public var role: String
    public var scope: String
    public init(assignee: String, role: String, scope: String) {
        self.assignee = assignee
        self.role = role
        self.scope = scope
    }
}

public struct FederatedCredentialView: Codable, Sendable, Equatable {
    public var name: String
    public var issuer: String
    public var subject: String
    public var audiences: [String]
    public init(name: String, issuer: String, subject: String, audiences: [String]) {
        self.name = name
        self.issuer = issuer
        self.subject = subject
        self.audiences = audiences
    }
}

/// An identity, never its password.
public struct IdentityView: Codable, Sendable, Equatable {
    public var name: String
    /// `user` or `service-principal`.
    public var kind: String
    public var enabled: Bool
    public var trustedService: Bool
    public var hasPassword: Bool
    public var roles: [RoleAssignmentView]
    public var federatedCredentials: [FederatedCredentialView]
    public var createdAt: Date
    public init(name: String, kind: String, enabled: Bool, trustedService: Bool, hasPassword: Bool, roles: [RoleAssignmentView],
                federatedCredentials: [FederatedCredentialView], createdAt: Date) {
        self.name = name
        self.kind = kind
        self.enabled = enabled
        self.trustedService = trustedService
        self.hasPassword = hasPassword
        self.roles = roles
        self.federatedCredentials = federatedCredentials
        self.createdAt = createdAt
    }
}

/// `POST /api/v1/identities`: the identity and its generated password (shown once; absent
/// when none was asked for).
public struct IdentityCreated: Codable, Sendable, Equatable {
    public var identity: IdentityView
    public var password: String?
    public init(identity: IdentityView, password: String?) {
        self.identity = identity
        self.password = password
    }
}

/// A password of a token or of the admin user: its slot name and dates, never the secret.
public struct PasswordView: Codable, Sendable, Equatable {
    public var name: String
    public var expiry: Date?
    public var createdAt: Date
    public init(name: String, expiry: Date?, createdAt: Date) {
        self.name = name
        self.expiry = expiry
        self.createdAt = createdAt
    }
}

public struct TokenView: Codable, Sendable, Equatable {
    public var name: String
    public var scopeMap: String
    /// `enabled` or `disabled`.
    public var status: String
    public var passwords: [PasswordView]
    public var createdAt: Date
    public init(name: String, scopeMap: String, status: String, passwords: [PasswordView], createdAt: Date) {
        self.name = name
        self.scopeMap = scopeMap
        self.status = status
        self.passwords = passwords
        self.createdAt = createdAt
    }
}

/// `POST /api/v1/tokens`: the token and its generated passwords by slot (`password1`,
/// `password2`; shown once).
public struct TokenCreated: Codable, Sendable, Equatable {
    public var token: TokenView
    public var credentials: [String: String]
    public init(token: TokenView, credentials: [String: String]) {
        self.token = token
        self.credentials = credentials
    }
}

public struct ScopeMapEntryView: Codable, Sendable, Equatable {
    /// A repository name, `prefix/*` or `*`.
    public var repository: String
    public var actions: [String]
    public init(repository: String, actions: [String]) {
        self.repository = repository
        self.actions = actions
    }
}

public struct ScopeMapView: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    public var entries: [ScopeMapEntryView]
    public var builtIn: Bool
    public init(name: String, description: String?, entries: [ScopeMapEntryView], builtIn: Bool) {
        self.name = name
        self.description = description
        self.entries = entries
        self.builtIn = builtIn
    }
}

/// `POST /api/v1/scope-maps` and `PUT /api/v1/scope-maps/{name}` (the path names it there).
public struct ScopeMapRequest: Codable, Sendable, Equatable {
    public var name: String?
    public var description: String?
    public var entries: [ScopeMapEntryView]
    public init(name: String? = nil, description: String? = nil, entries: [ScopeMapEntryView]) {
        self.name = name
        self.description = description
        self.entries = entries
    }
}

/// `GET`/`PATCH /api/v1/registry`.
public struct RegistrySettingsView: Codable, Sendable, Equatable {
    public var registryName: String
    public var adminUserEnabled: Bool
    public var adminPasswords: [PasswordView]
    public var anonymousPullEnabled: Bool
    public var publicNetworkEnabled: Bool
    /// `Allow` or `Deny`.
    public var networkDefaultAction: String
    public var ipRules: [String]
    public var allowTrustedServices: Bool
    public var trustedProxies: [String]
    public var signingKeyID: String
    public init(registryName: String, adminUserEnabled: Bool, adminPasswords: [PasswordView], anonymousPullEnabled: Bool,
                publicNetworkEnabled: Bool, networkDefaultAction: String, ipRules: [String], allowTrustedServices: Bool,
                trustedProxies: [String], signingKeyID: String) {
        self.registryName = registryName
        self.adminUserEnabled = adminUserEnabled
        self.adminPasswords = adminPasswords
        self.anonymousPullEnabled = anonymousPullEnabled
        self.publicNetworkEnabled = publicNetworkEnabled
        self.networkDefaultAction = networkDefaultAction
        self.ipRules = ipRules
        self.allowTrustedServices = allowTrustedServices
        self.trustedProxies = trustedProxies
        self.signingKeyID = signingKeyID
    }
}

/// `PATCH /api/v1/registry`: the settings to change.
public struct RegistrySettingsRequest: Codable, Sendable, Equatable {
    public var adminUserEnabled: Bool?
    public var anonymousPullEnabled: Bool?
    public var publicNetworkEnabled: Bool?
    public var networkDefaultAction: String?
    public var allowTrustedServices: Bool?
    public var trustedProxies: [String]?
    public init(adminUserEnabled: Bool? = nil, anonymousPullEnabled: Bool? = nil, publicNetworkEnabled: Bool? = nil,
                networkDefaultAction: String? = nil, allowTrustedServices: Bool? = nil, trustedProxies: [String]? = nil) {
        self.adminUserEnabled = adminUserEnabled
        self.anonymousPullEnabled = anonymousPullEnabled
        self.publicNetworkEnabled = publicNetworkEnabled
        self.networkDefaultAction = networkDefaultAction
        self.allowTrustedServices = allowTrustedServices
        self.trustedProxies = trustedProxies
    }
}

/// `POST /api/v1/keys/rotate`: the new signing key's id.
public struct KeyRotation: Codable, Sendable, Equatable {
    public var kid: String
    public init(kid: String) { self.kid = kid }
}

/// One audit record: an authentication failure, a denied request, or a write.
public struct AuditEntry: Codable, Sendable, Equatable {
    public var sequence: Int64
    public var timestamp: Date
    public var actor: String
    public var address: String
    public var action: String
    public var target: String
    public var outcome: String
    public var detail: String?
    public init(sequence: Int64, timestamp: Date, actor: String, address: String, action: String, target: String, outcome: String,
                detail: String?) {
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

// MARK: quarantine

public struct QuarantinePolicyView: Codable, Sendable, Equatable {
    public var enabled: Bool
    public var grandfatherExisting: Bool
    public init(enabled: Bool, grandfatherExisting: Bool) {
        self.enabled = enabled
        self.grandfatherExisting = grandfatherExisting
    }
}

public struct ManifestRefView: Codable, Sendable, Equatable {
    public var repository: String
    public var digest: String
    public init(repository: String, digest: String) {
        self.repository = repository
        self.digest = digest
    }
}

/// `PATCH /api/v1/quarantine`: the policy and what it changes (dry run: would change).
public struct QuarantineChangeView: Codable, Sendable, Equatable {
    public var policy: QuarantinePolicyView
    /// The first 1000 manifests whose pullability flips.
    public var affected: [ManifestRefView]
    public var affectedCount: Int
    public var effect: String
    public var dryRun: Bool
    public init(policy: QuarantinePolicyView, affected: [ManifestRefView], affectedCount: Int, effect: String, dryRun: Bool) {
        self.policy = policy
        self.affected = affected
        self.affectedCount = affectedCount
        self.effect = effect
        self.dryRun = dryRun
    }
}

/// A manifest's quarantine state after a verdict (`state` absent: not quarantined).
public struct QuarantineVerdictView: Codable, Sendable, Equatable {
    public var repository: String
    public var digest: String
    /// `Pending`, `Passed` or `Failed`.
    public var state: String?
    public var reason: String?
    public init(repository: String, digest: String, state: String?, reason: String?) {
        self.repository = repository
        self.digest = digest
        self.state = state
        self.reason = reason
    }
}

// MARK: lifecycle

public struct TagDeletionView: Codable, Sendable, Equatable {
    public var repository: String
    public var tag: String
    public var digest: String
    public init(repository: String, tag: String, digest: String) {
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }
}

public struct ManifestDeletionView: Codable, Sendable, Equatable {
    public var repository: String
    public var digest: String
    public var mediaType: String?
    public var reason: String
    public init(repository: String, digest: String, mediaType: String?, reason: String) {
        self.repository = repository
        self.digest = digest
        self.mediaType = mediaType
        self.reason = reason
    }
}

/// Something a run would have removed but did not (a lock).
public struct SkipView: Codable, Sendable, Equatable {
    public var repository: String
    public var tag: String?
    public var digest: String?
    public var reason: String
    public init(repository: String, tag: String?, digest: String?, reason: String) {
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.reason = reason
    }
}

/// A purge, retention pass or repository delete (`kind`: purge, retention, repository-delete,
/// soft-delete). `id` and `name` are written even when null, so every report has the same keys.
public struct LifecycleReportView: Codable, Sendable, Equatable {
    public var id: Int64?
    public var kind: String
    public var name: String?
    public var dryRun: Bool
    public var startedAt: Date
    public var finishedAt: Date
    public var deletedTags: [TagDeletionView]
    public var deletedManifests: [ManifestDeletionView]
    public var skipped: [SkipView]
    public init(id: Int64?, kind: String, name: String?, dryRun: Bool, startedAt: Date, finishedAt: Date,
                deletedTags: [TagDeletionView], deletedManifests: [ManifestDeletionView], skipped: [SkipView]) {
        self.id = id
        self.kind = kind
        self.name = name
        self.dryRun = dryRun
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.deletedTags = deletedTags
        self.deletedManifests = deletedManifests
        self.skipped = skipped
    }

    enum CodingKeys: String, CodingKey {
        case id, kind, name, dryRun, startedAt, finishedAt, deletedTags, deletedManifests, skipped
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(kind, forKey: .kind)
        try c.encode(name, forKey: .name)
        try c.encode(dryRun, forKey: .dryRun)
        try c.encode(startedAt, forKey: .startedAt)
        try c.encode(finishedAt, forKey: .finishedAt)
        try c.encode(deletedTags, forKey: .deletedTags)
        try c.encode(deletedManifests, forKey: .deletedManifests)
        try c.encode(skipped, forKey: .skipped)
    }
}

/// What one garbage collection run removed (or, dry, would remove). `kind` is `gc`.
public struct GarbageCollectionReportView: Codable, Sendable, Equatable {
    public var id: Int64?
    public var kind: String
    public var dryRun: Bool
    public var startedAt: Date
    public var finishedAt: Date
    public var blobsDeleted: Int
    public var bytesReclaimed: Int64
    public var linksRemoved: Int
    public var uploadsRemoved: Int
    public var orphanFilesRemoved: Int
    /// At most 10,000 listed.
    public var digests: [String]
    public init(id: Int64?, kind: String = "gc", dryRun: Bool, startedAt: Date, finishedAt: Date, blobsDeleted: Int,
                bytesReclaimed: Int64, linksRemoved: Int, uploadsRemoved: Int, orphanFilesRemoved: Int, digests: [String]) {
        self.id = id
        self.kind = kind
        self.dryRun = dryRun
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.blobsDeleted = blobsDeleted
        self.bytesReclaimed = bytesReclaimed
        self.linksRemoved = linksRemoved
        self.uploadsRemoved = uploadsRemoved
        self.orphanFilesRemoved = orphanFilesRemoved
        self.digests = digests
    }
}

/// One entry of `GET /api/v1/lifecycle/runs`: a stored report with its run's id, of the shape
/// its `kind` gives (`gc`: a garbage collection report, anything else a lifecycle report).
public enum LifecycleRunView: Codable, Sendable, Equatable {
    case lifecycle(LifecycleReportView)
    case garbageCollection(GarbageCollectionReportView)

    enum KindKey: String, CodingKey { case kind }

    public init(from decoder: any Decoder) throws {
        let kind = try decoder.container(keyedBy: KindKey.self).decode(String.self, forKey: .kind)
        self = kind == "gc" ? .garbageCollection(try GarbageCollectionReportView(from: decoder))
            : .lifecycle(try LifecycleReportView(from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .lifecycle(let r): try r.encode(to: encoder)
        case .garbageCollection(let r): try r.encode(to: encoder)
        }
    }

    public var id: Int64? {
        switch self {
        case .lifecycle(let r): r.id
        case .garbageCollection(let r): r.id
        }
    }
}

public struct QuotaView: Codable, Sendable, Equatable {
    public var name: String
    public var prefix: String
    public var limitBytes: Int64
    public var usedBytes: Int64
    /// Bytes imports' partial copies (kept for a re-run to resume) hold under the quota: not
    /// stored blobs, but counted with `usedBytes` when an import is asked whether it fits.
    public var partialBytes: Int64?
    public init(name: String, prefix: String, limitBytes: Int64, usedBytes: Int64, partialBytes: Int64? = nil) {
        self.name = name
        self.prefix = prefix
        self.limitBytes = limitBytes
        self.usedBytes = usedBytes
        self.partialBytes = partialBytes
    }
}

/// `GET /api/v1/usage[?repository=]`: `repository` and `repositories` are absent for the
/// registry and for one repository respectively.
public struct UsageView: Codable, Sendable, Equatable {
    public var repository: String?
    public var bytes: Int64
    public var blobs: Int64
    public var manifests: Int64
    public var tags: Int64
    public var repositories: Int64?
    public var deletedManifests: Int64
    public init(repository: String?, bytes: Int64, blobs: Int64, manifests: Int64, tags: Int64, repositories: Int64?,
                deletedManifests: Int64) {
        self.repository = repository
        self.bytes = bytes
        self.blobs = blobs
        self.manifests = manifests
        self.tags = tags
        self.repositories = repositories
        self.deletedManifests = deletedManifests
    }
}

public struct PurgeScheduleView: Codable, Sendable, Equatable {
    public var name: String
    public var cron: String
    public var filters: [String]
    public var ago: String
    public var untagged: Bool
    public var keep: Int
    public var createdAt: Date
    public var lastRunAt: Date?
    public var nextRunAt: Date?
    public init(name: String, cron: String, filters: [String], ago: String, untagged: Bool, keep: Int, createdAt: Date,
                lastRunAt: Date?, nextRunAt: Date?) {
        self.name = name
        self.cron = cron
        self.filters = filters
        self.ago = ago
        self.untagged = untagged
        self.keep = keep
        self.createdAt = createdAt
        self.lastRunAt = lastRunAt
        self.nextRunAt = nextRunAt
    }
}

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
    /// The lease it runs under (`GET /api/v1/leases`): `consumer:<name>` for the core's consumers,
    /// `service:<type>` of the feature service that runs it (a webhook's and a replica's, by their
    /// prefix: also the cursor a deleted one left). Absent when the server runs its work without
    /// leases, or no service of this server runs consumers of that name.
    public var lease: String?
    /// The node holding that lease now (its `host:pid:nonce`); absent when no node holds it.
    public var leaseHolder: String?
    public init(name: String, cursor: Int64, lag: Int64, paused: Bool, attempts: Int, nextAttemptAt: Date?, lastError: String?,
                updatedAt: Date, lease: String? = nil, leaseHolder: String? = nil) {
        self.name = name
        self.cursor = cursor
        self.lag = lag
        self.paused = paused
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.updatedAt = updatedAt
        self.lease = lease
        self.leaseHolder = leaseHolder
    }
}

/// A lease on cluster-once background work (`GET /api/v1/leases`): which node holds it.
public struct LeaseView: Codable, Sendable, Equatable {
    /// `consumer:<event consumer>` for the core's consumers, `service:<type>` for a feature's
    /// service (which runs that feature's consumers), `lifecycle` for the schedules.
    public var name: String
    /// The node holding it (`local` on the embedded store, `host:pid:nonce` on PostgreSQL), also
    /// after its time ran out.
    public var holder: String
    /// The fencing token: grows with every acquisition.
    public var token: Int64
    public var expiresAt: Date
    /// Whether it had not run out when it was read (by the answering node's clock).
    public var live: Bool
    public init(name: String, holder: String, token: Int64, expiresAt: Date, live: Bool) {
        self.name = name
        self.holder = holder
        self.token = token
        self.expiresAt = expiresAt
        self.live = live
    }
}

// MARK: repositories

/// The lock of a repository, tag or manifest (`false`: the operation is disabled).
public struct LockAttributesView: Codable, Sendable, Equatable {
    public var readEnabled: Bool
    public var writeEnabled: Bool
    public var deleteEnabled: Bool
    public var listEnabled: Bool
    public init(readEnabled: Bool = true, writeEnabled: Bool = true, deleteEnabled: Bool = true, listEnabled: Bool = true) {
        self.readEnabled = readEnabled
        self.writeEnabled = writeEnabled
        self.deleteEnabled = deleteEnabled
        self.listEnabled = listEnabled
    }
}

/// `PATCH /api/v1/repository`: the lock as it now is, on the repository, a tag or a manifest.
public struct LockView: Codable, Sendable, Equatable {
    public var repository: String
    public var tag: String?
    public var digest: String?
    public var readEnabled: Bool
    public var writeEnabled: Bool
    public var deleteEnabled: Bool
    public var listEnabled: Bool
    public init(repository: String, tag: String?, digest: String?, readEnabled: Bool, writeEnabled: Bool, deleteEnabled: Bool,
                listEnabled: Bool) {
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.readEnabled = readEnabled
        self.writeEnabled = writeEnabled
        self.deleteEnabled = deleteEnabled
        self.listEnabled = listEnabled
    }
}

public struct RepositoryDetailView: Codable, Sendable, Equatable {
    public var name: String
    public var manifests: Int64
    public var tags: Int64
    public var createdAt: Date
    public var lastUpdatedAt: Date?
    public var attributes: LockAttributesView
    public init(name: String, manifests: Int64, tags: Int64, createdAt: Date, lastUpdatedAt: Date?, attributes: LockAttributesView) {
        self.name = name
        self.manifests = manifests
        self.tags = tags
        self.createdAt = createdAt
        self.lastUpdatedAt = lastUpdatedAt
        self.attributes = attributes
    }
}

public struct TagDetailView: Codable, Sendable, Equatable {
    public var name: String
    public var digest: String
    public var lastUpdatedAt: Date
    public var attributes: LockAttributesView
    /// When it was last pulled by this tag; absent when never (pull times are written every few seconds).
    public var lastPulledAt: Date?
    public init(name: String, digest: String, lastUpdatedAt: Date, attributes: LockAttributesView, lastPulledAt: Date? = nil) {
        self.name = name
        self.digest = digest
        self.lastUpdatedAt = lastUpdatedAt
        self.attributes = attributes
        self.lastPulledAt = lastPulledAt
    }
}

public struct ManifestDetailView: Codable, Sendable, Equatable {
    public var digest: String
    public var mediaType: String
    public var artifactType: String?
    public var size: Int64
    public var createdAt: Date
    public var tags: [String]
    public var subject: String?
    public var live: Bool
    public var unliveSince: Date?
    /// `Pending`, `Passed` or `Failed`; absent when not quarantined.
    public var quarantineState: String?
    public var attributes: LockAttributesView
    /// When it was last pulled from this repository, by tag or digest; absent when never.
    public var lastPulledAt: Date?
    public init(digest: String, mediaType: String, artifactType: String?, size: Int64, createdAt: Date, tags: [String],
                subject: String?, live: Bool, unliveSince: Date?, quarantineState: String?, attributes: LockAttributesView,
                lastPulledAt: Date? = nil) {
        self.lastPulledAt = lastPulledAt
        self.digest = digest
        self.mediaType = mediaType
        self.artifactType = artifactType
        self.size = size
        self.createdAt = createdAt
        self.tags = tags
        self.subject = subject
        self.live = live
        self.unliveSince = unliveSince
        self.quarantineState = quarantineState
        self.attributes = attributes
    }
}

/// A manifest in the recycle bin.
public struct DeletedManifestView: Codable, Sendable, Equatable {
    public var id: Int64
    public var repository: String
    public var digest: String
    public var mediaType: String
    public var size: Int64
    public var deletedAt: Date
    public var expiresAt: Date
    public var tags: [String]
    public var reason: String
    public init(id: Int64, repository: String, digest: String, mediaType: String, size: Int64, deletedAt: Date, expiresAt: Date,
                tags: [String], reason: String) {
        self.id = id
        self.repository = repository
        self.digest = digest
        self.mediaType = mediaType
        self.size = size
        self.deletedAt = deletedAt
        self.expiresAt = expiresAt
        self.tags = tags
        self.reason = reason
    }
}

public struct RestoredManifestView: Codable, Sendable, Equatable {
    public var digest: String
    public var tags: [String]
    public init(digest: String, tags: [String]) {
        self.digest = digest
        self.tags = tags
    }
}

/// `POST /api/v1/repository/restore`: the manifests brought back (with index children and
/// referrers deleted with it).
public struct RestoreResponse: Codable, Sendable, Equatable {
    public var restored: [RestoredManifestView]
    public init(restored: [RestoredManifestView]) { self.restored = restored }
}

// MARK: webhooks

/// A webhook: never its secret, its custom headers by name only (values show as `***`).
public struct WebhookView: Codable, Sendable, Equatable {
    public var name: String
    public var uri: String
    public var actions: [String]
    public var scope: String?
    public var headers: [String: String]
    /// `enabled` or `disabled`.
    public var status: String
    public var createdAt: Date
    public var pendingAttempts: Int
    public init(name: String, uri: String, actions: [String], scope: String?, headers: [String: String], status: String,
                createdAt: Date, pendingAttempts: Int) {
        self.name = name
        self.uri = uri
        self.actions = actions
        self.scope = scope
        self.headers = headers
        self.status = status
        self.createdAt = createdAt
        self.pendingAttempts = pendingAttempts
    }
}

/// `POST /api/v1/webhooks`: the webhook and its signing secret (shown once).
public struct WebhookCreated: Codable, Sendable, Equatable {
    public var webhook: WebhookView
    public var secret: String
    public init(webhook: WebhookView, secret: String) {
        self.webhook = webhook
        self.secret = secret
    }
}

/// One delivery attempt (`POST …/ping` answers with one; `GET …/events` lists them).
public struct WebhookDeliveryView: Codable, Sendable, Equatable {
    public var id: Int64
    public var webhook: String
    public var eventSequence: Int64?
    public var action: String
    public var attempt: Int
    public var statusCode: Int?
    public var latencyMilliseconds: Double
    public var error: String?
    public var timestamp: Date
    /// The JSON body that was sent, as text.
    public var payload: String
    public init(id: Int64, webhook: String, eventSequence: Int64?, action: String, attempt: Int, statusCode: Int?,
                latencyMilliseconds: Double, error: String?, timestamp: Date, payload: String) {
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

// MARK: content trust

/// A Notation trust policy's `signatureVerification`.
public struct SignatureVerificationView: Codable, Sendable, Equatable {
    /// `strict`, `permissive`, `audit` or `skip`.
    public var level: String
    public var override: [String: String]?
    public init(level: String, override: [String: String]? = nil) {
        self.level = level
        self.override = override
    }
}

/// One policy of a Notation trust policy document (`trustStores` and `trustedIdentities` may be
/// left out, meaning none).
public struct TrustPolicyView: Codable, Sendable, Equatable {
    public var name: String
    public var registryScopes: [String]
    public var signatureVerification: SignatureVerificationView
    public var trustStores: [String]
    public var trustedIdentities: [String]
    public init(name: String, registryScopes: [String], signatureVerification: SignatureVerificationView, trustStores: [String],
                trustedIdentities: [String]) {
        self.name = name
        self.registryScopes = registryScopes
        self.signatureVerification = signatureVerification
        self.trustStores = trustStores
        self.trustedIdentities = trustedIdentities
    }

    enum CodingKeys: String, CodingKey { case name, registryScopes, signatureVerification, trustStores, trustedIdentities }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        registryScopes = try c.decode([String].self, forKey: .registryScopes)
        signatureVerification = try c.decode(SignatureVerificationView.self, forKey: .signatureVerification)
        trustStores = try c.decodeIfPresent([String].self, forKey: .trustStores) ?? []
        trustedIdentities = try c.decodeIfPresent([String].self, forKey: .trustedIdentities) ?? []
    }
}

/// A Notation trust policy document (`version` "1.0").
public struct TrustPolicyDocumentView: Codable, Sendable, Equatable {
    public var version: String
    public var trustPolicies: [TrustPolicyView]
    public init(version: String, trustPolicies: [TrustPolicyView]) {
        self.version = version
        self.trustPolicies = trustPolicies
    }
}

/// `GET`/`PUT /api/v1/content-trust`: the configuration, sent and answered whole.
public struct ContentTrustView: Codable, Sendable, Equatable {
    public var enabled: Bool
    /// Repository patterns (`payments/*`, an exact name, `*`).
    public var repositories: [String]
    public var trustPolicy: TrustPolicyDocumentView?
    /// `ca:NAME` → PEM certificates.
    public var trustStores: [String: [String]]
    /// Identity or token names that may pull unsigned content.
    public var exempt: [String]
    public init(enabled: Bool, repositories: [String], trustPolicy: TrustPolicyDocumentView?, trustStores: [String: [String]],
                exempt: [String]) {
        self.enabled = enabled
        self.repositories = repositories
        self.trustPolicy = trustPolicy
        self.trustStores = trustStores
        self.exempt = exempt
    }
}
