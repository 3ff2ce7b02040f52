import Foundation
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore

/// Quarantine-on-push: while enabled, every new manifest (except referrers: signatures and
/// attestations) starts `Pending` and cannot be pulled until something with the
/// QuarantineWriter role marks it `Passed`. `Failed` keeps it blocked; the reason is kept.
public struct QuarantinePolicy: Codable, Sendable, Equatable {
    public var enabled: Bool
    /// When quarantine is switched on, manifests pushed before stay pullable (true) or become
    /// `Pending` too (false).
    public var grandfatherExisting: Bool

    public init(enabled: Bool = false, grandfatherExisting: Bool = true) {
        self.enabled = enabled
        self.grandfatherExisting = grandfatherExisting
    }
}

public enum QuarantineState: String, Codable, Sendable, CaseIterable {
    case pending = "Pending"
    case passed = "Passed"
    case failed = "Failed"

    /// Whether a manifest in this state (nil: never quarantined) may be pulled by anyone.
    public static func isPullable(_ raw: String?) -> Bool {
        raw == nil || raw == QuarantineState.passed.rawValue
    }
}

public struct QuarantineChange: Codable, Sendable {
    public var policy: QuarantinePolicy
    /// Manifests that became (dry run: would become) unpullable.
    public var affected: [ManifestRef]
    public var affectedCount: Int
}

final class QuarantinePolicyBox: Sendable {
    let value: NIOLockedValueBox<QuarantinePolicy?> = NIOLockedValueBox(nil)
}

extension Registry {
    static let quarantineKey = "quarantine-policy"

    public func quarantinePolicy() throws -> QuarantinePolicy {
        try setting(Self.quarantineKey, policyCache.value, default: QuarantinePolicy())
    }

    /// Switches quarantine on or off. With `dryRun` nothing changes and the answer lists what
    /// would become unpullable, so nobody flips it blind.
    public func updateQuarantine(_ policy: QuarantinePolicy, dryRun: Bool) async throws -> QuarantineChange {
        let current = try quarantinePolicy()
        let blocksExisting = policy.enabled && !policy.grandfatherExisting && !(current.enabled && !current.grandfatherExisting)
        let affected = blocksExisting ? try metadata.unquarantinedManifests(limit: 1000) : []
        if dryRun {
            return QuarantineChange(policy: policy, affected: affected, affectedCount: affected.count)
        }
        var count = 0
        if blocksExisting { count = try await metadata.quarantineExisting() }
        try await store(Self.quarantineKey, policyCache.value, policy)
        cache.invalidateAll()
        return QuarantineChange(policy: policy, affected: affected, affectedCount: count)
    }

    /// Marks a manifest `Passed` or `Failed` (or back to `Pending`), with a reason that is kept.
    public func setQuarantine(_ repository: RepositoryName, _ digest: Digest, state: QuarantineState, reason: String?) async throws {
        guard try await metadata.setQuarantine(repository: repository.value, digest: digest, state: state.rawValue,
                                               reason: reason.map { String($0.prefix(1000)) }) else {
            throw RegistryError(.manifestUnknown, "manifest unknown to registry")
        }
        cache.invalidate(repository.value)
    }
}
