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

    /// Matches several manifests' inventories at once (one read of the advisories naming any of
    /// their packages, one index) and stores the findings of all in one transaction. Each
    /// manifest's findings are those `match(manifest:inventory:)` gives: an index answers a
    /// package's matches from that package alone.
    public func match(_ batch: [(manifest: Digest, inventory: ImageInventory)]) async throws -> [StoredFindings] {
        let sets = try await findings(batch)
        if !sets.isEmpty { try await store.putFindings(sets) }
        return sets
    }

    /// The continuous re-match's chunk: as `match(_:)`, except that a manifest whose findings come
    /// out as its stored ones (`previous`: the same findings, whatever their order) is only moved
    /// to the new advisory version, its findings not rewritten (`FindingStore.putFindings(_:unchanged:…)`,
    /// one transaction for the chunk). Answers each manifest's findings as now stored, and whether
    /// they changed (nil `previous`: changed).
    public func rematch(_ batch: [(manifest: Digest, inventory: ImageInventory, previous: StoredFindings?)]) async throws
        -> [(findings: StoredFindings, changed: Bool)] {
        let sets = try await findings(batch.map { ($0.manifest, $0.inventory) })
        guard let first = sets.first else { return [] }
        var changed: [StoredFindings] = []
        var unchanged: [Digest] = []
        var out: [(findings: StoredFindings, changed: Bool)] = []
        for (item, set) in zip(batch, sets) {
            if let previous = item.previous, Self.same(previous.findings, set.findings) {
                unchanged.append(item.manifest)
                out.append((set, false))
            } else {
                changed.append(set)
                out.append((set, true))
            }
        }
        try await store.putFindings(changed, unchanged: unchanged, advisoryVersion: first.advisoryVersion, matchedAt: first.matchedAt)
        return out
    }

    /// Whether stored findings are the same as `new` (as `findings(_:_:)` gives them: normalised,
    /// so each once; the stored order is the store's collation, so compared as sets).
    static func same(_ stored: [StoredFinding], _ new: [StoredFinding]) -> Bool {
        stored.count == new.count && Set(stored) == Set(new)
    }

    /// The findings of each manifest of `batch` (nothing stored): one advisory read, one index.
    func findings(_ batch: [(manifest: Digest, inventory: ImageInventory)]) async throws -> [StoredFindings] {
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
        var memo: [InstalledPackage: [StoredFinding]] = [:]
        return zip(batch, packages).map { item, list in
            StoredFindings(manifest: item.manifest, advisoryVersion: version, matchedAt: at, findings: Self.findings(list, index, memo: &memo))
        }
    }

    /// The findings of `packages` by `index`'s matches (its ecosystem rules: Debian by source package
    /// and source version, withdrawn advisories never indexed, an unfixed range without a fixed version).
    /// `memo`: the findings of packages already matched against the same `index` (a chunk's
    /// images share most of their packages: each distinct package is matched once per chunk).
    static func findings(_ packages: [InstalledPackage], _ index: AdvisoryIndex,
                         memo: inout [InstalledPackage: [StoredFinding]]) -> [StoredFinding] {
        var out: [StoredFinding] = []
        for package in packages {
            if let known = memo[package] {
                out += known
                continue
            }
            let found = findings(of: package, index)
            memo[package] = found
            out += found
        }
        return StoredFinding.normalised(out)
    }

    static func findings(_ packages: [InstalledPackage], _ index: AdvisoryIndex) -> [StoredFinding] {
        var memo: [InstalledPackage: [StoredFinding]] = [:]
        return findings(packages, index, memo: &memo)
    }

    static func findings(of package: InstalledPackage, _ index: AdvisoryIndex) -> [StoredFinding] {
        index.matches(for: package).matches.map { m in
            let severity = m.severity
            let score = severity?.score ?? m.advisory.severities.compactMap(\.score).max()
            let level = severity?.level ?? .unknown
            return StoredFinding(
                advisoryID: m.advisory.id, aliases: m.advisory.aliases, ecosystem: package.ecosystem, package: package.name,
                sourcePackage: package.sourceName, installedVersion: package.version, fixedVersion: m.fixedVersion,
                severity: FindingSeverity.name(of: level), score: score,
                fixState: m.fixedVersion != nil ? "fix-available" : m.affected.noDSA ? "no-dsa" : "unfixed")
        }
    }
}

/// Severity names as findings carry them.
public enum FindingSeverity {
    public static let names = ["Unknown", "None", "Low", "Medium", "High", "Critical"]

    public static func name(of level: Severity.Level) -> String { names[level.rawValue] }

    /// "high" → "High"; nil for a word that is no severity.
    public static func parse(_ word: String) -> String? { names.first { $0.lowercased() == word.lowercased() } }
}
