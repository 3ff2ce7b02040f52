import Access
import BerthAPIContract
import Foundation
import OCIModel
import RegistryCore
import RegistryStore

// The HTTP edge: the domain's records and views mapped into the management API's contract
// (`BerthAPIContract`), the only types the `/api/v1` routes encode. Where a domain target names
// a type as the contract does, the domain's is spelled with its module.

// MARK: access

extension BerthAPIContract.RoleAssignmentView {
    init(_ v: Access.RoleAssignmentView) { self.init(assignee: v.assignee, role: v.role, scope: v.scope) }
}

extension BerthAPIContract.IdentityView {
    init(_ v: Access.IdentityView) {
        self.init(name: v.name, kind: v.kind, enabled: v.enabled, trustedService: v.trustedService, hasPassword: v.hasPassword,
                  roles: v.roles.map(BerthAPIContract.RoleAssignmentView.init),
                  federatedCredentials: v.federatedCredentials.map(FederatedCredentialView.init), createdAt: v.createdAt)
    }
}

extension FederatedCredentialView {
    init(_ c: AccessState.FederatedCredential) {
        self.init(name: c.name, issuer: c.issuer, subject: c.subject, audiences: c.audiences)
    }
}

extension PasswordView {
    init(_ p: Access.TokenView.PasswordView) { self.init(name: p.name, expiry: p.expiry, createdAt: p.createdAt) }
}

extension BerthAPIContract.TokenView {
    init(_ v: Access.TokenView) {
        self.init(name: v.name, scopeMap: v.scopeMap, status: v.status, passwords: v.passwords.map(PasswordView.init),
                  createdAt: v.createdAt)
    }
}

extension ScopeMapView {
    init(_ m: AccessState.ScopeMap) {
        self.init(name: m.name, description: m.description,
                  entries: m.entries.map { ScopeMapEntryView(repository: $0.repository.value, actions: $0.actions) },
                  builtIn: m.builtIn)
    }
}

extension ScopeMapRequest {
    /// The entries as access control takes them; a repository pattern that does not parse is
    /// refused (400 INVALID) with the reason.
    func accessEntries() throws -> [AccessState.ScopeMap.Entry] {
        try entries.map { e in
            let pattern: RepositoryPattern
            do throws(RegistryError) {
                pattern = try RepositoryPattern(e.repository)
            } catch {
                throw ManagementError(status: .badRequest, code: "INVALID", message: error.message)
            }
            return AccessState.ScopeMap.Entry(repository: pattern, actions: e.actions)
        }
    }
}

extension BerthAPIContract.RegistrySettingsView {
    init(_ v: Access.RegistrySettingsView) {
        self.init(registryName: v.registryName, adminUserEnabled: v.adminUserEnabled, adminPasswords: v.adminPasswords.map(PasswordView.init),
                  anonymousPullEnabled: v.anonymousPullEnabled, publicNetworkEnabled: v.publicNetworkEnabled,
                  networkDefaultAction: v.networkDefaultAction, ipRules: v.ipRules, allowTrustedServices: v.allowTrustedServices,
                  trustedProxies: v.trustedProxies, signingKeyID: v.signingKeyID)
    }
}

extension RegistrySettingsRequest {
    var settingsChange: SettingsChange {
        var c = SettingsChange()
        c.adminUserEnabled = adminUserEnabled
        c.anonymousPullEnabled = anonymousPullEnabled
        c.publicNetworkEnabled = publicNetworkEnabled
        c.networkDefaultAction = networkDefaultAction
        c.allowTrustedServices = allowTrustedServices
        c.trustedProxies = trustedProxies
        return c
    }
}

extension AuditEntry {
    init(_ r: AuditRecord) {
        self.init(sequence: r.sequence, timestamp: r.timestamp, actor: r.actor, address: r.address, action: r.action, target: r.target,
                  outcome: r.outcome, detail: r.detail)
    }
}

// MARK: quarantine

extension QuarantinePolicyView {
    init(_ p: QuarantinePolicy) { self.init(enabled: p.enabled, grandfatherExisting: p.grandfatherExisting) }
}

extension QuarantineChangeView {
    init(_ c: QuarantineChange) {
        self.init(policy: QuarantinePolicyView(c.policy),
                  affected: c.affected.map { ManifestRefView(repository: $0.repository, digest: $0.digest) },
                  affectedCount: c.affectedCount, effect: c.effect, dryRun: c.dryRun)
    }
}

// MARK: lifecycle

