import Access
import Foundation
import HTTPAPI
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import UpstreamClient

/// The pull-through cache (issue 17 item 2): a `/v2/` read of a repository a rule covers fills what
/// is missing from the rule's upstream through the registry core, as a push would (quotas, locks,
/// events), digests verified by `UpstreamClient` before anything is stored. A tag is answered from
/// the cache for the rule's freshness window, then upstream is asked again and the tag moved when it
/// changed; when the upstream fails, what is cached is served. Concurrent misses of one manifest,
/// tag or blob share one fetch.
public final class PullThrough: ContentFallback, Sendable {
    let registry: Registry
    let service: CacheService
    let limits: UpstreamLimits
    let logger: Logger
    let now: @Sendable () -> Date
    /// Whose rights a fill runs with: the rule's creator must still exist, be enabled and hold
    /// Push on the repository being filled (nil only in unit tests of the cache alone).
    let access: AccessControl?

    /// The rules as last read, and when; re-read after a change on any node (its event, through
    /// the event feed, or this node's API), and at least every `rulesTTL` seconds (the backstop
    /// when the feed falls behind).
    private let rules = NIOLockedValueBox<(rules: [(CacheRuleRecord, CacheRulePattern)], at: Date)?>(nil)
    private let loadRules = SingleFlight<Int, [(CacheRuleRecord, CacheRulePattern)]>()
    static let rulesTTL: TimeInterval = 30
    /// Moved by every change: a read of the rules that started before it is not kept.
    private let rulesGeneration = NIOLockedValueBox(0)
    /// One upstream client per rule (its tokens), replaced when the rule changes.
    /// Each rule's upstream client with when it was built: rebuilt when the rule changes, after
    /// a change through this node's API, and at least every `clientTTL` (a credential set's new
    /// password is not part of the rule: found in review, a rotated password was never used).
    private let clients = NIOLockedValueBox<[String: (CacheRuleRecord, UpstreamClient, Date)]>([:])
    static let clientTTL: TimeInterval = 60
    /// When each cached tag (`repository:tag`) was last confirmed upstream (or the upstream failed).
    private let checked = NIOLockedValueBox<[String: Date]>([:])
    private let fetches = SingleFlight<String, Bool>()
    /// Manifests served before their image is stored (`provisionalManifest`), by fill key
    /// (`t:repo:tag`, `m:repo@digest`), while their fill runs: a second read of the same miss is
    /// answered from here, the upstream not asked again. Bounded by `maxProvisional` fills and
    /// `maxProvisionalBytes` of manifest bytes held (a manifest may be 4 MiB).
    private let provisional = NIOLockedValueBox<(fills: [String: UpstreamManifest], bytes: Int)>(([:], 0))
    private let provisionalFetches = SingleFlight<String, UpstreamManifest>()
    /// Upstream checks of cached tags past their window (`movedTag`), by `repository:tag`.
    private let tagChecks = SingleFlight<String, UpstreamManifest?>()
    static let maxProvisional = 1000
    static let maxProvisionalBytes = 64 << 20
    /// What the upstream answered 404 for (`t:repo:tag`, `m:repo@digest`, `b:repo@digest`), per
    /// node, with when it was asked and the answer given: asked again only after `negativeSeconds`.
    private let missing = NIOLockedValueBox<[String: (at: Date, error: RegistryError)]>([:])
    /// How long an upstream 404 is remembered (0: never), and how many are at most.
    let negativeSeconds: Double
    static let maxMissing = 10_000

    public init(registry: Registry, service: CacheService, limits: UpstreamLimits = UpstreamLimits(), negativeSeconds: Double = 30,
                access: AccessControl? = nil,
                logger: Logger = Logger(label: "berth.cache"), now: @escaping @Sendable () -> Date = Date.init) {
        self.registry = registry
        self.access = access
        self.service = service
        self.limits = limits
        self.negativeSeconds = max(0, negativeSeconds)
        self.logger = logger
        self.now = now
        // A rule or credential set changed on any node (its `setting` event, through the event
        // feed): re-read the rules, rebuild the clients, forget the remembered misses.
        registry.observeEvents { [weak self] events in
            if events.contains(where: { $0.action == EventAction.setting && $0.detail == CacheRuleRecord.changeEventDetail }) {
                self?.rulesChanged()
            }
        }
    }

