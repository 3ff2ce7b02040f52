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

    /// What a re-match pass knows of the advisory change it follows: every package key the
    /// versions after `since` (up to `version`, the pass's) added, changed or removed records of.
    /// A manifest whose stored findings were matched at `since` or later needs only its packages
    /// with a touched key matched again: the advisories of every other key are the ones its
    /// findings were matched against.
    public struct RematchScope: Sendable {
        public var since: Int64
        public var version: Int64
        public var touched: Set<AdvisoryPackageKey>
        /// Manifests matched in full all the same: those whose stored findings may not be their
        /// stored inventory's (an inventory made again after they were matched; review).
        public var whole: Set<Digest>
        public init(since: Int64, version: Int64, touched: Set<AdvisoryPackageKey>, whole: Set<Digest> = []) {
            self.since = since
            self.version = version
            self.touched = touched
            self.whole = whole
        }

        /// Whether `previous` findings of `manifest` may be kept but for the touched packages: matched
        /// at `since` or later, not asked to be matched in full, and not cut at the store's bound
        /// (a full match gives back findings the cut left out).
        func partial(_ manifest: Digest, _ previous: StoredFindings) -> Bool {
            previous.advisoryVersion >= since && !whole.contains(manifest)
                && previous.findings.count < FindingStoreLimits.maxFindingsPerManifest
        }

        /// Whether an advisory change in scope may change `package`'s matches.
        func touches(_ package: InstalledPackage) -> Bool {
            AdvisoryIndex.lookupKeys(for: package).contains { touched.contains(AdvisoryPackageKey(ecosystem: $0.ecosystem, name: $0.name)) }
        }
    }

    /// The continuous re-match's chunk: as `match(_:)`, except that a manifest whose findings come
    /// out as its stored ones (`previous`: the same findings, whatever their order) is only moved
    /// to the new advisory version, its findings not rewritten (`FindingStore.putFindings(_:unchanged:…)`,
    /// one transaction for the chunk). Answers each manifest's findings as now stored, and whether
    /// they changed (nil `previous`: changed).
    ///
    /// With a `scope`, a manifest whose findings were matched at `scope.since` or later has only
    /// its packages with a touched key matched (and read advisories for): its other findings are
    /// kept as stored. Then every manifest of the chunk is stamped with `scope.version`, never a
    /// newer version the advisory read may have seen (a change landing during the pass): that
    /// change's keys were not in scope, so a newer stamp would hide them from the next pass.
    public func rematch(_ batch: [(manifest: Digest, inventory: ImageInventory, previous: StoredFindings?)],
                        scope: RematchScope? = nil) async throws
        -> [(findings: StoredFindings, changed: Bool)] {
        guard !batch.isEmpty else { return [] }
        // Per manifest: the packages to match, and the stored findings kept as they are.
        var plans: [(packages: [InstalledPackage], kept: [StoredFinding])] = []
        // Whether a package is touched, once per distinct package of the chunk (images share most).
        var touchedMemo: [InstalledPackage: Bool] = [:]
        for item in batch {
            let all = item.inventory.installedPackages()
            guard let scope, let previous = item.previous, scope.partial(item.manifest, previous) else {
                plans.append((all, []))
                continue
            }
            let touched = all.filter { p in
                if let known = touchedMemo[p] { return known }
                let t = scope.touches(p)
                touchedMemo[p] = t
                return t
            }
            let identities = Set(touched.map(FindingIdentity.init))
            plans.append((touched, previous.findings.filter { !identities.contains(FindingIdentity($0)) }))
        }
        var seen = Set<InstalledPackage>()
        var union: [InstalledPackage] = []
        for plan in plans {
            for p in plan.packages where seen.insert(p).inserted { union.append(p) }
        }
        let (read, index, undecodable) = try await AdvisoryDatabase.index(store: advisories, for: union)
        if undecodable > 0 {
            logger.warning("advisories this build cannot read were left out", metadata: ["count": "\(undecodable)", "manifests": "\(batch.count)"])
        }
        let version = scope.map { min($0.version, read) } ?? read
        let at = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        var memo: [InstalledPackage: [StoredFinding]] = [:]
        var changed: [StoredFindings] = []
        var unchanged: [Digest] = []
        var out: [(findings: StoredFindings, changed: Bool)] = []
        for (item, plan) in zip(batch, plans) {
            let found = StoredFinding.normalised(plan.kept + Self.findings(plan.packages, index, memo: &memo))
            let set = StoredFindings(manifest: item.manifest, advisoryVersion: version, matchedAt: at, findings: found)
            if let previous = item.previous, Self.same(previous.findings, set.findings) {
                unchanged.append(item.manifest)
                out.append((set, false))
            } else {
                changed.append(set)
                out.append((set, true))
            }
        }
        try await store.putFindings(changed, unchanged: unchanged, advisoryVersion: version, matchedAt: at)
        return out
    }

    /// What a finding says of the package it was found in: a package's stored findings are those
    /// with its identity (several installed packages with one identity have the same keys). A
    /// package's is taken as its findings store it (`StoredFinding.normalised`: long fields cut,
    /// an empty source package none).
    struct FindingIdentity: Hashable {
        var ecosystem: String
        var name: String
        var sourceName: String?
        var version: String
        init(_ package: InstalledPackage) {
            let stored = StoredFinding.normalised([StoredFinding(
                advisoryID: "-", aliases: [], ecosystem: package.ecosystem, package: package.name, sourcePackage: package.sourceName,
                installedVersion: package.version, fixedVersion: nil, severity: "-", score: nil)])
            self.init(stored[0])
        }
        init(_ finding: StoredFinding) {
            (ecosystem, name, sourceName, version) = (finding.ecosystem, finding.package, finding.sourcePackage, finding.installedVersion)
        }
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
