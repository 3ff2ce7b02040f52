import Foundation
import NIOCore
import OCIModel
import RegistryStore

public struct PushedManifest: Sendable {
    public let digest: Digest
    public let subject: Digest?
}

public struct ReferrerList: Sendable {
    public let descriptors: [Descriptor]
    public let filtered: Bool
    public let next: String?
}

extension Registry {
    /// Stores a manifest under a tag or its digest. The bytes are kept exactly as pushed.
    public func putManifest(_ repository: RepositoryName, reference: Reference, bytes: [UInt8],
                            contentType: String?, ifTagTarget: TagPrecondition? = nil) async throws -> PushedManifest {
        guard bytes.count <= ManifestParser.maxSize else {
            throw RegistryError(.sizeInvalid, "manifest larger than \(ManifestParser.maxSize) bytes", status: 413)
        }
        let algorithm: Digest.Algorithm
        if case .digest(let d) = reference { algorithm = d.algorithm } else { algorithm = .sha256 }
        let digest = Digest.compute(bytes, algorithm: algorithm)
        if case .digest(let d) = reference, d != digest {
            throw RegistryError(.digestInvalid, "manifest digest is \(digest), not \(d)")
        }
        let parsed = try ManifestParser.parse(bytes, contentType: contentType)
        var tag: String?
        if case .tag(let t) = reference { tag = t }
        let record = ManifestRecord(digest: digest, mediaType: parsed.mediaType, size: Int64(bytes.count),
                                    artifactType: parsed.artifactType, subject: parsed.subject,
                                    annotations: parsed.annotations, createdAt: Date())
        try await checkWritable(repository.value)
        let quarantineEnabled = try await quarantinePolicy().enabled
        let quotas = try await quotas()
        do {
            try await checkPartials(repository.value, digest: digest, quotas: quotas) { Int64(bytes.count) }
        } catch let e as QuotaExceeded {
            throw quotaError(e)
        }
        var result: ManifestPushResult = .stored(previousTagTarget: nil)
        for attempt in 1...ContentPlanner.attempts {
            // The push is planned from where the tag points now; if it moves before the push
            // applies, the store refuses and the push is planned (and its locks checked) again.
            var current: Digest?
            if let tag {
                current = try await metadata.tagTarget(repository: repository.value, tag: tag)
                if let ifTagTarget, ifTagTarget.target != current { throw TagMovedMeanwhile(tag: tag) }
                try await checkTagMove(repository.value, tag: tag, from: current, to: digest)
            }
            let push = ContentPlanner.push(repository: repository.value, record: record, bytes: bytes, tag: tag, currentTagTarget: current,
                                           blobs: parsed.blobs, children: parsed.children, quarantineEnabled: quarantineEnabled,
                                           quotas: quotas)
            do {
                result = try await metadata.putManifest(push)
            } catch let e as QuotaExceeded {
                throw quotaError(e)
            }
            guard case .tagConflict = result else { break }
            // Moved since it was read: with a precondition, that is the caller's to decide again.
            if ifTagTarget != nil, let tag { throw TagMovedMeanwhile(tag: tag) }
            if attempt == ContentPlanner.attempts, let tag { throw tagBusy(tag) }
        }
        cache.invalidate(repository.value)
        if case .stored = result { pullTimes.stored(repository: repository.value, digest: digest) }
        if case .missing(let missing) = result {
            let list = missing.prefix(10).map(\.string).joined(separator: ", ")
            throw RegistryError(.manifestBlobUnknown, "manifest references content unknown to this repository: \(list)",
                                detail: ["digest": missing[0].string])
        }
        return PushedManifest(digest: digest, subject: parsed.subject)
    }

    /// What a pull of a manifest this repository does not hold yet may be answered with while a
    /// pull-through cache fills its image (stored, like any push, only once every blob is). The
    /// bytes must have `digest` and parse as a manifest, and the read locks a stored one would
    /// meet are asked (repository, tag, digest), and a tag that would move must be movable (its
    /// write locks and its manifest's, as a push asks). Then:
    /// - a manifest of that digest stored here already (under another tag, or by digest: a fill
    ///   that ended meanwhile) is answered as stored, with its quarantine verdict, which the pull
    ///   admission reads as for any stored manifest;
    /// - with quarantine on, nil: content is judged only once stored, so the caller stores it first;
    /// - else the manifest, never quarantined, once the repository takes writes and has room
    ///   under its quotas (else the fill could not store it: refused now, as `checkBlobStorable`
    ///   does for a blob).
    public func unstoredManifest(_ repository: RepositoryName, tag: String?, digest: Digest, bytes: [UInt8],
                                 contentType: String?) async throws -> ManifestContent? {
        guard bytes.count <= ManifestParser.maxSize else {
            throw RegistryError(.sizeInvalid, "manifest larger than \(ManifestParser.maxSize) bytes", status: 413)
        }
        guard Digest.compute(bytes, algorithm: digest.algorithm) == digest else {
            throw RegistryError(.digestInvalid, "manifest digest is not \(digest)")
        }
        let parsed = try ManifestParser.parse(bytes, contentType: contentType)
        try await checkManifestReadable(repository.value, tag: tag, digest: digest)
        // A tag that would move (a cached tag that moved upstream) and may not: its fill could not
        // move it, so the manifest must not be answered under it.
        if let tag { try await checkTagMove(repository.value, tag: tag, to: digest) }
        var buffer = ByteBuffer()
        buffer.writeBytes(bytes)
        if let record = try await metadata.manifest(repository: repository.value, digest: digest) {
            return ManifestContent(digest: digest, mediaType: record.mediaType, bytes: buffer, subject: record.subject,
                                   quarantineState: record.quarantineState, quarantineReason: record.quarantineReason)
        }
        if try await quarantinePolicy().enabled { return nil }
        // Write-locked or its quota full: the fill could not store it (review: answered 200, then
        // every layer refused).
        try await checkBlobStorable(repository, size: nil)
        var content = ManifestContent(digest: digest, mediaType: parsed.mediaType, bytes: buffer, subject: parsed.subject,
                                      quarantineState: nil, quarantineReason: nil)
        content.stored = false
        return content
    }

