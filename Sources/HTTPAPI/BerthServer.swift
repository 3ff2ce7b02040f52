import Foundation
import Access
import Admission
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import NIOConcurrencyHelpers
import NIOCore
import RegistryCore
import RegistryStore
import ServiceLifecycle

/// Assembles the HTTP application: the responder, its metrics, the background janitor, and the
/// features the composition root hands in (their routes and services).
public enum BerthServer {
    /// Throws `MissingPullCheck` when a stored policy that a feature enforces (content trust) is
    /// switched on and `features` leave that feature out.
    public static func makeApplication(registry: Registry, access: AccessControl?, features: [any RegistryFeature] = [],
                                       host: String, port: Int,
                                       limits: RegistryResponder.Limits = .init(),
                                       publicURL: String? = nil,
                                       serviceName: String? = nil,
                                       tls: TLSCertificates? = nil,
                                       janitorInterval: Duration = .seconds(600),
                                       lifecycleTick: Duration = .seconds(30),
                                       pullTimeFlushInterval: Duration = .seconds(3),
                                       metrics: HTTPMetrics = HTTPMetrics(),
                                       leases: LeasedRunner? = nil,
                                       logger: Logger,
                                       onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in })
        async throws -> some ApplicationProtocol {
        try await PullAdmission.requireEnforcement(registry, checks: features.compactMap(\.pullCheck))
        // The token service's name is configured (or the public URL's host, or the listen address),
        // never a request's Host header: it is the audience every token is checked against.
        let service = AuthGate.serviceName(configured: serviceName, publicURL: publicURL, listen: (host, port))
        // Work that runs once across the cluster, each under its lease (`clusterOnce`).
        let leased: [(lease: String, service: any Service)] = [
            ("lifecycle", LifecycleService(registry: registry, janitorInterval: janitorInterval, tick: lifecycleTick, logger: logger)),
        ] + eventConsumers(registry: registry, poll: lifecycleTick, logger: logger).map { ("consumer:\($0.runner.consumer.name)", $0) }
          + features.flatMap(\.services).map { ("service:\(type(of: $0))", $0) }
        let responder = makeResponder(registry: registry, access: access, features: features, limits: limits,
                                      publicURL: publicURL, serviceName: service, tls: tls != nil, metrics: metrics,
                                      leases: leases?.store, consumerLeases: leases == nil ? [] : consumerLeases(leased), logger: logger)
        // Idle connections (between requests, or a request whose bytes stopped coming: slowloris)
        // are closed after two minutes; a response being written is never cut off.
        let http1Configuration = HTTP1Channel.Configuration(additionalChannelHandlers: [ExpectContinueHandler()],
                                                            idleTimeout: .seconds(120))
        let http1 = HTTPServerBuilder.http1Sendfile(configuration: http1Configuration, sendfile: false)
        var server = HTTPServerBuilder.http1Sendfile(configuration: http1Configuration)
        if let tls {
            server = try .tls(http1, tlsConfiguration: tls.serverConfiguration())
        }
        return Application(
            responder: responder,
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            services: clusterOnce(leases, leased)
                // Per process by nature: every node keeps its own caches true.
                + [CacheInvalidationService(registry: registry, access: access, logger: logger),
                   PullTimeFlushService(registry: registry, interval: pullTimeFlushInterval, logger: logger)]
                + features.flatMap(\.nodeServices),
            onServerRunning: onServerRunning,
            logger: logger
        )
    }

    /// The token service's name (the audience of every token) the application made with these
    /// arguments uses: for features that mint tokens outside a request (build tasks' run identities).
    public static func serviceName(configured: String?, publicURL: String?, listen: (host: String, port: Int)) -> String {
        AuthGate.serviceName(configured: configured, publicURL: publicURL, listen: listen)
    }

    /// Background work that must run once across the cluster, each under its lease when there
    /// are leases (a server of its own, as in tests, runs it directly).
    static func clusterOnce(_ leases: LeasedRunner?, _ services: [(lease: String, service: any Service)]) -> [any Service] {
        guard let leases else { return services.map(\.service) }
        return services.map { LeasedService(lease: $0.lease, service: $0.service, runner: leases) }
    }

    /// Which lease each event consumer runs under: that of the service that runs it.
    static func consumerLeases(_ leased: [(lease: String, service: any Service)]) -> [ConsumerLease] {
        leased.compactMap { work in (work.service as? any EventConsumerHost).map { ConsumerLease(host: $0, lease: work.lease) } }
    }

    /// The event consumers this server runs, each from its durable cursor.
    static func eventConsumers(registry: Registry, poll: Duration, logger: Logger) -> [EventConsumerService] {
        [EventConsumerService(runner: EventConsumerRunner(consumer: RetentionConsumer(registry: registry), store: registry.metadata,
                                                                 logger: logger), poll: poll)]
    }

    /// PEM files of the server certificate (chain) and its private key.
    public struct TLSFiles: Sendable {
        public var certificatePath: String
        public var privateKeyPath: String
        public init(certificatePath: String, privateKeyPath: String) {
            self.certificatePath = certificatePath
            self.privateKeyPath = privateKeyPath
        }
    }

    /// Whether a configured service name can be used: it is quoted in `WWW-Authenticate` challenges.
    public static func isValidServiceName(_ name: String) -> Bool { AuthGate.validServiceName(name) }

    /// The server's certificate chain and key, read from `TLSFiles` and read again by `reload()`
    /// (on SIGHUP): each new TLS handshake uses what was loaded last; connections already open
    /// keep theirs.
    public final class TLSCertificates: Sendable {
        public let files: TLSFiles
        private let current: NIOLockedValueBox<(chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKey)>

        public init(files: TLSFiles) throws {
            self.files = files
            current = NIOLockedValueBox(try Self.load(files))
        }

        /// Reads the files again. When they cannot be read, or the key does not belong to the
        /// certificate, it throws and the previous certificate stays in use.
        public func reload() throws {
            let loaded = try Self.load(files)
            current.withLockedValue { $0 = loaded }
        }

        private static func load(_ files: TLSFiles) throws -> (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKey) {
            let chain = try NIOSSLCertificate.fromPEMFile(files.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            guard !chain.isEmpty else { throw TLSFileError(message: "no certificate in \(files.certificatePath)") }
            let key = try NIOSSLPrivateKey(file: files.privateKeyPath, format: .pem)
            // A context is only made when the key matches the leaf certificate.
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
            return (chain, key)
        }

        func serverConfiguration() -> TLSConfiguration {
            let (chain, key) = current.withLockedValue { $0 }
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            configuration.sslContextCallback = { [current] _, promise in
                let (chain, key) = current.withLockedValue { $0 }
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = chain
                override.privateKey = .privateKey(key)
                promise.succeed(override)
            }
            return configuration
        }
    }

    struct TLSFileError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    public static func makeResponder(registry: Registry, access: AccessControl?, features: [any RegistryFeature] = [],
                                     limits: RegistryResponder.Limits = .init(),
                                     publicURL: String? = nil, serviceName: String? = nil, tls: Bool = false,
                                     metrics: HTTPMetrics = HTTPMetrics(), leases: (any LeaseStore)? = nil,
                                     consumerLeases: [ConsumerLease] = [], logger: Logger) -> RegistryResponder {
        var accessLog = logger
        accessLog[metadataKey: "component"] = "access"
        return RegistryResponder(registry: registry, metrics: metrics, accessLog: accessLog, limits: limits,
                                 access: access, features: features, publicURL: publicURL, tls: tls, serviceName: serviceName,
                                 leases: leases, consumerLeases: consumerLeases)
    }
}

