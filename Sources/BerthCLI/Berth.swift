import Access
import ArgumentParser
import Foundation
import RegistryStore
import Webhooks
import HTTPAPI
import Hummingbird
import Logging
import NIOCore
import RegistryCore
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
            NetworkRuleGroup.self, AuditGroup.self, WebhookGroup.self, ConfigGroup.self, ManifestGroup.self,
            SignCommand.self, VerifyCommand.self, TrustStoreGroup.self,
            RepositoryGroup.self, PurgeCommand.self, GCGroup.self, QuotaGroup.self, ShowUsage.self,
            BackupCommand.self, RestoreCommand.self,
        ]
    )

    static func main() async {
        await main(LockFlagArguments.normalize(Array(CommandLine.arguments.dropFirst())))
    }
}

/// Settings of `berth serve`. Precedence: command-line flag, then environment variable
/// (`BERTH_DATA`, `BERTH_LISTEN`, ...), then the `--config` file, then the default.
struct ServeSettings: Codable, Equatable {
    var data: String = "./berth-data"
    var listen: String = "127.0.0.1:5000"
    var logLevel: String = "info"
    var uploadMaxAgeSeconds: Double = 24 * 3600
    var janitorIntervalSeconds: Double = 600
    var lifecycleTickSeconds: Double = 30
    var maxConcurrentUploads: Int = 512
    /// How long SIGINT/SIGTERM waits for in-flight requests before the process exits anyway.
    var shutdownTimeoutSeconds: Double = 30
    /// The admin user's name (the registry's name).
    var registryName: String = "berth"
    /// External URL clients use, when Berth sits behind a proxy (for the token realm).
    var publicURL: String?
    /// PEM certificate (chain) and private key: serve HTTPS.
    var tlsCert: String?
    var tlsKey: String?

    enum CodingKeys: String, CodingKey {
        case data, listen
        case registryName = "registry-name"
        case publicURL = "public-url"
        case tlsCert = "tls-cert"
        case tlsKey = "tls-key"
        case logLevel = "log-level"
        case uploadMaxAgeSeconds = "upload-max-age-seconds"
        case janitorIntervalSeconds = "janitor-interval-seconds"
        case lifecycleTickSeconds = "lifecycle-tick-seconds"
        case maxConcurrentUploads = "max-concurrent-uploads"
        case shutdownTimeoutSeconds = "shutdown-timeout"
    }

