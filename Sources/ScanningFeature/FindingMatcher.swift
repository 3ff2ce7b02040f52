import Foundation
import Logging
import OCIModel
import RegistryStore
import Scanning

/// Matches a stored inventory against the advisory database and stores the manifest's findings
/// (`FindingStore`): after each inventory on push, and again when advisories change. Reads no
/// layer: only the inventory's installed packages and the advisories that name their keys.
public struct FindingMatcher: Sendable {
    public let advisories: any AdvisoryStore
    public let store: any FindingStore
    let logger: Logger

    public init(advisories: any AdvisoryStore, store: any FindingStore, logger: Logger = Logger(label: "berth.scan.findings")) {
        self.advisories = advisories
        self.store = store
        self.logger = logger
    }

    /// Matches `inventory` (the manifest's) and stores the result, replacing what was stored.
    @discardableResult
    public func match(manifest: Digest, inventory: ImageInventory) async throws -> StoredFindings {
        let packages = inventory.installedPackages()
        let (version, index, undecodable) = try await AdvisoryDatabase.index(store: advisories, for: packages)
        if undecodable > 0 {
            logger.warning("advisories this build cannot read were left out", metadata: ["count": "\(undecodable)", "manifest": "\(manifest)"])
        }
        let set = StoredFindings(manifest: manifest, advisoryVersion: version,
                                 matchedAt: Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down)),
                                 findings: Self.findings(packages, index))
        try await store.putFindings(set)
        return set
    }

    /// Matches several manifests' inventories at once (the continuous re-match's page): one read
    /// of the advisories naming any of their packages, one index, and the findings of all stored
    /// in one transaction. Each manifest's findings are those `match(manifest:inventory:)` gives:
    /// an index answers a package's matches from that package alone.
    public func match(_ batch: [(manifest: Digest, inventory: ImageInventory)]) async throws -> [StoredFindings] {
        guard !batch.isEmpty else { return [] }
        let packages = batch.map { $0.inventory.installedPackages() }
        var seen = Set<InstalledPackage>()
        var union: [InstalledPackage] = []
        for list in packages {
            for p in list where seen.insert(p).inserted { union.append(p) }
        }
        let (version, index, undecodable) = try await AdvisoryDatabase.index(store: advisories, for: union)
        if undecodable > 0 {
            logger.warning("advisories this build cannot read were left out", metadata: ["count": "\(undecodable)", "manifests": "\(batch.count)"])
        }
        let at = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let sets = zip(batch, packages).map { item, list in
            StoredFindings(manifest: item.manifest, advisoryVersion: version, matchedAt: at, findings: Self.findings(list, index))
        }
        try await store.putFindings(sets)
        return sets
    }

    /// The findings of `packages` by `index`'s matches (its ecosystem rules: Debian by source package
    /// and source version, withdrawn advisories never indexed, an unfixed range without a fixed version).
    static func findings(_ packages: [InstalledPackage], _ index: AdvisoryIndex) -> [StoredFinding] {
        var out: [StoredFinding] = []
        for package in packages {
            for m in index.matches(for: package).matches {
                let severity = m.severity
                let score = severity?.score ?? m.advisory.severities.compactMap(\.score).max()
                let level = severity?.level ?? .unknown
                out.append(StoredFinding(
                    advisoryID: m.advisory.id, aliases: m.advisory.aliases, ecosystem: package.ecosystem, package: package.name,
                    sourcePackage: package.sourceName, installedVersion: package.version, fixedVersion: m.fixedVersion,
                    severity: FindingSeverity.name(of: level), score: score,
                    fixState: m.fixedVersion != nil ? "fix-available" : m.affected.noDSA ? "no-dsa" : "unfixed"))
            }
        }
        return StoredFinding.normalised(out)
    }
}

/// Severity names as findings carry them.
public enum FindingSeverity {
    public static let names = ["Unknown", "None", "Low", "Medium", "High", "Critical"]

    public static func name(of level: Severity.Level) -> String { names[level.rawValue] }

    /// "high" → "High"; nil for a word that is no severity.
    public static func parse(_ word: String) -> String? { names.first { $0.lowercased() == word.lowercased() } }
}