    /// The bounds `berth serve`'s settings put on upstreams (`cache-max-blob-bytes`,
    /// `cache-connect-timeout-seconds`, `cache-negative-seconds`).
    public convenience init(registry: Registry, service: CacheService, maxBlobBytes: Int64, connectTimeoutSeconds: Double,
                            negativeSeconds: Double, access: AccessControl, logger: Logger) {
        var limits = UpstreamLimits()
        limits.maxBlobBytes = maxBlobBytes
        limits.connectTimeout = .milliseconds(Int64((connectTimeoutSeconds * 1000).rounded()))
        self.init(registry: registry, service: service, limits: limits, negativeSeconds: negativeSeconds, access: access, logger: logger)
    }

    /// `body`, unless the upstream answered 404 for `key` less than `negativeSeconds` ago: that
    /// answer again, upstream not asked (a storm of pulls of a missing name asks it once).
    func rememberingMisses<T: Sendable>(_ key: String, _ body: () async throws -> T) async throws -> T {
        let time = now()
        if negativeSeconds > 0, let known = missing.withLockedValue({ $0[key] }),
           time.timeIntervalSince(known.at) < negativeSeconds, time >= known.at {
            throw known.error
        }
        do {
            return try await body()
        } catch let error as RegistryError where error.status == 404 && negativeSeconds > 0 {
            let window = negativeSeconds
            missing.withLockedValue { m in
                if m.count >= Self.maxMissing {
                    m = m.filter { time.timeIntervalSince($0.value.at) < window && time >= $0.value.at }
                    if m.count >= Self.maxMissing { m.removeAll() }
                }
                m[key] = (time, error)
            }
            throw error
        }
    }

    /// How many reads wait for the fetch of `key` (`t:repo:tag`, `m:repo@digest`, `b:repo@digest`): tests.
    func fetchCallers(_ key: String) -> Int { fetches.callers(key) }

    /// Forgets the rules read (after a change through this node's API).
    func rulesChanged() {
        rulesGeneration.withLockedValue { $0 += 1 }
        rules.withLockedValue { $0 = nil }
        clients.withLockedValue { $0 = [:] }
        missing.withLockedValue { $0 = [:] }
    }

    /// Index nesting followed, and manifests one fill may copy.
    static let maxDepth = 4
    static let maxManifests = 1000

    // MARK: rules

    func currentRules() async throws -> [(CacheRuleRecord, CacheRulePattern)] {
        let time = now()
        if let cached = rules.withLockedValue({ $0 }), time.timeIntervalSince(cached.at) < Self.rulesTTL, time >= cached.at {
            return cached.rules
        }
        let service = self.service, logger = self.logger
        let generation = rulesGeneration.withLockedValue { $0 }
        let loaded = try await loadRules.value(generation) {
            try await service.rules().compactMap { r -> (CacheRuleRecord, CacheRulePattern)? in
                do {
                    return (r, try CacheRulePattern(source: r.sourceRepository, target: r.targetRepository))
                } catch {
                    logger.warning("cache rule \(r.name) is not usable: \(error)")
                    return nil
                }
            }
        }
        if rulesGeneration.withLockedValue({ $0 }) == generation { rules.withLockedValue { $0 = (loaded, time) } }
        return loaded
    }

    /// The rule covering `repository` and the upstream repository it caches, nil when none does.
    func match(_ repository: RepositoryName) async throws -> (rule: CacheRuleRecord, upstreamRepository: String)? {
        // Rules that cannot be read make no repository covered, rather than failing every read of
        // every repository (found in review); what is cached is still served.
        let current: [(CacheRuleRecord, CacheRulePattern)]
        do { current = try await currentRules() } catch {
            logger.error("cache rules cannot be read: \(error)")
            return nil
        }
        for (rule, pattern) in current {
            if let upstream = pattern.upstreamRepository(for: repository.value) { return (rule, upstream) }
        }
        return nil
    }

