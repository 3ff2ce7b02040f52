import Foundation
import Logging
import OCIModel
import RegistryStore
import Scanning
import ServiceLifecycle

/// Continuous re-match: when the advisory database gets a new version, the stored inventories that
/// hold a package key the change touched (`AdvisoryStore.advisoryPackagesChanged`, joined through
/// `ScanStore.inventories(containing:)`) are matched again from their stored inventory; no layer is
/// read. Each manifest's findings carry the version they were matched against, which is the
/// durable part of the cursor: a manifest already matched at the current version is skipped, so a
/// pass that restarts (a new node took the lease, a restart starting again from 0) redoes nothing.
/// Every inventory holding a touched key is kept current (pull times are not recorded, so "in use"
/// cannot narrow it).
public struct FindingRematcher: Sendable {
    public let inventories: any ScanStore
    public let matcher: FindingMatcher
    let pageSize: Int
    /// Judges each re-matched manifest again under the scan policy (nil: no verdicts).
    let gate: ScanGate?

    public init(inventories: any ScanStore, matcher: FindingMatcher, pageSize: Int = 500, gate: ScanGate? = nil) {
        self.inventories = inventories
        self.matcher = matcher
        self.pageSize = pageSize
        self.gate = gate
    }

    /// Re-matches what changed after version `since`; answers the version it brought them to and
    /// how many manifests it matched again.
    public func rematch(since: Int64) async throws -> (version: Int64, rematched: Int) {
        let current = try await matcher.advisories.currentAdvisoryVersion()
        guard current > since else { return (since, 0) }
        let keys = try await matcher.advisories.advisoryPackagesChanged(since: since)
        var seen = Set<Digest>()
        var count = 0
        for key in keys {
            var after: Digest?
            while true {
                try Task.checkCancellation()
                let page = try await inventories.inventories(containing: key, after: after, limit: pageSize)
                if page.isEmpty { break }
                for manifest in page where seen.insert(manifest).inserted {
                    let previous = try await matcher.store.findings(manifest: manifest)
                    if let previous, previous.advisoryVersion >= current { continue }
                    guard let inventory = try await inventories.inventory(manifest: manifest),
                          inventory.status == .complete || inventory.status == .partial,
                          let decoded = try? ScanDocument.decode(ImageInventory.self, inventory.document) else { continue }
                    let matched = try await matcher.match(manifest: manifest, inventory: decoded)
                    try await gate?.rematched(manifest, previous: previous, current: matched)
                    count += 1
                }
                after = page.last
            }
        }
        return (current, count)
    }
}

/// Runs the re-match with the server, as a feature service (so leased: `service:FindingRematchService`,
/// one node of a cluster). It polls the database version; its in-memory cursor starts at 0, and
/// the findings' own versions make the first pass after a start cheap (see `FindingRematcher`).
public struct FindingRematchService: Service {
    let rematcher: FindingRematcher
    let poll: Duration
    let logger: Logger

    public init(rematcher: FindingRematcher, poll: Duration, logger: Logger) {
        self.rematcher = rematcher
        self.poll = poll
        self.logger = logger
    }

    public func run() async throws {
        var since: Int64 = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let (version, rematched) = try await rematcher.rematch(since: since)
                if rematched > 0 {
                    logger.info("findings re-matched", metadata: ["advisoryVersion": "\(version)", "manifests": "\(rematched)"])
                }
                since = version
            } catch is CancellationError {
                return
            } catch {
                logger.warning("re-match failed; retried", metadata: ["error": "\(String(describing: error).prefix(300))"])
            }
            try? await Task.sleep(for: poll)
        }
    }
}
