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

public struct QuarantineChange: Codable, Sendable {
    public var policy: QuarantinePolicy
    /// Manifests whose pullability the change flips (dry run: would flip): the first 1000.
    public var affected: [ManifestRef]
    public var affectedCount: Int
    /// What happens to the affected manifests, in words.
    public var effect: String
    public var dryRun: Bool
}

final class QuarantinePolicyBox: Sendable {
    let value: NIOLockedValueBox<QuarantinePolicy?> = NIOLockedValueBox(nil)
}

extension Registry {
    static let quarantineKey = SettingKey<QuarantinePolicy>("quarantine-policy")

    public func quarantinePolicy() async throws -> QuarantinePolicy {
        try await setting(Self.quarantineKey, policyCache.value, default: QuarantinePolicy())
    }

    /// Switches quarantine on or off. With `dryRun` nothing changes and the answer lists exactly
    /// what the real run would change, so nobody flips it blind.
    ///
    /// Off means off: nothing waits for a gate that is switched off, so switching off releases
    /// every `Pending` manifest (it becomes pullable, as if pushed with quarantine off; switching
    /// on again quarantines only new pushes unless grandfathering is off). `Failed` verdicts are
    /// a decision, not a wait, and stay enforced until a QuarantineWriter changes them.
    public func updateQuarantine(_ policy: QuarantinePolicy, dryRun: Bool) async throws -> QuarantineChange {
        let limit = 1000
        if !policy.enabled {
            let effect = "Pending images become pullable (quarantine off); Failed verdicts stay enforced"
            if dryRun {
                let (pending, count) = try await metadata.quarantineSweepSelection(ContentPlanner.releasePending, limit: limit)
                return QuarantineChange(policy: policy, affected: pending, affectedCount: count, effect: effect, dryRun: true)
            }
            // The policy first, so no push after this point starts Pending; then release what waits.
            try await store(Self.quarantineKey, policyCache.value, policy)
            let (released, count) = try await metadata.applyQuarantineSweep(ContentPlanner.releasePending, limit: limit)
            cache.invalidateAll()
            return QuarantineChange(policy: policy, affected: released, affectedCount: count, effect: effect, dryRun: false)
        }
        let current = try await replacing(quarantinePolicy, default: QuarantinePolicy())
        let blocksExisting = !policy.grandfatherExisting && !(current.enabled && !current.grandfatherExisting)
        let effect = blocksExisting ? "existing images become Pending: unpullable until a QuarantineWriter passes them"
            : "existing images stay as they are; new pushes wait for the gate"
        if dryRun {
            let (affected, count) = blocksExisting
                ? try await metadata.quarantineSweepSelection(ContentPlanner.quarantineExisting, limit: limit) : ([], 0)
            return QuarantineChange(policy: policy, affected: affected, affectedCount: count, effect: effect, dryRun: true)
        }
        var (affected, count): ([ManifestRef], Int) = ([], 0)
        if blocksExisting {
            (affected, count) = try await metadata.applyQuarantineSweep(ContentPlanner.quarantineExisting, limit: limit)
        }
        try await store(Self.quarantineKey, policyCache.value, policy)
        cache.invalidateAll()
        return QuarantineChange(policy: policy, affected: affected, affectedCount: count, effect: effect, dryRun: false)
    }

    /// Whether a blob of `repository` is there only for quarantined content: manifests of the
    /// repository reference it and none of them may be pulled. Costs nothing (false) while
    /// quarantine is off, so the blob path pays only when the gate is in use. Blobs that no
    /// manifest references yet (uploads on their way to a manifest) are not quarantined.
    public func blobOnlyInQuarantine(_ repository: RepositoryName, _ digest: Digest) async throws -> Bool {
        guard try await quarantinePolicy().enabled else { return false }
        return try await metadata.blobOnlyInQuarantine(repository: repository.value, digest: digest)
    }

    /// Marks a manifest `Passed` or `Failed` (or back to `Pending`), with a reason that is kept.
    /// Quarantined index children follow their index (`ContentPlanner.quarantine`).
    public func setQuarantine(_ repository: RepositoryName, _ digest: Digest, state: QuarantineState, reason: String?) async throws {
        let reason = reason.map { String($0.prefix(1000)) }
        for _ in 1...ContentPlanner.attempts {
            guard let graph = try await metadata.repositoryGraph(repository.value, around: digest),
                  let plan = ContentPlanner.quarantine(graph, digest: digest, state: state, reason: reason) else {
                throw RegistryError(.manifestUnknown, "manifest unknown to registry")
            }
            switch try await metadata.applyQuarantine(plan) {
            case .applied:
                cache.invalidate(repository.value)
                return
            case .unknownManifest:
                throw RegistryError(.manifestUnknown, "manifest unknown to registry")
            case .conflict:
                continue // a child changed state meanwhile: plan again from the new graph
            }
        }
        cache.invalidate(repository.value)
        throw RegistryError(.tooManyRequests, "quarantine states of \(digest) are being changed concurrently; retry", status: 429)
    }
}