    func client(_ rule: CacheRuleRecord) async throws -> UpstreamClient {
        let time = now()
        if let known = clients.withLockedValue({ $0[rule.name] }), known.0 == rule,
           time.timeIntervalSince(known.2) < Self.clientTTL, time >= known.2 { return known.1 }
        let pattern = try CacheRulePattern(source: rule.sourceRepository, target: rule.targetRepository)
        var credentials: UpstreamCredentials?
        if let set = rule.credentialSet {
            let (server, c) = try await service.credentials(set)
            // A password goes only to the registry it was given for.
            guard server == pattern.registry else {
                throw RegistryError(.denied, "cache rule \(rule.name): credential set \(set) is not for \(pattern.registry)", status: 502)
            }
            credentials = c
        }
        let client = try UpstreamClient(registry: pattern.registry, plainHTTP: rule.plainHTTP, credentials: credentials,
                                        policy: service.policy, limits: limits)
        clients.withLockedValue { $0[rule.name] = (rule, client, time) }
        return client
    }

    // MARK: ContentFallback

    public func prepareManifest(_ repository: RepositoryName, _ reference: Reference) async throws {
        guard let matched = try await match(repository) else { return }
        let rule = matched.rule, upstreamRepository = matched.upstreamRepository
        switch reference {
        case .digest(let digest):
            // Content by digest never changes: once cached, upstream is not asked again.
            if await hasManifest(repository, digest) { return }
            _ = try await rememberingMisses("m:\(repository)@\(digest)") {
                try await fetches.value("m:\(repository)@\(digest)") {
                    try await self.asCache(rule, into: repository) {
                        let client = try await self.client(rule)
                        let manifest = try await Self.upstream { () async throws(UpstreamError) in
                            try await client.manifest(repository: upstreamRepository, reference: .digest(digest))
                        }
                        var budget = Budget()
                        try await self.copy(manifest, into: repository, from: upstreamRepository, client: client, depth: 0,
                                            budget: &budget)
                    }
                    return true
                }
            }
        case .tag(let tag):
            let key = "\(repository):\(tag)"
            let cached = try? await registry.resolve(repository, .tag(tag))
            if cached != nil, let at = checked.withLockedValue({ $0[key] }), now().timeIntervalSince(at) < Double(rule.tagFreshnessSeconds),
               now() >= at {
                return
            }
            let fetch = { @Sendable () async throws -> Bool in
                try await self.fetches.value("t:" + key) {
                    try await self.refreshTag(repository, tag, rule: rule, upstreamRepository: upstreamRepository, cached: cached)
                    return true
                }
            }
            // A cached tag is served whatever the upstream answers; only a tag never cached is remembered missing.
            if cached == nil {
                _ = try await rememberingMisses("t:" + key, fetch)
            } else {
                _ = try await fetch()
            }
        }
    }

    /// A miss of a manifest: the upstream's manifest (its digest verified by `UpstreamClient`) is
    /// answered at once as `Registry.unstoredManifest` decides (the locks, the repository's
    /// writability, a manifest of that digest stored here already with its verdict), and the image
    /// is filled in the background (blobs, then the manifest and its tag, as `prepareManifest`
    /// does; the client's blob reads meanwhile stream through `streamBlob` or join the fill of
    /// that blob). When it must be stored first (quarantine on: judged once stored; or
    /// `maxProvisional` fills already run), the fill runs before this answers nil, with the
    /// manifest already fetched, so the stored path that follows finds it (review: the upstream
    /// was asked twice). A manifest present, or a tag cached and fresh (or unchanged
    /// upstream), is nil (the stored path of `prepareManifest`).
    ///
    /// A cached tag past its freshness window that moved upstream is answered the same way: the
    /// upstream's manifest at once, the new image filled in the background and the tag moved when
    /// it is stored (`movedTag`). Until then the cached image stays stored and tagged: a fill that
    /// fails, a lock on the tag, a full quota or an upstream that is down leave the cached tag
    /// served (nil here, the tag marked checked, so `prepareManifest` asks nothing more).
    public func provisionalManifest(_ repository: RepositoryName, _ reference: Reference) async throws -> ManifestContent? {
        guard let matched = try await match(repository) else { return nil }
        let rule = matched.rule, upstreamRepository = matched.upstreamRepository
        let key: String
        var tag: String?
        var cachedTag = false
        var moved: UpstreamManifest?
        switch reference {
        case .digest(let digest):
            if await hasManifest(repository, digest) { return nil }
            key = "m:\(repository)@\(digest)"
        case .tag(let name):
            key = "t:\(repository):\(name)"
            tag = name
            if let cached = try? await registry.resolve(repository, .tag(name)) {
                cachedTag = true
                // A fill of its move runs: answered from it, as every read since the move was seen.
                if provisional.withLockedValue({ $0.fills[key] }) == nil {
                    guard let manifest = await movedTag(repository, name, rule: rule, upstreamRepository: upstreamRepository,
                                                        cached: cached) else { return nil }
                    moved = manifest
                }
            }
        }
        guard cachedTag else {
            return try await provisionalMiss(key: key, tag: tag, reference: reference, repository: repository,
                                             upstreamRepository: upstreamRepository, rule: rule)
        }
        // The cached tag is served whenever the move cannot be answered and filled now.
        do {
            return try await provisionalMiss(key: key, tag: tag, reference: reference, repository: repository,
                                             upstreamRepository: upstreamRepository, rule: rule, fetched: moved)
        } catch {
            if let tag { checked.withLockedValue { $0["\(repository):\(tag)"] = now() } }
            logger.warning("cache: the tag moved upstream but cannot be filled now, serving the cached tag", metadata: [
                "rule": "\(rule.name)", "repository": "\(repository)", "tag": "\(tag ?? "")", "error": "\(error)",
            ])
            return nil
        }
    }