    public func resolve(_ repository: RepositoryName, _ reference: Reference) async throws -> Digest {
        switch reference {
        case .digest(let d):
            return d
        case .tag(let tag):
            if let d = cache.tag(repository.value, tag) { return d }
            let generation = cache.generation(repository.value)
            let metadata = self.metadata
            guard let d = try await cache.miss(repository.value, generation: generation, .tag(tag), {
                try await metadata.tagTarget(repository: repository.value, tag: tag)
            }) else {
                throw RegistryError(.manifestUnknown, "manifest unknown: tag \(tag) not found")
            }
            cache.storeTag(repository.value, tag, d, generation: generation)
            return d
        }
    }

    /// The manifest a pull returns.
    public func manifest(_ repository: RepositoryName, _ reference: Reference) async throws -> ManifestContent {
        let digest = try await resolve(repository, reference)
        if case .tag(let tag) = reference {
            try await checkManifestReadable(repository.value, tag: tag, digest: digest)
        } else {
            try await checkManifestReadable(repository.value, tag: nil, digest: digest)
        }
        if let hit = cache.manifest(repository.value, digest) { return hit }
        let generation = cache.generation(repository.value)
        let metadata = self.metadata
        let stored: ManifestContent? = try await cache.miss(repository.value, generation: generation, .manifest(digest)) {
            guard let record = try await metadata.manifest(repository: repository.value, digest: digest),
                  let bytes = try await metadata.inlineContent(digest)
            else { return nil }
            var buffer = ByteBuffer()
            buffer.writeBytes(bytes)
            return ManifestContent(digest: digest, mediaType: record.mediaType, bytes: buffer, subject: record.subject,
                                   quarantineState: record.quarantineState, quarantineReason: record.quarantineReason)
        }
        guard let content = stored else {
            throw RegistryError(.manifestUnknown, "manifest unknown to registry")
        }
        cache.storeManifest(repository.value, content, generation: generation)
        return content
    }

    // MARK: listings

    public func tags(_ repository: RepositoryName, limit: Int?, last: String?) async throws -> (tags: [String], more: Bool) {
        let n = min(limit ?? configuration.maxPageSize, configuration.maxPageSize)
        guard n > 0 else {
            guard try await metadata.repositoryExists(repository.value) else {
                throw RegistryError(.nameUnknown, "repository name not known to registry")
            }
            return ([], false)
        }
        let hidden = try await listHidden(repository.value).tags
        var out: [String] = []
        var cursor = last
        while true {
            guard let page = try await metadata.tags(repository: repository.value, after: cursor, limit: n + 1) else {
                throw RegistryError(.nameUnknown, "repository name not known to registry")
            }
            for tag in page where !hidden.contains(tag) {
                if out.count == n { return (out, true) }
                out.append(tag)
            }
            guard page.count == n + 1, let next = page.last else { return (out, false) }
            cursor = next
        }
    }

    /// A page of repository names in lexical order; `visible` hides repositories the caller may
    /// not see (the page is filled from further rows, never short because of hidden ones).
    public func catalog(limit: Int?, last: String?, visible: (@Sendable (String) -> Bool)? = nil) async throws -> (repositories: [String], more: Bool) {
        let n = min(limit ?? configuration.maxPageSize, configuration.maxPageSize)
        guard n > 0 else { return ([], false) }
        var out: [String] = []
        var cursor = last
        while true {
            let batch = try await metadata.repositories(after: cursor, limit: max(n + 1, 256))
            for name in batch {
                guard try (visible?(name) ?? true) else { continue }
                guard try await !listHidden(name).repository else { continue }
                if out.count == n { return (out, true) }
                out.append(name)
            }
            guard batch.count == max(n + 1, 256), let next = batch.last else { return (out, false) }
            cursor = next
        }
    }

    public func referrers(_ repository: RepositoryName, subject: Digest, artifactType: String?,
                          limit: Int?, last: String?) async throws -> ReferrerList {
        var records = try await metadata.referrers(repository: repository.value, subject: subject)
        if let artifactType { records = records.filter { $0.artifactType == artifactType } }
        records.sort { $0.digest < $1.digest }
        if let last { records = records.filter { $0.digest.string > last } }
        let n = min(limit ?? configuration.maxPageSize, configuration.maxPageSize)
        let page = records.prefix(n)
        let descriptors = page.map {
            Descriptor(mediaType: $0.mediaType, digest: $0.digest.string, size: $0.size,
                       annotations: $0.annotations, artifactType: $0.artifactType)
        }
        return ReferrerList(descriptors: descriptors, filtered: artifactType != nil,
                            next: records.count > n ? page.last?.digest.string : nil)
    }

    public func checkHealth() async throws {
        try await metadata.checkHealth()
        try await blobs.checkHealth()
    }
}
