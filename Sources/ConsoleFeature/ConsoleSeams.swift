import Access
import Foundation
import OCIModel

/// What other features show through the console, handed in by the composition root (`berth
/// serve`), so the console imports no other feature target. A seam left nil makes its page say
/// that this server does not offer it.
public struct ConsoleSeams: Sendable {
    /// Every replica with its status (replication).
    public var replicas: (@Sendable () async throws -> [ConsoleReplica])?
    /// The last `limit` bytes of a task run's log (tasks); empty when it has none yet.
    public var runLog: (@Sendable (_ runID: String, _ limit: Int) async throws -> [UInt8])?
    /// A manifest's package inventory, summarised (scanning); nil when it was not inventoried.
    public var inventory: (@Sendable (Digest) async throws -> ConsoleInventory?)?
    /// A manifest's vulnerability findings (scanning), nil when it was not matched yet.
    public var findings: (@Sendable (Digest) async throws -> ConsoleFindings?)?
    /// Whether a Notary signature manifest verifies for its subject under the configured trust
    /// policy (content trust), and by whom; `host` is the one the pull gate verifies with (the
    /// token service's name).
    public var verifySignature: (@Sendable (_ repository: RepositoryName, _ subject: Digest, _ signature: Digest, _ host: String)
        async -> ConsoleSignatureCheck)?
    /// The matched images of the repositories `may` lets read (scanning: what `GET /api/v1/scans`
    /// lists), at most `limit`; nil when this server does not match images against advisories.
    public var scans: (@Sendable (_ limit: Int, _ may: (_ repository: String, _ action: Action, _ target: AccessTarget) -> Bool)
        async throws -> ConsoleScanList?)?

    public init(replicas: (@Sendable () async throws -> [ConsoleReplica])? = nil,
                runLog: (@Sendable (_ runID: String, _ limit: Int) async throws -> [UInt8])? = nil,
                inventory: (@Sendable (Digest) async throws -> ConsoleInventory?)? = nil,
                verifySignature: (@Sendable (_ repository: RepositoryName, _ subject: Digest, _ signature: Digest, _ host: String)
                    async -> ConsoleSignatureCheck)? = nil,
                findings: (@Sendable (Digest) async throws -> ConsoleFindings?)? = nil,
                scans: (@Sendable (_ limit: Int, _ may: (_ repository: String, _ action: Action, _ target: AccessTarget) -> Bool)
                    async throws -> ConsoleScanList?)? = nil) {
        self.findings = findings
        self.scans = scans
        self.replicas = replicas
        self.runLog = runLog
        self.inventory = inventory
        self.verifySignature = verifySignature
    }
}

/// A signature's verification, as content trust's verifier answers it.
public struct ConsoleSignatureCheck: Sendable {
    public var verified: Bool
    public var signer: String?
    public var detail: String

    public init(verified: Bool, signer: String?, detail: String) {
        self.verified = verified
        self.signer = signer
        self.detail = detail
    }
}

/// A replica and its health, as `GET /api/v1/replications/{location}/status` reports it.
public struct ConsoleReplica: Sendable {
    public var location: String
    public var endpoint: String
    public var regionEndpointEnabled: Bool
    /// nil until the peer's log was read.
    public var lagEvents: Int64?
    public var lagSeconds: Double?
    public var bytesPending: Int64
    public var lastError: String?
    public var lastErrorAt: Date?

    public init(location: String, endpoint: String, regionEndpointEnabled: Bool, lagEvents: Int64?, lagSeconds: Double?,
                bytesPending: Int64, lastError: String?, lastErrorAt: Date?) {
        self.location = location
        self.endpoint = endpoint
        self.regionEndpointEnabled = regionEndpointEnabled
        self.lagEvents = lagEvents
        self.lagSeconds = lagSeconds
        self.bytesPending = bytesPending
        self.lastError = lastError
        self.lastErrorAt = lastErrorAt
    }
}

/// A manifest's findings as the matcher stored them: the advisory database version they were
/// matched against and each finding (most severe first is the page's business).
public struct ConsoleFindings: Sendable {
    public struct Finding: Sendable {
        public var id: String
        public var severity: String
        public var package: String
        public var installedVersion: String
        public var fixedVersion: String?

        public init(id: String, severity: String, package: String, installedVersion: String, fixedVersion: String?) {
            self.id = id
            self.severity = severity
            self.package = package
            self.installedVersion = installedVersion
            self.fixedVersion = fixedVersion
        }
    }

    public var advisoryVersion: Int64
    public var findings: [Finding]

    public init(advisoryVersion: Int64, findings: [Finding]) {
        self.advisoryVersion = advisoryVersion
        self.findings = findings
    }
}

/// A manifest's inventory in a few numbers: its status, the operating system, packages per type.
public struct ConsoleInventory: Sendable {
    public var status: String
    public var detail: String?
    public var os: String?
    public var packagesByType: [String: Int]
    public var createdAt: Date

    public init(status: String, detail: String?, os: String?, packagesByType: [String: Int], createdAt: Date) {
        self.status = status
        self.detail = detail
        self.os = os
        self.packagesByType = packagesByType
        self.createdAt = createdAt
    }
}

/// Matched images with their findings counted by severity (the scans page).
public struct ConsoleScanList: Sendable {
    public struct Image: Sendable {
        public var repository: String
        public var manifest: String
        public var tags: [String]
        public var advisoryVersion: Int64
        public var matchedAt: Date
        /// Severity name → findings (only severities with findings).
        public var counts: [String: Int]
        public var total: Int

        public init(repository: String, manifest: String, tags: [String], advisoryVersion: Int64, matchedAt: Date,
                    counts: [String: Int], total: Int) {
            self.repository = repository
            self.manifest = manifest
            self.tags = tags
            self.advisoryVersion = advisoryVersion
            self.matchedAt = matchedAt
            self.counts = counts
            self.total = total
        }
    }

    public var images: [Image]
    /// More images than the page shows, or the walk stopped at its bound of repositories.
    public var truncated: Bool

    public init(images: [Image], truncated: Bool) {
        self.images = images
        self.truncated = truncated
    }
}