    /// A cached tag: nil while it is fresh (the freshness window), and when the upstream names
    /// the cached digest, fails, or does not answer within `recheckSeconds` (then marked checked:
    /// the cached tag is served and the upstream asked again after the window); the upstream's
    /// manifest (digest verified) when the tag moved there. One question per tag at a time.
    func movedTag(_ repository: RepositoryName, _ tag: String, rule: CacheRuleRecord, upstreamRepository: String,
                  cached: Digest) async -> UpstreamManifest? {
        let key = "\(repository):\(tag)"
        if let at = checked.withLockedValue({ $0[key] }), now().timeIntervalSince(at) < Double(rule.tagFreshnessSeconds), now() >= at {
            return nil
        }
        do {
            let manifest = try await tagChecks.value(key) {
                try await self.asCache(rule, into: repository) { () async throws -> UpstreamManifest? in
                    let client = try await self.client(rule)
                    let digest = try await Self.within(Self.recheckSeconds, {
                        try await Self.upstream({ () async throws(UpstreamError) in
                            try await client.manifestDigest(repository: upstreamRepository, tag: tag)
                        })
                    })
                    guard digest != cached else { return nil }
                    let manifest = try await Self.within(Self.recheckSeconds, {
                        try await Self.upstream { () async throws(UpstreamError) in
                            try await client.manifest(repository: upstreamRepository, reference: .tag(tag))
                        }
                    })
                    return manifest.digest == cached ? nil : manifest
                }
            }
            if manifest == nil { checked.withLockedValue { $0[key] = now() } }
            return manifest
        } catch {
            checked.withLockedValue { $0[key] = now() }
            logger.warning("cache: upstream failed, serving the cached tag", metadata: [
                "rule": "\(rule.name)", "repository": "\(repository)", "tag": "\(tag)", "error": "\(error)",
            ])
            return nil
        }
    }

    /// A manifest answered before its image is stored (`provisionalManifest`): the running fill's,
    /// `fetched`, or the upstream's now.
    private func provisionalMiss(key: String, tag: String?, reference: Reference, repository: RepositoryName,
                                 upstreamRepository: String, rule: CacheRuleRecord,
                                 fetched: UpstreamManifest? = nil) async throws -> ManifestContent? {
        let manifest: UpstreamManifest
        let running = runningFill(key, repository: repository, reference: reference)
        if let running {
            manifest = running
        } else if let fetched {
            manifest = fetched
        } else {
            manifest = try await rememberingMisses(key) {
                try await self.provisionalFetches.value(key) {
                    try await self.asCache(rule, into: repository) {
                        let client = try await self.client(rule)
                        return try await Self.upstream { () async throws(UpstreamError) in
                            try await client.manifest(repository: upstreamRepository, reference: reference)
                        }
                    }
                }
            }
        }
        var fill = Fill(key: key, manifest: manifest, repository: repository, upstreamRepository: upstreamRepository, rule: rule, tag: tag)
        guard let content = try await registry.unstoredManifest(repository, tag: tag, digest: manifest.digest, bytes: manifest.bytes,
                                                                contentType: manifest.mediaType) else {
            try await run(fill)
            return nil
        }
        // Its fill runs: planned and admitted when it started (review: each read during a fill
        // asked upstream for every child of an index again).
        if running != nil { return content }
        // The whole image (every child of an index) must fit under the quotas before it is
        // answered: a fill refused later could store only part of it, and the client would be
        // answered an image it cannot pull.
        fill.known = try await asCache(rule, into: repository) {
            try await self.planFill(manifest, into: repository, from: upstreamRepository, client: try await self.client(rule), known: [:])
        }
        guard startFill(fill) else {
            try await run(fill)
            return nil
        }
        return content
    }