    init() {}

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ServeSettings()
        data = try c.decodeIfPresent(String.self, forKey: .data) ?? d.data
        listen = try c.decodeIfPresent(String.self, forKey: .listen) ?? d.listen
        logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? d.logLevel
        uploadMaxAgeSeconds = try c.decodeIfPresent(Double.self, forKey: .uploadMaxAgeSeconds) ?? d.uploadMaxAgeSeconds
        janitorIntervalSeconds = try c.decodeIfPresent(Double.self, forKey: .janitorIntervalSeconds) ?? d.janitorIntervalSeconds
        lifecycleTickSeconds = try c.decodeIfPresent(Double.self, forKey: .lifecycleTickSeconds) ?? d.lifecycleTickSeconds
        maxConcurrentUploads = try c.decodeIfPresent(Int.self, forKey: .maxConcurrentUploads) ?? d.maxConcurrentUploads
        shutdownTimeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .shutdownTimeoutSeconds) ?? d.shutdownTimeoutSeconds
        registryName = try c.decodeIfPresent(String.self, forKey: .registryName) ?? d.registryName
        publicURL = try c.decodeIfPresent(String.self, forKey: .publicURL)
        tlsCert = try c.decodeIfPresent(String.self, forKey: .tlsCert)
        tlsKey = try c.decodeIfPresent(String.self, forKey: .tlsKey)
    }

    /// Parses `host:port` (`[v6]:port` for IPv6).
    static func parseListen(_ value: String) throws -> (host: String, port: Int) {
        guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
              (0...65535).contains(port)
        else { throw ValidationError("--listen must be HOST:PORT, got \(value)") }
        var host = String(value[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ValidationError("--listen must name a host, e.g. 127.0.0.1:5000") }
        return (host, port)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the registry.",
        discussion: "Settings come from flags, then BERTH_* environment variables, then --config (JSON), then defaults."
    )

    @Option(help: "Data directory (env BERTH_DATA, default ./berth-data).")
    var data: String?

    @Option(help: "Address to listen on, HOST:PORT (env BERTH_LISTEN, default 127.0.0.1:5000).")
    var listen: String?

    @Option(help: "JSON configuration file (env BERTH_CONFIG).")
    var config: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (env BERTH_LOG_LEVEL).")
    var logLevel: String?

    @Option(help: "PEM certificate (chain) to serve HTTPS with (env BERTH_TLS_CERT); needs --tls-key.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert (env BERTH_TLS_KEY).")
    var tlsKey: String?

    @Option(help: "Remove upload sessions idle for longer than this many seconds (env BERTH_UPLOAD_MAX_AGE_SECONDS, default 86400).")
    var uploadMaxAgeSeconds: Double?

    @Option(help: "How often lifecycle jobs (purge schedules, retention, recycle-bin expiry, periodic GC) are looked at, in seconds (env BERTH_LIFECYCLE_TICK_SECONDS, default 30).")
    var lifecycleTickSeconds: Double?

    @Option(help: "Seconds SIGINT/SIGTERM waits for in-flight requests before exiting anyway; a second signal exits at once (env BERTH_SHUTDOWN_TIMEOUT, default 30).")
    var shutdownTimeout: Double?

    func resolvedSettings(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServeSettings {
        var settings = ServeSettings()
        if let path = config ?? environment["BERTH_CONFIG"] {
            guard let contents = FileManager.default.contents(atPath: path) else {
                throw ValidationError("cannot read config file \(path)")
            }
            do {
                settings = try JSONDecoder().decode(ServeSettings.self, from: contents)
            } catch {
                throw ValidationError("config file \(path) is not valid: \(error)")
            }
        }
        if let v = environment["BERTH_DATA"] { settings.data = v }
        if let v = environment["BERTH_LISTEN"] { settings.listen = v }
        if let v = environment["BERTH_LOG_LEVEL"] { settings.logLevel = v }
        if let v = environment["BERTH_UPLOAD_MAX_AGE_SECONDS"], let d = Double(v) { settings.uploadMaxAgeSeconds = d }
        if let v = environment["BERTH_JANITOR_INTERVAL_SECONDS"], let d = Double(v) { settings.janitorIntervalSeconds = d }
        if let v = environment["BERTH_LIFECYCLE_TICK_SECONDS"], let d = Double(v) { settings.lifecycleTickSeconds = d }
        if let v = environment["BERTH_MAX_CONCURRENT_UPLOADS"], let n = Int(v) { settings.maxConcurrentUploads = n }
        if let v = environment["BERTH_REGISTRY_NAME"] { settings.registryName = v }
        if let v = environment["BERTH_PUBLIC_URL"] { settings.publicURL = v }
        if let v = environment["BERTH_TLS_CERT"] { settings.tlsCert = v }
        if let v = environment["BERTH_TLS_KEY"] { settings.tlsKey = v }
        if let v = environment["BERTH_SHUTDOWN_TIMEOUT"] {
            guard let d = Double(v) else { throw ValidationError("BERTH_SHUTDOWN_TIMEOUT must be a number of seconds, got \(v)") }
            settings.shutdownTimeoutSeconds = d
        }
        if let tlsCert { settings.tlsCert = tlsCert }
        if let tlsKey { settings.tlsKey = tlsKey }
        if let data { settings.data = data }
        if let listen { settings.listen = listen }
        if let logLevel { settings.logLevel = logLevel }
        if let uploadMaxAgeSeconds { settings.uploadMaxAgeSeconds = uploadMaxAgeSeconds }
        if let lifecycleTickSeconds { settings.lifecycleTickSeconds = lifecycleTickSeconds }
        if let shutdownTimeout { settings.shutdownTimeoutSeconds = shutdownTimeout }
        guard settings.shutdownTimeoutSeconds > 0, settings.shutdownTimeoutSeconds <= 86400 else {
            throw ValidationError("the shutdown timeout must be between 0 and 86400 seconds, got \(settings.shutdownTimeoutSeconds)")
        }
        return settings
    }

    func run() async throws {
        try await runCLI { try await serve() }
    }

    private func serve() async throws {
        let settings = try resolvedSettings()
        let (host, port) = try ServeSettings.parseListen(settings.listen)
        guard let level = Logger.Level(rawValue: settings.logLevel) else {
            throw ValidationError("unknown log level \(settings.logLevel)")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "berth")
        try DataDirectory.prepare(settings.data)
        var registryConfiguration = RegistryConfiguration()
        registryConfiguration.uploadMaxAge = settings.uploadMaxAgeSeconds
        let registry: Registry
        do {
            registry = try Registry.embedded(dataDirectory: settings.data, configuration: registryConfiguration,
                                             logger: Logger(label: "berth.registry"))
        } catch {
            throw CLIError("cannot open the registry's data in \(settings.data): \(error)")
        }
        guard let accessStore = registry.metadata as? any AccessStateStore else {
            throw ValidationError("the metadata store cannot keep access-control state")
        }
        let access = try await AccessControl.open(store: accessStore, keyDirectory: settings.data + "/keys",
                                                  registryName: settings.registryName, logger: Logger(label: "berth.access"))
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
        case (nil, nil): tls = nil
        default: throw ValidationError("--tls-cert and --tls-key go together")
        }
        guard let webhookStore = registry.metadata as? any WebhookStore else {
            throw ValidationError("the metadata store cannot keep webhooks")
        }
        let webhooks = try WebhookService(store: webhookStore, events: registry.metadata, keyDirectory: settings.data + "/keys",
                                          logger: Logger(label: "berth.webhooks"))
        let listening = ListeningFlag()
        let app = try BerthServer.makeApplication(
            registry: registry, access: access, webhooks: webhooks, host: host, port: port, limits: limits, publicURL: settings.publicURL, tls: tls,
            janitorInterval: .seconds(settings.janitorIntervalSeconds),
            lifecycleTick: .milliseconds(Int64(max(0.05, settings.lifecycleTickSeconds) * 1000)), logger: logger,
            onServerRunning: { _ in listening.set() })
        logger.info("berth starting", metadata: ["version": "\(BerthVersion.string)", "listen": "\(host):\(port)", "data": "\(settings.data)"])
        // Signals are handled here rather than by the service group: the first SIGINT/SIGTERM
        // drains, a second one (or the timeout) ends the process; SIGHUP reloads TLS files.
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let signals = SignalHandling(group: group, shutdownTimeout: settings.shutdownTimeoutSeconds, tls: tls, logger: logger)
        signals.install()
        do {
            try await group.run()
        } catch where !listening.isSet {
            throw CLIError("cannot listen on \(host):\(port): \(describeStartError(error))")
        }
        logger.info("berth stopped: in-flight requests finished")
    }

    private func describeStartError(_ error: any Error) -> String {
        if let e = error as? IOError { return String(cString: strerror(e.errnoCode)) }
        return "\(error)"
    }
}