/// The lease a service that runs event consumers runs under.
public struct ConsumerLease: Sendable {
    let host: any EventConsumerHost
    let lease: String
}

/// The background lifecycle jobs; stops with the server. Every tick it runs the purge schedules
/// that are due, a retention pass (when enabled), expiry of the recycle bin and, when its interval
/// has passed, garbage collection; abandoned uploads are removed every janitor interval.
struct LifecycleService: Service {
    let registry: Registry
    let janitorInterval: Duration
    let tick: Duration
    let logger: Logger

    func run() async throws {
        let clock = ContinuousClock()
        var lastJanitor: ContinuousClock.Instant?
        var lastCollection = await (try? registry.runs(kind: "gc", name: nil, limit: 1).first?.startedAt) ?? Date()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if lastJanitor.map({ clock.now - $0 >= janitorInterval }) ?? true {
                lastJanitor = clock.now
                await step("upload janitor") { try await registry.removeStaleUploads() }
            }
            await step("purge schedules") { try await registry.runDueSchedules() }
            await step("retention") { try await registry.runRetention() }
            await step("recycle bin expiry") { try await registry.expireSoftDeleted() }
            if let policy = try? await registry.garbageCollectionPolicy(), policy.enabled,
               Date().timeIntervalSince(lastCollection) >= policy.intervalSeconds {
                lastCollection = Date()
                await step("garbage collection") { _ = try await registry.collectGarbage(dryRun: false) }
            }
            try? await cancelWhenGracefulShutdown {
                try await Task.sleep(for: tick)
            }
        }
    }

    private func step(_ name: String, _ body: () async throws -> Void) async {
        do {
            try await body()
        } catch {
            LifecycleMetrics.jobFailed(name)
            logger.warning("\(name) failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Keeps this process's caches true to what other processes write: every tick applies the new
/// events (`CacheInvalidationConsumer`, its cursor in memory: per process, gone at exit) and
/// checks the access state's version.
struct CacheInvalidationService: Service {
    let runner: EventConsumerRunner
    let cursors: ProcessLocalCursors
    let registry: Registry
    let access: AccessControl?
    let poll: Duration
    let logger: Logger

    /// `log` is the registry's event log unless a test hands another.
    init(registry: Registry, access: AccessControl?, log: (any EventLogStore)? = nil, poll: Duration = .milliseconds(250),
         logger: Logger) {
        let consumer = CacheInvalidationConsumer(registry: registry)
        self.cursors = ProcessLocalCursors(log: log ?? registry.metadata)
        self.runner = EventConsumerRunner(consumer: consumer, store: cursors, batchSize: 100,
                                          backoffBase: 0.25, backoffMax: 5, logger: logger)
        self.registry = registry
        self.access = access
        self.poll = poll
        self.logger = logger
    }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await tick()
                try? await Task.sleep(for: poll)
            }
        }
    }

    /// Applies every event there is now and checks the access state once.
    func tick() async {
        // First and on its own: a feed that cannot be read must not also stop access changes.
        do {
            try await access?.refreshIfChanged()
        } catch {
            logger.warning("could not check the stored access state", metadata: ["error": "\(error)"])
        }
        do {
            // Where the log ends, read after `started`: every change committed before `started`
            // is at or before it (sequences commit in order). Reaching it means the caches heard
            // of all of them, which lets them trust what they hold longer (`FeedWatch`).
            let started = registry.configuration.cacheClock()
            let end = try await cursors.latestEventSequence()
            while case .advanced = try await runner.step() {}
            if let cursor = try await cursors.eventConsumer(named: runner.consumer.name)?.cursor, cursor >= end {
                registry.feedCaughtUp(asOf: started)
            }
        } catch {
            logger.warning("cache invalidation failed", metadata: ["error": "\(error)"])
        }
    }
}