    /// The manifest of the fill that runs for `key`; for a read by digest, also of a fill of that
    /// manifest under a tag of the repository (review: a client that read a moved tag reads its
    /// manifest by digest next, and that asked upstream again and started a second fill of the
    /// same image). A repository name holds no `:`, so the prefix names one repository.
    private func runningFill(_ key: String, repository: RepositoryName, reference: Reference) -> UpstreamManifest? {
        provisional.withLockedValue { p in
            if let manifest = p.fills[key] { return manifest }
            guard case .digest(let digest) = reference else { return nil }
            let tagged = "t:\(repository):"
            return p.fills.first { $0.key.hasPrefix(tagged) && $0.value.digest == digest }?.value
        }
    }

    /// A manifest fetched from upstream and where it goes.
    struct Fill: Sendable {
        let key: String
        let manifest: UpstreamManifest
        let repository: RepositoryName
        let upstreamRepository: String
        let rule: CacheRuleRecord
        let tag: String?
        /// Children fetched while the fill was planned (`planFill`).
        var known: [Digest: UpstreamManifest] = [:]
    }

    /// Fills the image of a manifest served provisionally, once per key at a time; the manifest
    /// is answered from memory until the fill ends (stored, or failed: the next read asks again).
    /// Answers whether a fill of the key runs (started now or before); false when
    /// `maxProvisional` fills already run or their manifests hold `maxProvisionalBytes`.
    func startFill(_ fill: Fill) -> Bool {
        enum Admission { case running, started, full }
        let size = fill.manifest.bytes.count
        let admission = provisional.withLockedValue { p -> Admission in
            if p.fills[fill.key] != nil { return .running }
            guard p.fills.count < Self.maxProvisional, p.bytes + size <= Self.maxProvisionalBytes else { return .full }
            p.fills[fill.key] = fill.manifest
            p.bytes += size
            return .started
        }
        switch admission {
        case .running: return true
        case .full: return false
        case .started: break
        }
        let logger = self.logger
        Task {
            defer {
                self.provisional.withLockedValue { p in
                    if p.fills.removeValue(forKey: fill.key) != nil { p.bytes -= size }
                }
            }
            do {
                try await self.run(fill)
            } catch {
                // A tag: its cached image (if any) is served until the window ends (review: a
                // moved tag whose fill kept failing was asked and answered anew on every read).
                if let tag = fill.tag { self.checked.withLockedValue { $0["\(fill.repository):\(tag)"] = self.now() } }
                logger.warning("cache: fill of a manifest served before it was stored failed", metadata: [
                    "rule": "\(fill.rule.name)", "repository": "\(fill.repository)", "digest": "\(fill.manifest.digest)",
                    "error": "\(error)",
                ])
            }
        }
        return true
    }

    /// Stores `fill`'s image (one fill per key at a time; a read of the same key joins it).
    func run(_ fill: Fill) async throws {
        _ = try await fetches.value(fill.key) {
            try await self.asCache(fill.rule, into: fill.repository) {
                let client = try await self.client(fill.rule)
                var budget = Budget()
                budget.known = fill.known
                try await self.copy(fill.manifest, into: fill.repository, from: fill.upstreamRepository, client: client, depth: 0,
                                    budget: &budget, tag: fill.tag)
            }
            return true
        }
        if let tag = fill.tag { checked.withLockedValue { $0["\(fill.repository):\(tag)"] = self.now() } }
    }