extension LifecycleReportView {
    init(_ r: LifecycleReport) {
        self.init(id: r.id, kind: r.kind.rawValue, name: r.name, dryRun: r.dryRun, startedAt: r.startedAt, finishedAt: r.finishedAt,
                  deletedTags: r.deletedTags.map { TagDeletionView(repository: $0.repository, tag: $0.tag, digest: $0.digest) },
                  deletedManifests: r.deletedManifests.map {
                      ManifestDeletionView(repository: $0.repository, digest: $0.digest, mediaType: $0.mediaType, reason: $0.reason)
                  },
                  skipped: r.skipped.map { SkipView(repository: $0.repository, tag: $0.tag, digest: $0.digest, reason: $0.reason) })
    }
}

extension GarbageCollectionReportView {
    init(_ r: GarbageCollectionReport) {
        self.init(id: r.id, kind: r.kind, dryRun: r.dryRun, startedAt: r.startedAt, finishedAt: r.finishedAt, blobsDeleted: r.blobsDeleted,
                  bytesReclaimed: r.bytesReclaimed, linksRemoved: r.linksRemoved, uploadsRemoved: r.uploadsRemoved,
                  orphanFilesRemoved: r.orphanFilesRemoved, digests: r.digests)
    }
}

extension BerthAPIContract.QuotaView {
    init(_ v: RegistryCore.QuotaView) { self.init(name: v.name, prefix: v.prefix, limitBytes: v.limitBytes, usedBytes: v.usedBytes,
                                                    partialBytes: v.partialBytes) }
}

extension UsageView {
    init(_ u: UsageRecord) {
        self.init(repository: u.repository, bytes: u.bytes, blobs: u.blobs, manifests: u.manifests, tags: u.tags,
                  repositories: u.repositories, deletedManifests: u.deletedManifests)
    }
}

extension BerthAPIContract.PurgeScheduleView {
    init(_ v: RegistryCore.PurgeScheduleView) {
        self.init(name: v.name, cron: v.cron, filters: v.filters, ago: v.ago, untagged: v.untagged, keep: v.keep, createdAt: v.createdAt,
                  lastRunAt: v.lastRunAt, nextRunAt: v.nextRunAt)
    }
}

extension BerthAPIContract.EventConsumerView {
    init(_ v: RegistryCore.EventConsumerView) {
        self.init(name: v.name, cursor: v.cursor, lag: v.lag, paused: v.paused, attempts: v.attempts, nextAttemptAt: v.nextAttemptAt,
                  lastError: v.lastError, updatedAt: v.updatedAt)
    }
}

// MARK: repositories

extension LockAttributesView {
    init(_ a: LockAttributes) {
        self.init(readEnabled: a.readEnabled, writeEnabled: a.writeEnabled, deleteEnabled: a.deleteEnabled, listEnabled: a.listEnabled)
    }
}

extension LockView {
    init(_ l: LockRecord) {
        self.init(repository: l.repository, tag: l.tag, digest: l.digest, readEnabled: l.readEnabled, writeEnabled: l.writeEnabled,
                  deleteEnabled: l.deleteEnabled, listEnabled: l.listEnabled)
    }
}

extension RepositoryDetailView {
    init(_ d: RepositoryDetail) {
        self.init(name: d.name, manifests: d.manifests, tags: d.tags, createdAt: d.createdAt, lastUpdatedAt: d.lastUpdatedAt,
                  attributes: LockAttributesView(d.attributes))
    }
}

extension TagDetailView {
    init(_ d: TagDetail) {
        self.init(name: d.name, digest: d.digest, lastUpdatedAt: d.lastUpdatedAt, attributes: LockAttributesView(d.attributes),
                  lastPulledAt: d.lastPulledAt)
    }
}

extension ManifestDetailView {
    init(_ d: ManifestDetail) {
        self.init(digest: d.digest, mediaType: d.mediaType, artifactType: d.artifactType, size: d.size, createdAt: d.createdAt, tags: d.tags,
                  subject: d.subject, live: d.live, unliveSince: d.unliveSince, quarantineState: d.quarantineState?.rawValue,
                  attributes: LockAttributesView(d.attributes), lastPulledAt: d.lastPulledAt)
    }
}

extension DeletedManifestView {
    init(_ m: DeletedManifest) {
        self.init(id: m.id, repository: m.repository, digest: m.digest, mediaType: m.mediaType, size: m.size, deletedAt: m.deletedAt,
                  expiresAt: m.expiresAt, tags: m.tags, reason: m.reason)
    }
}
