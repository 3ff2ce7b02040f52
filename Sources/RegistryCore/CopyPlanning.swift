import Foundation
import OCIModel

/// An image about to be copied into a repository from another registry (a pull-through cache's
/// fill, an import), planned before anything of it is stored: every manifest of its tree (for an
/// index, each child this repository does not hold, fetched once and handed to the copy), the
/// blobs it misses and the bytes they and the missing manifests declare. `Registry.checkStorable`
/// asks the quotas for that total at once, so an index whose children each fit but together do
/// not is refused before its first blob (review: each child was checked alone).
public struct CopyPlan: Sendable {
    /// A manifest as fetched from the other registry (its digest verified by the fetcher).
    public struct Manifest: Sendable {
        public let digest: Digest
        public let mediaType: String
        public let bytes: [UInt8]
        public init(digest: Digest, mediaType: String, bytes: [UInt8]) {
            self.digest = digest
            self.mediaType = mediaType
            self.bytes = bytes
        }
    }

    /// The children fetched while planning, by digest, for the copy that follows.
    public var fetched: [Digest: Manifest] = [:]
    /// Blobs none of the tree's stored manifests brings, each once.
    public var missingBlobs: Set<Digest> = []
    /// The sizes the missing blobs declare plus the missing manifests' bytes (saturating: an
    /// upstream may declare sizes that overflow).
    public var declaredBytes: Int64 = 0
    /// Manifests the plan visited.
    public var manifests = 0
    /// The digests of the manifests of each root's tree the repository does not hold, and of the
    /// children of an index it does not hold (held or not), in the order a copy stores them:
    /// the subjects whose referrers an import copies (`addReferrer`).
    public var tree: [Digest] = []
    /// Referrers added to the plan (`addReferrer`), by digest, fetched once: the copy uses them.
    public var referrers: [Digest: Manifest] = [:]
    /// Manifests already looked at (each counted once, whatever names it twice).
    var seen: Set<Digest> = []

    mutating func add(_ n: Int64) {
        let (sum, overflow) = declaredBytes.addingReportingOverflow(max(0, n))
        declaredBytes = overflow ? Int64.max : sum
    }

    /// The sizes an image manifest states for its config, layers and blobs.
    public static func blobSizes(_ bytes: [UInt8]) -> [Digest: Int64] {
        struct Shape: Decodable { var config: Descriptor?; var layers: [Descriptor]?; var blobs: [Descriptor]? }
        guard let shape = try? JSONDecoder().decode(Shape.self, from: Data(bytes)) else { return [:] }
        var sizes: [Digest: Int64] = [:]
        for d in [shape.config].compactMap({ $0 }) + (shape.layers ?? []) + (shape.blobs ?? []) {
            if let digest = try? Digest(parsing: d.digest), d.size >= 0 { sizes[digest] = d.size }
        }
        return sizes
    }
}

extension Registry {
    /// Plans the copy of `root` into `repository`: walks an index's children (at most `maxDepth`
    /// levels, `maxManifests` manifests; else `manifestInvalid` with `invalidStatus`), fetching
    /// with `fetch` each one the repository does not hold, and sums what is missing. A manifest
    /// the repository holds is not looked into (its blobs are there). Nothing is stored.
    public func planCopy(_ repository: RepositoryName, root: CopyPlan.Manifest, maxDepth: Int, maxManifests: Int,
                         invalidStatus: Int = 502,
                         fetch: (Digest) async throws -> CopyPlan.Manifest) async throws -> CopyPlan {
        try await extendPlan(CopyPlan(), repository, root: root, maxDepth: maxDepth, maxManifests: maxManifests,
                             invalidStatus: invalidStatus, fetch: fetch)
    }

    /// `planCopy` of one more root into `plan` (a referrer an import copies with the image): its
    /// manifests and blobs are added to the total, each once, whatever the plan holds already;
    /// `maxManifests` bounds the whole plan.
    public func extendPlan(_ plan: CopyPlan, _ repository: RepositoryName, root: CopyPlan.Manifest, maxDepth: Int, maxManifests: Int,
                           invalidStatus: Int = 502,
                           fetch: (Digest) async throws -> CopyPlan.Manifest) async throws -> CopyPlan {
        var plan = plan
        func holds(_ digest: Digest) async -> Bool {
            (try? await metadata.manifest(repository: repository.value, digest: digest)) != nil
        }
        func visit(_ manifest: CopyPlan.Manifest, depth: Int) async throws {
            guard depth <= maxDepth else {
                throw RegistryError(.manifestInvalid, "indexes nested deeper than \(maxDepth) levels", status: invalidStatus)
            }
            plan.manifests += 1
            guard plan.manifests <= maxManifests else {
                throw RegistryError(.manifestInvalid, "an image of more than \(maxManifests) manifests", status: invalidStatus)
            }
            guard plan.seen.insert(manifest.digest).inserted else { return }
            let parsed = try ManifestParser.parse(manifest.bytes, contentType: manifest.mediaType)
            if await holds(manifest.digest) {
                // Held with its children: nothing to count, but their referrers may be missing.
                plan.tree += (parsed.kind == .index ? parsed.children : []) + [manifest.digest]
                return
            }
            plan.add(Int64(manifest.bytes.count))
            if parsed.kind == .index {
                for child in parsed.children where !plan.seen.contains(child) {
                    if await holds(child) {
                        plan.tree.append(child)
                        continue
                    }
                    let fetched: CopyPlan.Manifest
                    if let known = plan.fetched[child] {
                        fetched = known
                    } else {
                        fetched = try await fetch(child)
                        plan.fetched[child] = fetched
                    }
                    try await visit(fetched, depth: depth + 1)
                }
            } else {
                let sizes = CopyPlan.blobSizes(manifest.bytes)
                for blob in parsed.blobs where !plan.missingBlobs.contains(blob) {
                    if (try? await blobSize(repository, blob)) != nil { continue }
                    plan.missingBlobs.insert(blob)
                    plan.add(sizes[blob] ?? 0)
                }
            }
            plan.tree.append(manifest.digest)
        }
        try await visit(root, depth: 0)
        return plan
    }

    /// Throws the quota's error (or the write lock's) unless everything `plan` misses fits now.
    /// Nothing is asked when no blob is missing (quotas count blobs: a manifest over blobs the
    /// repository holds adds nothing to them; an earlier review's fix).
    /// With `countingPartialsExcept` (an import), the bytes private sessions (imports' partial
    /// copies) hold under each quota count as used, but for the sessions named (the import's own,
    /// whose blobs the plan counts whole).
    public func checkStorable(_ repository: RepositoryName, _ plan: CopyPlan, countingPartialsExcept own: Set<String>? = nil) async throws {
        guard !plan.missingBlobs.isEmpty, plan.declaredBytes > 0 else { return }
        try await checkBlobStorable(repository, size: plan.declaredBytes, countingPartialsExcept: own)
    }
}