    public func prepareBlob(_ repository: RepositoryName, _ digest: Digest) async throws {
        guard let matched = try await match(repository) else { return }
        let rule = matched.rule, upstreamRepository = matched.upstreamRepository
        if (try? await registry.blobSize(repository, digest)) != nil { return }
        _ = try await rememberingMisses("b:\(repository)@\(digest)") {
            try await fetches.value("b:\(repository)@\(digest)") {
                try await self.asCache(rule, into: repository) {
                    let client = try await self.client(rule)
                    try await self.copyBlob(digest, size: nil, into: repository, from: upstreamRepository, client: client)
                }
                return true
            }
        }
    }

    /// The GET of a whole missing blob: starts its fill (unless one runs: that read then waits for
    /// it through `prepareBlob`) and, once the upstream declared its length, answers with its bytes
    /// as they arrive. The fill runs on when the client leaves, and stores the blob only verified.
    public func streamBlob(_ repository: RepositoryName, _ digest: Digest) async throws -> StreamedBlob? {
        guard let matched = try await match(repository) else { return nil }
        let rule = matched.rule, upstreamRepository = matched.upstreamRepository
        if (try? await registry.blobSize(repository, digest)) != nil { return nil }
        return try await rememberingMisses("b:\(repository)@\(digest)") {
            try await self.startStreaming(digest, into: repository, from: upstreamRepository, rule: rule)
        }
    }

    func startStreaming(_ digest: Digest, into repository: RepositoryName, from upstreamRepository: String,
                        rule: CacheRuleRecord) async throws -> StreamedBlob? {
        let tee = BlobTee()
        let started = fetches.startIfIdle("b:\(repository)@\(digest)") {
            try await self.asCache(rule, into: repository) {
                try await self.fill(digest, into: repository, from: upstreamRepository, rule: rule, tee: tee)
            }
            return true
        }
        guard started, let length = try await tee.streamingLength() else { return nil }
        return StreamedBlob(size: length, next: { try await tee.next() }, close: { tee.close() })
    }

    /// A blob fill that hands its bytes to `tee` while it stores them: the upstream's declared
    /// length is the tee's head (no length: `whole`, filled as `copyBlob` does).
    func fill(_ digest: Digest, into repository: RepositoryName, from upstreamRepository: String, rule: CacheRuleRecord,
              tee: BlobTee) async throws {
        let registry = self.registry
        do {
            let client = try await self.client(rule)
            if (try? await registry.blobSize(repository, digest)) == nil {
                _ = try await client.blob(repository: upstreamRepository, digest: digest, size: nil) {
                    (stream: VerifiedBlobStream) async throws -> Int64 in
                    // Asked before the response begins (review L2: a write lock or a full quota
                    // found by putBlob after the 200 was sent could only cut the body short).
                    let body = try await tee.feeding(stream) { try await registry.checkBlobStorable(repository, size: $0) }
                    return try await registry.putBlob(repository, digest: digest, contentLength: stream.size, body: body)
                }
            }
            tee.finish(.success(()))
        } catch {
            let answered = Self.blobFailure(error)
            tee.finish(.failure(answered))
            logger.warning("cache: blob fill failed", metadata: [
                "rule": "\(rule.name)", "repository": "\(repository)", "digest": "\(digest)", "error": "\(answered)",
            ])
            throw answered
        }
    }

    /// What a client is answered for a failed blob fill: 404 for a blob the upstream does not have.
    static func blobFailure(_ error: any Error) -> any Error {
        guard let e = error as? UpstreamError else { return error }
        return e.kind == .notFound ? RegistryError(.blobUnknown, "upstream: " + e.message, status: 404) : e.registryError
    }

