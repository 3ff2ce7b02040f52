import Foundation

// The management API's contract (`/api/v1`, and the token endpoint's answer): the bodies the
// server decodes and encodes and the CLI sends and reads, in one place. Foundation only, so the
// CLI (and later the web console) can use it without the server's targets. Requests, policy
// views and error bodies are here; the other answers are in ManagementViews.swift.

// MARK: errors

/// The management API's error body: `{"error": {"code": "INVALID", "message": "…"}}`.
public struct ManagementErrorBody: Codable, Sendable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public let code: String
        public let message: String
        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }
    public let error: Item
    public init(code: String, message: String) { error = Item(code: code, message: message) }
}

/// The OCI error body (401/403 from the access layer, and the distribution API):
/// `{"errors": [{"code", "message", "detail"?}]}`.
public struct OCIErrorBody: Codable, Sendable, Equatable {
    public struct Item: Codable, Sendable, Equatable {
        public let code: String
        public let message: String
        public let detail: [String: String]?
        public init(code: String, message: String, detail: [String: String]? = nil) {
            self.code = code
            self.message = message
            self.detail = detail
        }
    }
    public let errors: [Item]
    public init(errors: [Item]) { self.errors = errors }
}

// MARK: token service

/// `/oauth2/token`'s answer (Docker token protocol: `token` and `access_token` are the same).
public struct TokenResponse: Codable, Sendable, Equatable {
    public let token: String?
    public let access_token: String?
    public let expires_in: Int?
    public let issued_at: String?
    public let refresh_token: String?
    public init(token: String, expiresIn: Int, issuedAt: String, refreshToken: String?) {
        self.token = token
        self.access_token = token
        self.expires_in = expiresIn
        self.issued_at = issuedAt
        self.refresh_token = refreshToken
    }
}

/// `/oauth2/exchange`'s answer.
public struct ExchangeResponse: Codable, Sendable, Equatable {
    public let refresh_token: String
    public init(refresh_token: String) { self.refresh_token = refresh_token }
}

// MARK: access

public struct CredentialRequest: Codable, Sendable, Equatable {
    public let name: String
    public let expiresInDays: Int?
    public let expiry: Date?
    public init(name: String, expiresInDays: Int? = nil, expiry: Date? = nil) {
        self.name = name
        self.expiresInDays = expiresInDays
        self.expiry = expiry
    }
}

/// A generated secret, shown once.
public struct SecretResponse: Codable, Sendable, Equatable {
    public let username: String
    public let name: String
    public let password: String
    public init(username: String, name: String, password: String) {
        self.username = username
        self.name = name
        self.password = password
    }
}

public struct IdentityRequest: Codable, Sendable, Equatable {
    public let name: String
    public let kind: String?
    public let trustedService: Bool?
    public let password: Bool?
    public let enabled: Bool?

    public init(name: String, kind: String? = nil, trustedService: Bool? = nil, password: Bool? = nil, enabled: Bool? = nil) {
        self.name = name
        self.kind = kind
        self.trustedService = trustedService
        self.password = password
        self.enabled = enabled
    }

    enum CodingKeys: String, CodingKey { case name, kind, trustedService, password, enabled }
    /// `name` may be left out (a PATCH names the identity in its path).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        trustedService = try c.decodeIfPresent(Bool.self, forKey: .trustedService)
        password = try c.decodeIfPresent(Bool.self, forKey: .password)
        enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled)
    }
}

public struct FederatedCredentialRequest: Codable, Sendable, Equatable {
    public let name: String
    public let issuer: String
    public let subject: String
    public let audiences: [String]
    public init(name: String, issuer: String, subject: String, audiences: [String]) {
        self.name = name
        self.issuer = issuer
        self.subject = subject
        self.audiences = audiences
    }
}

public struct TokenRequest: Codable, Sendable, Equatable {
    public let name: String?
    public let scopeMap: String?
    /// `enabled` or `disabled`.
    public let status: String?
    public let generatePasswords: Bool?
    public let expiresInDays: Int?
    public init(name: String? = nil, scopeMap: String? = nil, status: String? = nil, generatePasswords: Bool? = nil,
                expiresInDays: Int? = nil) {
        self.name = name
        self.scopeMap = scopeMap
        self.status = status
        self.generatePasswords = generatePasswords
        self.expiresInDays = expiresInDays
    }
}

public struct NetworkRuleRequest: Codable, Sendable, Equatable {
    public let ipAddress: String
    public init(ipAddress: String) { self.ipAddress = ipAddress }
}

// MARK: quarantine

public struct QuarantinePolicyRequest: Codable, Sendable, Equatable {
    public let enabled: Bool?
    public let grandfatherExisting: Bool?
    public let dryRun: Bool?
    public init(enabled: Bool? = nil, grandfatherExisting: Bool? = nil, dryRun: Bool? = nil) {
        self.enabled = enabled
        self.grandfatherExisting = grandfatherExisting
        self.dryRun = dryRun
    }
}

