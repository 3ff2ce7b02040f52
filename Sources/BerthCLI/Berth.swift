import Access
import AdmissionFeature
import ArgumentParser
import Backends
import ConsoleFeature
import ContentTrustFeature
import Foundation
import RegistryStore
import TasksFeature
import Webhooks
import WebhooksAPI
import ReplicationFeature
import HTTPAPI
import Hummingbird
import ImportFeature
import CacheFeature
import Logging
import NIOCore
import OCIModel
import RegistryCore
import ScanningFeature
import ServiceLifecycle

@main
struct Berth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth",
        abstract: "Berth: a self-hosted, security-first OCI container registry.",
        version: BerthVersion.string,
        subcommands: [
            Serve.self,
            LoginCommand.self, LogoutCommand.self,
            IdentityGroup.self, RoleGroup.self, ScopeMapGroup.self, TokenGroup.self,
            RegistryShow.self, RegistryUpdate.self, AdminCredentialGroup.self, KeysGroup.self, CertificateGroup.self,
            NetworkRuleGroup.self, AuditGroup.self, WebhookGroup.self, ReplicationGroup.self, ConfigGroup.self, ManifestGroup.self,
            SignCommand.self, VerifyCommand.self, TrustStoreGroup.self,
            RepositoryGroup.self, PurgeCommand.self, GCGroup.self, QuotaGroup.self, ShowUsage.self, EventConsumerGroup.self, LeaseGroup.self,
            RecoverGroup.self, BackupCommand.self, RestoreCommand.self,
            ScanGroup.self, SBOMGroup.self,
            TaskCommandGroup.self, RunTaskFileCommand.self, BuildImageCommand.self,
            ImportCommand.self, CacheRuleGroup.self, CredentialSetGroup.self,
        ]
    )

    static func main() async {
        await main(LockFlagArguments.normalize(Array(CommandLine.arguments.dropFirst())))
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the registry.",
        discussion: ServeSettings.helpText
    )

    @Option(help: "Data directory (env BERTH_DATA, default ./berth-data).")
    var data: String?

    @Option(help: "Address to listen on, HOST:PORT (env BERTH_LISTEN, default 127.0.0.1:5000).")
    var listen: String?

    @Option(help: "Configuration file, JSON or YAML (env BERTH_CONFIG).")
    var config: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (env BERTH_LOG_LEVEL).")
    var logLevel: String?

    @Option(help: "Log format: text or json (env BERTH_LOG_FORMAT, default text).")
    var logFormat: String?

    @Option(help: "PEM certificate (chain) to serve HTTPS with (env BERTH_TLS_CERT); needs --tls-key.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (env BERTH_TLS_KEY).")
    var tlsKey: String?

    @Option(help: "Comma-separated address ranges (CIDR) and host names that webhooks and OIDC issuers may use although they are loopback, private or link-local (env BERTH_OUTBOUND_ALLOW).")
    var outboundAllow: String?

    @Option(help: "Remove upload sessions idle for longer than this many seconds (env BERTH_UPLOAD_MAX_AGE_SECONDS, default 86400).")
    var uploadMaxAgeSeconds: Double?

    @Option(help: "How often lifecycle jobs (purge schedules, retention, recycle-bin expiry, periodic GC) are looked at, in seconds (env BERTH_LIFECYCLE_TICK_SECONDS, default 30).")
    var lifecycleTickSeconds: Double?

    @Option(help: "The metadata backend: sqlite or postgres (env BERTH_METADATA_STORE, default sqlite; postgres needs postgres-url).")
    var metadataStore: String?

    @Option(help: "The metadata backend as one URL: sqlite, sqlite:///PATH or postgres://USER@HOST:PORT/DATABASE (env BERTH_METADATA, default sqlite); no password here: postgres-password-file, or the URL in BERTH_METADATA.")
    var metadata: String?

    @Option(help: "The blob backend as one URL: filesystem, file:///PATH or s3://BUCKET[/PREFIX]?endpoint=URL&region=R (env BERTH_STORAGE, default filesystem); keys from BERTH_S3_ACCESS_KEY/BERTH_S3_SECRET_KEY or s3-credentials-file.")
    var storage: String?

    @Option(help: "Seconds SIGINT/SIGTERM waits for in-flight requests before exiting anyway; a second signal exits at once (env BERTH_SHUTDOWN_TIMEOUT, default 30).")
    var shutdownTimeout: Double?

    @Option(help: "This region's name, as peer regions see it on the changes made here (env BERTH_REGION, default default).")
    var region: String?

    @Option(help: "This region's data endpoint (http(s) base URL): upload sessions name it; blob GETs are routed to other regions only when it is set (env BERTH_DATA_ENDPOINT, default none).")
    var dataEndpoint: String?

    @Option(help: "A client network mapped to a region, CIDR=REGION (repeatable; env BERTH_CLIENT_NETWORKS, comma-separated); the longest prefix wins.")
    var clientNetwork: [String] = []

    func resolvedSettings(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServeSettings {
        let flags: [(key: String, value: String?)] = [
            ("data", data), ("listen", listen), ("log-level", logLevel), ("log-format", logFormat),
            ("tls-cert", tlsCert), ("tls-key", tlsKey), ("outbound-allow", outboundAllow),
            ("upload-max-age-seconds", uploadMaxAgeSeconds.map { String($0) }),
            ("lifecycle-tick-seconds", lifecycleTickSeconds.map { String($0) }),
            ("shutdown-timeout", shutdownTimeout.map { String($0) }),
            ("metadata-store", metadataStore),
            ("metadata", metadata), ("storage", storage), ("region", region),
            ("data-endpoint", dataEndpoint), ("client-network", clientNetwork.isEmpty ? nil : clientNetwork.joined(separator: ",")),
        ]
        return try ServeSettings.resolve(configPath: config, environment: environment,
                                         flags: flags.compactMap { f in f.value.map { (f.key, $0) } })
    }

    func run() async throws {
        try await runCLI { try await serve() }
    }

    /// Regional data endpoints (issue 13 items 4-5): the region's signing keys in the shared key
    /// material (sealed at rest), made on first use. Always on, so peers can check this region's
    /// health and verify its keys; it routes only with a data endpoint.
    static func dataRouting(_ settings: ServeSettings, _ shared: SharedKeyMaterial) -> DataRoutingConfiguration {
        var routing = DataRoutingConfiguration(dataEndpoint: settings.dataEndpoint, clientNetworks: settings.clientNetworks) { name in
            try await shared.loadOrCreate(name) { DataRoutingConfiguration.newSigningKey() }.plaintext
        }
        routing.bindClient = settings.bindClient
        routing.signingKeyNames = { try await shared.names(prefix: DataRouting.keyNamePrefix) }
        routing.removeSigningKey = { try await shared.remove($0) }
        return routing
    }

    private func serve() async throws {
        AllocatorSettings.apply()
        let settings = try resolvedSettings()
        if let threads = settings.threads {
            // Before anything starts the process's event loops or thread pool (they are made on
            // first use, and NIO refuses a change after that).
            NIOSingletons.groupLoopCountSuggestion = threads
            NIOSingletons.blockingPoolThreadCountSuggestion = threads
        }
        let (host, port) = try ServeSettings.parseListen(settings.listen)
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            BerthLogHandler(label: label, format: settings.logFormat, logLevel: level)
        }
        let outbound = try settings.outboundPolicy()
        let logger = Logger(label: "berth")
        let metrics = HTTPMetrics()
        metrics.bootstrapMetricsSystem()
        var registryConfiguration = RegistryConfiguration()
        registryConfiguration.uploadMaxAge = settings.uploadMaxAgeSeconds
        try DataDirectory.prepare(settings.data)
        // One server per data directory: the embedded backends' caches are per process.
        let dataLock = try DataDirectoryLock(directory: settings.data, purpose: "berth serve")
        // The composition root: the configuration names the backends; the core and the features
        // are handed the store protocols they need, never a backend.
        let backends: Backends
        do {
            backends = try await Backends.open(settings.backendConfiguration, logger: Logger(label: "berth.backends"))
        } catch {
            switch settings.backendConfiguration.metadata {
            case .sqlite: throw CLIError("cannot open the registry's data in \(settings.data): \(error)")
            case let metadata: throw CLIError("cannot open the metadata store (\(metadata)): \(error)")
            }
        }
        // A remote blob store that cannot be used is reported at start with its reason (readyz
        // only answers "not ready"); the server still starts, as the store may come up later.
        do { try await backends.blobs.checkHealth() } catch { logger.warning("the blob store is not usable: \(error)") }
        let registry = Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: registryConfiguration,
                                logger: Logger(label: "berth.registry"))
        // The signing keys and the webhook sealing key are shared by every node over the metadata
        // store, sealed under the key-encryption key (which never enters the store).
        let kek = try settings.keyEncryptionKey()
        let access = try await AccessControl.open(store: backends.metadata, keyDirectory: settings.data + "/keys", keyEncryptionKey: kek,
                                                  registryName: settings.registryName, jwksSource: HTTPJWKSSource(policy: outbound),
                                                  logger: Logger(label: "berth.access"))
        let environment = ProcessInfo.processInfo.environment
        if let generated = try await access.bootstrap(ownerPassword: environment["BERTH_BOOTSTRAP_OWNER_PASSWORD"]) {
            let path = settings.data + "/bootstrap-owner-password"
            FileManager.default.createFile(atPath: path, contents: Data((generated + "\n").utf8),
                                           attributes: [.posixPermissions: 0o600])
            // Shown once, on standard error (unbuffered: it reaches the operator at once, also
            // when stderr is a pipe or the journal), never in the log.
            FileHandle.standardError.write(Data(
                "Created identity 'owner' (role Owner). Password, shown once and kept in \(path) (mode 0600):\n\(generated)\n".utf8))
        }
        var limits = RegistryResponder.Limits()
        limits.maxConcurrentUploads = settings.maxConcurrentUploads
        var tls: BerthServer.TLSCertificates?
        switch (settings.tlsCert, settings.tlsKey) {
        case (let cert?, let key?):
            do {
                tls = try BerthServer.TLSCertificates(files: .init(certificatePath: cert, privateKeyPath: key))
            } catch {
                throw CLIError("cannot use the TLS certificate \(cert) with the key \(key): \(error)")
            }
        default: tls = nil   // ServeSettings.resolve refuses one without the other
        }
        let sealingKey = try await WebhookService.sharedSealingKey(SharedKeyMaterial(store: backends.metadata, kek: kek),
                                                                   importing: settings.data + "/keys")
        let webhooks = WebhookService(store: backends.metadata, events: backends.metadata, sealingKey: sealingKey,
                                      policy: outbound, logger: Logger(label: "berth.webhooks"))
        let replication = ReplicationService(
            store: backends.metadata, events: backends.metadata,
            sealingKey: try await ReplicationService.sharedSealingKey(SharedKeyMaterial(store: backends.metadata, kek: kek)),
            policy: outbound, logger: Logger(label: "berth.replication"), region: settings.region, content: backends.metadata,
            registers: backends.metadata, settings: backends.metadata)
        if let ca = settings.taskRegistryCA {
            do { try TasksConfiguration.checkRegistryCA(ca) } catch { throw CLIError("task-registry-ca: \(error)") }
        }
        var tasksConfiguration = Self.tasksConfiguration(settings, host: host, port: port, tls: tls != nil, outbound: outbound)
        Self.configureBerthSteps(&tasksConfiguration, host: host, port: port, certificateFile: tls?.files.certificatePath, logger: logger)
        // SIGHUP reloads the certificate: berth steps' endpoint is made again from its names.
        let berthStepsConfiguration = tasksConfiguration
        let refreshBerthSteps: @Sendable () -> Void = { [certificateFile = tls?.files.certificatePath] in
            let names = Self.berthStepTLS(certificateFile, logger: logger)
            if let refused = berthStepsConfiguration.refreshBerthSteps(listenHost: host, port: port, tls: names) {
                logger.warning("SIGHUP: build tasks' berth steps are off: \(refused)")
            } else {
                logger.info("SIGHUP: build tasks' berth steps use the reloaded certificate's names")
            }
        }
        tasksConfiguration.sealingKey = try await TasksFeature.sharedSealingKey(SharedKeyMaterial(store: backends.metadata, kek: kek))
        // A base that is an index is resolved to this platform's manifest (per-platform base digests).
        tasksConfiguration.manifestContent = { [registry] repository, digest in
            let content = try await registry.manifest(try RepositoryName(repository), .digest(digest))
            return (content.mediaType, Array(content.bytes.readableBytesView))
        }
        let tasks = TasksFeature(store: backends.metadata, access: access, configuration: tasksConfiguration,
                                 logger: Logger(label: "berth.tasks"), registry: backends.metadata)
        let scanning = ScanningFeature(registry: registry, store: backends.metadata,
                                       matcher: FindingMatcher(advisories: backends.metadata, store: backends.metadata),
                                       scanOnPush: settings.scanOnPush, rematchDays: settings.scanRematchDays,
                                       logger: Logger(label: "berth.scan"))
        let contentTrust = ContentTrustFeature(registry: registry)
        let console = ConsoleFeature(store: backends.metadata, seams: Self.consoleSeams(replication: replication, tasks: tasks,
                                                                                         scanning: scanning, contentTrust: contentTrust))
        let cacheService = CacheService(
            store: backends.metadata,
            sealingKey: try await CacheService.sharedSealingKey(SharedKeyMaterial(store: backends.metadata, kek: kek)),
            policy: outbound, logger: Logger(label: "berth.cache"))
        let cache = CacheFeature(service: cacheService, pullThrough: PullThrough(
            registry: registry, service: cacheService, maxBlobBytes: settings.cacheMaxBlobBytes,
            connectTimeoutSeconds: settings.cacheConnectTimeoutSeconds, negativeSeconds: Double(settings.cacheNegativeSeconds),
            access: access, logger: Logger(label: "berth.cache")))
        let applier = ReplicationApplier(registry: registry, service: replication, registers: backends.metadata, access: access,
                                         logger: Logger(label: "berth.replication"))
        // A registry token names this region, and tokens of the replicas (peer regions) verify here.
        access.tokens.setRegion(settings.region, peers: PeerTokenKeySource(applier: applier))
        let listening = ListeningFlag()
        let node = Self.leaseHolder(settings.backendConfiguration.metadata)
        let app = try await BerthServer.makeApplication(
            registry: registry, access: access,
            features: [WebhooksFeature(service: webhooks), contentTrust, AdmissionFeature(),
                       ReplicationFeature(service: replication,
                                          applier: applier,
                                          poll: .milliseconds(Int64(min(1, max(0.05, settings.lifecycleTickSeconds)) * 1000)),
                                          routing: Self.dataRouting(settings, SharedKeyMaterial(store: backends.metadata, kek: kek))),
                       tasks,
                       scanning,
                       console,
                       AdvisoryDatabaseFeature(database: AdvisoryDatabase(
                           store: backends.metadata,
                           configuration: AdvisoryDatabaseConfiguration(feeds: settings.advisoryFeeds,
                                                                        updateIntervalSeconds: settings.advisoryUpdateIntervalSeconds,
                                                                        policy: outbound),
                           logger: Logger(label: "berth.advisories"))),
                       ImportFeature(policy: outbound, store: backends.metadata, node: node), cache],
            host: host, port: port, limits: limits, publicURL: settings.publicURL,
            serviceName: settings.tokenServiceName, tls: tls,
            janitorInterval: .seconds(settings.janitorIntervalSeconds),
            lifecycleTick: .milliseconds(Int64(max(0.05, settings.lifecycleTickSeconds) * 1000)), metrics: metrics,
            leases: LeasedRunner(store: backends.metadata, holder: node,
                                 ttl: settings.leaseTTLSeconds, logger: Logger(label: "berth.leases")),
            logger: logger,
            onServerRunning: { _ in listening.set() })
        logger.info("berth starting", metadata: ["version": "\(BerthVersion.string)", "listen": "\(host):\(port)", "data": "\(settings.data)"])
        // Signals are handled here rather than by the service group: the first SIGINT/SIGTERM
        // drains, a second one (or the timeout) ends the process; SIGHUP reloads TLS files.
        // The backends' services come first: the group shuts down in reverse order, so the server
        // drains before the metadata store's connections close.
        let group = ServiceGroup(configuration: .init(services: backends.services + [app], logger: logger))
        let signals = SignalHandling(group: group, shutdownTimeout: settings.shutdownTimeoutSeconds, tls: tls, logger: logger,
                                     afterTLSReload: refreshBerthSteps)
        signals.install()
        do {
            try await group.run()
        } catch where !listening.isSet {
            throw CLIError("cannot listen on \(host):\(port): \(describeStartError(error))")
        }
        logger.info("berth stopped: in-flight requests finished")
        withExtendedLifetime(dataLock) {}
    }

    /// Build tasks: their state in the data directory, runs pushing to this server (the public
    /// URL's host, else the listen address, a wildcard one as loopback) the way
    /// `TasksConfiguration.runTransport` says. (`berth` steps: `configureBerthSteps`.)
    static func tasksConfiguration(_ settings: ServeSettings, host: String, port: Int, tls: Bool,
                                   outbound: OutboundPolicy) -> TasksConfiguration {
        var registry = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host
        registry = registry.contains(":") ? "[\(registry)]:\(port)" : "\(registry):\(port)"
        if let publicURL = settings.publicURL, let url = URL(string: publicURL), let publicHost = url.host {
            // Foundation gives an IPv6 host without its brackets; a reference needs them.
            let named = publicHost.contains(":") && !publicHost.hasPrefix("[") ? "[\(publicHost)]" : publicHost
            registry = url.port.map { "\(named):\($0)" } ?? named
        }
        let service = BerthServer.serviceName(configured: settings.tokenServiceName, publicURL: settings.publicURL,
                                              listen: (host, port))
        let transport = TasksConfiguration.runTransport(publicURL: settings.publicURL, listenerTLS: tls,
                                                        listenerCertificate: settings.tlsCert, caFile: settings.taskRegistryCA)
        var configuration = TasksConfiguration(stateDirectory: settings.data + "/tasks", registry: registry, serviceName: service,
                                               transport: transport, outbound: outbound)
        configuration.commitPollInterval = .seconds(settings.taskCommitPollSeconds)
        configuration.externalBasePollInterval = .seconds(settings.taskBasePollSeconds)
        configuration.runDiskQuotaBytes = settings.taskRunDiskQuotaBytes == 0 ? nil : settings.taskRunDiskQuotaBytes
        configuration.runner.buildMemoryLimitBytes = settings.taskBuildMemoryBytes == 0 ? nil : settings.taskBuildMemoryBytes
        configuration.insecureBaseRegistries = settings.taskInsecureBaseRegistries
        // The build sandbox never shows the data directory (its database, keys and blobs), nor
        // the files of secrets and content configured elsewhere, even where they lie under a
        // directory the sandbox shows.
        let database = settings.sqlitePath.map { [$0, $0 + "-wal", $0 + "-shm", $0 + "-journal"] } ?? []
        configuration.runner.hiddenDirectories = ([settings.data, settings.filesystemRoot, settings.keyFile, settings.tlsKey,
                                                   settings.postgresPasswordFile, settings.s3CredentialsFile] + database as [String?])
            .compactMap { $0.map { URL(fileURLWithPath: $0).standardizedFileURL.path } }
        configuration.baseTriggerWindow = settings.taskBaseTriggerWindowSeconds
        configuration.maxContextBytes = settings.taskContextMaxBytes
        configuration.maxContextEntries = settings.taskContextMaxEntries
        configuration.maxContextUnpackedBytes = settings.taskContextMaxUnpackedBytes
        return configuration
    }

    /// A task's `berth` steps run this binary (never a shell) against this server's own listener
    /// (`BerthStepEndpoint`: never the public URL, which may name a proxy). The binary is
    /// `/proc/self/exe` itself where it exists: executed by the child, the kernel resolves it to
    /// the image this server runs, also after an upgrade replaced or deleted the file (its link
    /// target then names a deleted file); elsewhere the path this process was started by.
    static func configureBerthSteps(_ configuration: inout TasksConfiguration, host: String, port: Int, certificateFile: String?,
                                    logger: Logger) {
        let executable = FileManager.default.isExecutableFile(atPath: "/proc/self/exe") ? "/proc/self/exe"
            : CommandLine.arguments.first.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let tls = berthStepTLS(certificateFile, logger: logger)
        if let refused = configuration.runBerthSteps(executable: executable, listenHost: host, port: port, tls: tls) {
            logger.warning("build tasks' berth steps are off: \(refused)")
        }
    }

    /// The certificate file and the names it holds now (none when it cannot be read: logged).
    static func berthStepTLS(_ certificateFile: String?, logger: Logger) -> (certificateFile: String, names: [String])? {
        guard let certificateFile else { return nil }
        do {
            return (certificateFile, try CertificateNames.leafNames(pem: String(contentsOfFile: certificateFile, encoding: .utf8)))
        } catch {
            logger.warning("cannot read the names of the TLS certificate \(certificateFile): \(error)")
            return (certificateFile, [])
        }
    }

    /// This node's name in the background-work leases. The embedded store has one server (the data
    /// directory lock), so a restarted one takes its leases back at once; on a shared database each
    /// process is its own holder, and a node that died is taken over after the lease's time to live.
    static func leaseHolder(_ metadata: BackendConfiguration.Metadata) -> String {
        switch metadata {
        case .sqlite: "local"
        default: "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(UUID().uuidString.prefix(8))"
        }
    }

    private func describeStartError(_ error: any Error) -> String {
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        return "\(error)"
    }
}