    /// Asks upstream for the tag; moves the cached tag when it changed. An upstream failure keeps
    /// serving what is cached, and is thrown only when nothing is.
    func refreshTag(_ repository: RepositoryName, _ tag: String, rule: CacheRuleRecord, upstreamRepository: String,
                    cached: Digest?) async throws {
        let key = "\(repository):\(tag)"
        do {
            try await asCache(rule, into: repository) {
                let client = try await self.client(rule)
                // A cached tag is checked with a HEAD first: unchanged, nothing more is fetched. The
                // check waits at most `recheckSeconds` (review: an upstream that accepts connections
                // and never answers held each pull for the whole request timeout, 30 s, before the
                // cached tag was served).
                if let cached, try await Self.within(Self.recheckSeconds, {
                    try await Self.upstream({ () async throws(UpstreamError) in
                        try await client.manifestDigest(repository: upstreamRepository, tag: tag)
                    })
                }) == cached {
                    return
                }
                let manifest = try await Self.upstream { () async throws(UpstreamError) in
                    try await client.manifest(repository: upstreamRepository, reference: .tag(tag))
                }
                if manifest.digest != cached {
                    var budget = Budget()
                    try await self.copy(manifest, into: repository, from: upstreamRepository, client: client, depth: 0, budget: &budget,
                                        tag: tag)
                    self.logger.info("cache: tag filled from upstream", metadata: [
                        "rule": "\(rule.name)", "repository": "\(repository)", "tag": "\(tag)", "digest": "\(manifest.digest)",
                    ])
                }
            }
            checked.withLockedValue { $0[key] = now() }
        } catch {
            guard cached != nil else { throw error }
            // The upstream is down (or refuses, or lies): serve the cached tag, and ask again after the window.
            checked.withLockedValue { $0[key] = now() }
            logger.warning("cache: upstream failed, serving the cached tag", metadata: [
                "rule": "\(rule.name)", "repository": "\(repository)", "tag": "\(tag)", "error": "\(error)",
            ])
        }
    }

    // MARK: copying

    struct Budget {
        var manifests = 0
        /// Manifests fetched already (while the copy was planned), by digest.
        var known: [Digest: UpstreamManifest] = [:]
    }

    /// Plans the copy of `manifest` (every child of an index the repository does not hold is
    /// fetched, once) and asks the quotas for everything it misses at once (`Registry.planCopy`,
    /// shared with import); throws their refusal, nothing stored. Returns the children fetched.
    func planFill(_ manifest: UpstreamManifest, into repository: RepositoryName, from upstreamRepository: String,
                  client: UpstreamClient, known: [Digest: UpstreamManifest]) async throws -> [Digest: UpstreamManifest] {
        let plan = try await registry.planCopy(repository, root: CopyPlan.Manifest(digest: manifest.digest, mediaType: manifest.mediaType,
                                                                                   bytes: manifest.bytes),
                                               maxDepth: Self.maxDepth, maxManifests: Self.maxManifests) { child in
            let m: UpstreamManifest
            if let cached = known[child] {
                m = cached
            } else {
                m = try await Self.upstream { () async throws(UpstreamError) in
                    try await client.manifest(repository: upstreamRepository, reference: .digest(child))
                }
            }
            return CopyPlan.Manifest(digest: m.digest, mediaType: m.mediaType, bytes: m.bytes)
        }
        try await registry.checkStorable(repository, plan)
        return plan.fetched.mapValues { UpstreamManifest(digest: $0.digest, mediaType: $0.mediaType, bytes: $0.bytes) }
    }

    func hasManifest(_ repository: RepositoryName, _ digest: Digest) async -> Bool {
        (try? await registry.manifest(repository, .digest(digest))) != nil
    }

    /// Stores a manifest and everything it names (blobs, then the children of an index), by digest,
    /// or under `tag` (one push, as a client's: its event carries the tag).
    func copy(_ manifest: UpstreamManifest, into repository: RepositoryName, from upstreamRepository: String, client: UpstreamClient,
              depth: Int, budget: inout Budget, tag: String? = nil) async throws {
        guard depth <= Self.maxDepth else {
            throw RegistryError(.manifestInvalid, "upstream: indexes nested deeper than \(Self.maxDepth) levels", status: 502)
        }
        budget.manifests += 1
        guard budget.manifests <= Self.maxManifests else {
            throw RegistryError(.manifestInvalid, "upstream: an image of more than \(Self.maxManifests) manifests", status: 502)
        }
        let present = await hasManifest(repository, manifest.digest)
        if present, tag == nil { return }
        // Tagged already (a second fill of the key that started as the first one ended): no
        // second push of the same tag.
        if present, let tag, (try? await registry.resolve(repository, .tag(tag))) == manifest.digest { return }
        let parsed = try ManifestParser.parse(manifest.bytes, contentType: manifest.mediaType)
        if !present, depth == 0 {
            // The image as a whole (every child of an index) must fit under the repository's
            // quotas before its first blob is stored (a fill refused half-way kept what it had
            // stored; an index's children were checked one by one, each fitting and all of them
            // not). The sizes are the upstream's word: each blob is still checked, and verified,
            // as it arrives.
            budget.known = try await planFill(manifest, into: repository, from: upstreamRepository, client: client, known: budget.known)
        }
        if present {
            // Only the tag is new.
        } else if parsed.kind == .index {
            for child in parsed.children {
                if await hasManifest(repository, child) { continue }
                let childManifest: UpstreamManifest
                if let known = budget.known[child] {
                    childManifest = known
                } else {
                    childManifest = try await Self.upstream { () async throws(UpstreamError) in
                        try await client.manifest(repository: upstreamRepository, reference: .digest(child))
                    }
                }
                try await copy(childManifest, into: repository, from: upstreamRepository, client: client, depth: depth + 1, budget: &budget)
            }
        } else {
            let sizes = CopyPlan.blobSizes(manifest.bytes)
            var missing: [Digest] = []
            for blob in parsed.blobs where (try? await registry.blobSize(repository, blob)) == nil { missing.append(blob) }
            for blob in missing {
                // (`copyBlob` skips a blob another fill stored meanwhile)
                _ = try await fetches.value("b:\(repository)@\(blob)") {
                    try await self.copyBlob(blob, size: sizes[blob], into: repository, from: upstreamRepository, client: client)
                    return true
                }
            }
        }
        _ = try await registry.putManifest(repository, reference: tag.map { .tag($0) } ?? .digest(manifest.digest), bytes: manifest.bytes,
                                           contentType: manifest.mediaType)
    }