/// Writes the pulls this node served to the store, in one call every `interval` and once more
/// when the server stops. Per node: each writes its own (the store keeps the latest time).
/// A write that fails keeps its pulls for the next one (`Registry.flushPullTimes`). A batch gives
/// way to a deletion that holds its rows (PostgreSQL), which a long purge can do for many flushes
/// in a row: the first failure is a warning, the ones after it at most one a minute, and the
/// recovery is said once. The last flush, when the server stops, is tried `finalAttempts` times
/// (a batch that gave way then would lose the node's pending pulls).
struct PullTimeFlushService: Service {
    let registry: Registry
    let interval: Duration
    let logger: Logger
    var finalAttempts = 3
    var finalRetryDelay: Duration = .milliseconds(500)

    /// Consecutive failed flushes, and when the last warning about them was logged.
    final class FailureLog: Sendable {
        private struct State {
            var failures = 0
            var warnedAt: ContinuousClock.Instant?
        }
        private let state = NIOLockedValueBox(State())
        static let warningInterval: Duration = .seconds(60)

        /// Whether this failure is to be logged as a warning (the first, then one a minute).
        func failed(now: ContinuousClock.Instant = .now) -> (warn: Bool, failures: Int) {
            state.withLockedValue { s in
                s.failures += 1
                if let at = s.warnedAt, now - at < Self.warningInterval { return (false, s.failures) }
                s.warnedAt = now
                return (true, s.failures)
            }
        }