/// `PATCH /api/v1/quarantine/manifests`: the gate's verdict on one manifest.
public struct QuarantineStateRequest: Codable, Sendable, Equatable {
    public let repository: String
    public let digest: String
    /// `Pending`, `Passed` or `Failed`.
    public let state: String
    public let reason: String?
    public init(repository: String, digest: String, state: String, reason: String? = nil) {
        self.repository = repository
        self.digest = digest
        self.state = state
        self.reason = reason
    }
}

/// `PATCH /v2/<name>/manifests/<digest>`: the same verdict, on the manifest itself.
public struct VerdictBody: Codable, Sendable, Equatable {
    public let state: String
    public let reason: String?
    public init(state: String, reason: String? = nil) {
        self.state = state
        self.reason = reason
    }
}

// MARK: lifecycle

/// `PATCH config/retention` and `config/soft-delete` (`type` only for retention).
public struct StatusDaysRequest: Codable, Sendable, Equatable {
    /// `enabled` or `disabled`.
    public let status: String?
    public let days: Double?
    public let type: String?
    public init(status: String? = nil, days: Double? = nil, type: String? = nil) {
        self.status = status
        self.days = days
        self.type = type
    }
}

public struct GCPolicyRequest: Codable, Sendable, Equatable {
    public let status: String?
    public let intervalSeconds: Double?
    public let graceSeconds: Double?
    public init(status: String? = nil, intervalSeconds: Double? = nil, graceSeconds: Double? = nil) {
        self.status = status
        self.intervalSeconds = intervalSeconds
        self.graceSeconds = graceSeconds
    }
}

public struct QuotaRequest: Codable, Sendable, Equatable {
    public let name: String
    public let prefix: String
    public let limitBytes: Int64
    public init(name: String, prefix: String, limitBytes: Int64) {
        self.name = name
        self.prefix = prefix
        self.limitBytes = limitBytes
    }
}

public struct PurgeRequest: Codable, Sendable, Equatable {
    public let filters: [String]
    public let ago: String?
    public let untagged: Bool?
    public let keep: Int?
    public let dryRun: Bool?
    public init(filters: [String], ago: String? = nil, untagged: Bool? = nil, keep: Int? = nil, dryRun: Bool? = nil) {
        self.filters = filters
        self.ago = ago
        self.untagged = untagged
        self.keep = keep
        self.dryRun = dryRun
    }
}

public struct ScheduleRequest: Codable, Sendable, Equatable {
    public let name: String
    public let cron: String
    public let filters: [String]
    public let ago: String?
    public let untagged: Bool?
    public let keep: Int?
    public init(name: String, cron: String, filters: [String], ago: String? = nil, untagged: Bool? = nil, keep: Int? = nil) {
        self.name = name
        self.cron = cron
        self.filters = filters
        self.ago = ago
        self.untagged = untagged
        self.keep = keep
    }
}

public struct DryRunRequest: Codable, Sendable, Equatable {
    public let dryRun: Bool?
    public init(dryRun: Bool?) { self.dryRun = dryRun }
}

/// `PATCH /api/v1/repository?name=…[&tag=…|&digest=…]`: a lock.
public struct LockRequest: Codable, Sendable, Equatable {
    public let readEnabled: Bool?
    public let writeEnabled: Bool?
    public let deleteEnabled: Bool?
    public let listEnabled: Bool?
    public init(readEnabled: Bool? = nil, writeEnabled: Bool? = nil, deleteEnabled: Bool? = nil, listEnabled: Bool? = nil) {
        self.readEnabled = readEnabled
        self.writeEnabled = writeEnabled
        self.deleteEnabled = deleteEnabled
        self.listEnabled = listEnabled
    }
}

public struct RestoreRequest: Codable, Sendable, Equatable {
    public let digest: String
    public let tag: String?
    public init(digest: String, tag: String? = nil) {
        self.digest = digest
        self.tag = tag
    }
}

public struct RetentionView: Codable, Sendable, Equatable {
    public let status: String
    public let days: Double
    public let type: String
    public init(status: String, days: Double, type: String) {
        self.status = status
        self.days = days
        self.type = type
    }
}

public struct SoftDeleteView: Codable, Sendable, Equatable {
    public let status: String
    public let days: Double
    public init(status: String, days: Double) {
        self.status = status
        self.days = days
    }
}

public struct GCPolicyView: Codable, Sendable, Equatable {
    public let status: String
    public let intervalSeconds: Double
    public let graceSeconds: Double
    public init(status: String, intervalSeconds: Double, graceSeconds: Double) {
        self.status = status
        self.intervalSeconds = intervalSeconds
        self.graceSeconds = graceSeconds
    }
}

// MARK: webhooks

public struct WebhookRequest: Codable, Sendable, Equatable {
    public let name: String?
    public let uri: String?
    public let actions: [String]?
    public let scope: String?
    public let headers: [String: String]?
    public let status: String?
    public init(name: String? = nil, uri: String? = nil, actions: [String]? = nil, scope: String? = nil,
                headers: [String: String]? = nil, status: String? = nil) {
        self.name = name
        self.uri = uri
        self.actions = actions
        self.scope = scope
        self.headers = headers
        self.status = status
    }
}