    /// Streams a blob from upstream into the store, hashed while read: a digest or size mismatch
    /// fails the stream before its end, so nothing is stored.
    func copyBlob(_ digest: Digest, size: Int64?, into repository: RepositoryName, from upstreamRepository: String,
                  client: UpstreamClient) async throws {
        if (try? await registry.blobSize(repository, digest)) != nil { return }
        let registry = self.registry
        do {
            _ = try await client.blob(repository: upstreamRepository, digest: digest, size: size) { stream in
                try await registry.putBlob(repository, digest: digest, contentLength: stream.size, body: stream)
            }
        } catch {
            throw Self.blobFailure(error)
        }
    }

    /// An upstream call whose failure becomes what the client is answered (502 for a broken
    /// upstream, 404 for what it does not have).
    /// How long the upstream check of a cached tag may take before the cached tag is served.
    static let recheckSeconds: Double = 5

    /// `body`'s answer, or an `unreachable` upstream error once `seconds` have passed (`body` is cancelled).
    static func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else {
                throw UpstreamError(.unreachable, "the upstream did not answer within \(seconds) s")
            }
            return value
        }
    }

    static func upstream<T>(_ body: () async throws(UpstreamError) -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw error.registryError
        }
    }

    /// Stores with the rule as the events' actor, and only while the rule's creator may still
    /// push to `repository`: a rule is created behind the management check, but what it writes
    /// is a push into its targets, so the creator's push rights there are asked at every fill (a
    /// creator disabled, deleted or stripped of Push stops the rule filling; what is cached is
    /// still served).
    func asCache<T: Sendable>(_ rule: CacheRuleRecord, into repository: RepositoryName,
                              _ body: () async throws -> T) async throws -> T {
        if let access, !Self.creatorMayPush(rule, repository, access) {
            throw RegistryError(.denied, "cache rule \(rule.name) cannot fill \(repository): its creator (\(rule.createdBy)) no longer "
                                + "exists, is disabled or may not push there; an administrator who may must re-create the rule",
                                status: 403)
        }
        return try await EventOrigin.$current.withValue(EventOrigin(actor: "cache:" + rule.name, address: "-")) {
            try await body()
        }
    }

    /// Whether the rule's creator (`identity:NAME`, `token:NAME`, `admin:REGISTRY` as the
    /// management check names actors) exists, is enabled and holds Push on `repository`.
    static func creatorMayPush(_ rule: CacheRuleRecord, _ repository: RepositoryName, _ access: AccessControl) -> Bool {
        let actor = rule.createdBy
        let subject: String
        if actor.hasPrefix("identity:") || actor.hasPrefix("token:") {
            subject = actor
        } else if actor.hasPrefix("admin:") {
            subject = "admin"
        } else {
            return false
        }
        guard let principal = access.principal(subject: subject, generation: nil) else { return false }
        return principal.actions(on: repository.value).isSuperset(of: .contentWrite)
    }
}