        /// A flush succeeded: how many failed before it (0: nothing to say).
        func succeeded() -> Int {
            state.withLockedValue { s in
                defer { s = State() }
                return s.failures
            }
        }
    }

    let failures = FailureLog()

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                try? await Task.sleep(for: interval)
                _ = await flush()
            }
        }
        if await !Self.retrying(attempts: finalAttempts, delay: finalRetryDelay, { await flush() }) {
            // Said whatever the rate limit above: these pulls are gone with the process.
            logger.warning("could not record pull times before stopping: this node's pending pulls are lost",
                           metadata: ["pending": "\(registry.pullTimes.pendingCount)"])
        }
    }

    /// Runs `attempt` until it succeeds, at most `attempts` times, waiting `delay` × n after the
    /// n-th failure; whether it succeeded.
    @discardableResult
    static func retrying(attempts: Int, delay: Duration, _ attempt: () async -> Bool) async -> Bool {
        for n in 1...max(1, attempts) {
            if await attempt() { return true }
            if n < attempts { try? await Task.sleep(for: delay * n) }
        }
        return false
    }

    /// One flush; whether it wrote (or had nothing to write).
    @discardableResult
    func flush() async -> Bool {
        do {
            try await registry.flushPullTimes()
            let failed = failures.succeeded()
            if failed > 0 { logger.notice("pull times recorded again", metadata: ["failed_flushes": "\(failed)"]) }
            return true
        } catch {
            let (warn, count) = failures.failed()
            if warn {
                logger.warning("could not record pull times (kept for the next flush)",
                               metadata: ["error": "\(error)", "failed_flushes": "\(count)"])
            } else {
                logger.debug("could not record pull times", metadata: ["error": "\(error)", "failed_flushes": "\(count)"])
            }
            return false
        }
    }
}

/// Runs one event consumer until the server stops.
struct EventConsumerService: Service, EventConsumerHost {
    let runner: EventConsumerRunner
    let poll: Duration

    var consumerNames: [String] { [runner.consumer.name] }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await runner.run(poll: poll, isStopping: { Task.isShuttingDownGracefully })
        }
    }
}

/// Runs a service only while this node holds its lease (`LeasedRunner`): cancelled when the lease
/// is lost, started again when it is acquired again, the lease released when the server stops.
struct LeasedService: Service {
    let lease: String
    let service: any Service
    let runner: LeasedRunner

    func run() async throws {
        await runner.run(lease: lease, isStopping: { Task.isShuttingDownGracefully },
                         pause: { duration in try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) } },
                         job: { [service] in try await service.run() })
    }
}
