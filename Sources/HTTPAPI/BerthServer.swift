import Foundation
import Access
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import RegistryCore
import ServiceLifecycle
import Webhooks

/// Assembles the HTTP application: the responder, its metrics, and the background janitor.
public enum BerthServer {
    public static func makeApplication(registry: Registry, access: AccessControl?, webhooks: WebhookService? = nil,
                                       host: String, port: Int,
                                       limits: RegistryResponder.Limits = .init(),
                                       publicURL: String? = nil,
                                       tls: TLSFiles? = nil,
                                       janitorInterval: Duration = .seconds(600),
                                       lifecycleTick: Duration = .seconds(30),
                                       logger: Logger) throws -> some ApplicationProtocol {
        let responder = makeResponder(registry: registry, access: access, webhooks: webhooks, limits: limits,
                                      publicURL: publicURL, tls: tls != nil, logger: logger)
        // Idle connections (between requests, or a request whose bytes stopped coming: slowloris)
        // are closed after two minutes; a response being written is never cut off.
        let http1Configuration = HTTP1Channel.Configuration(additionalChannelHandlers: [ExpectContinueHandler()],
                                                            idleTimeout: .seconds(120))
        let http1 = HTTPServerBuilder.http1Sendfile(configuration: http1Configuration, sendfile: false)
        var server = HTTPServerBuilder.http1Sendfile(configuration: http1Configuration)
        if let tls {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.privateKeyPath, format: .pem)
            var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            server = try .tls(http1, tlsConfiguration: configuration)
        }
        return Application(
            responder: responder,
            server: server,
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            services: [LifecycleService(registry: registry, janitorInterval: janitorInterval, tick: lifecycleTick, logger: logger)]
                + (webhooks.map { [WebhookDispatcher(service: $0)] } ?? []),
            logger: logger
        )
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

    public static func makeResponder(registry: Registry, access: AccessControl?, webhooks: WebhookService? = nil,
                                     limits: RegistryResponder.Limits = .init(),
                                     publicURL: String? = nil, tls: Bool = false, logger: Logger) -> RegistryResponder {
        var accessLog = logger
        accessLog[metadataKey: "component"] = "access"
        return RegistryResponder(registry: registry, metrics: HTTPMetrics(), accessLog: accessLog, limits: limits,
                                 access: access, webhooks: webhooks, publicURL: publicURL, tls: tls)
    }
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
        var lastCollection = (try? registry.runs(kind: "gc", name: nil, limit: 1).first?.startedAt) ?? Date()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if lastJanitor.map({ clock.now - $0 >= janitorInterval }) ?? true {
                lastJanitor = clock.now
                await step("upload janitor") { try await registry.removeStaleUploads() }
            }
            await step("purge schedules") { try await registry.runDueSchedules() }
            await step("retention") { try await registry.runRetention() }
            await step("recycle bin expiry") { try await registry.expireSoftDeleted() }
            if let policy = try? registry.garbageCollectionPolicy(), policy.enabled,
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
            logger.warning("\(name) failed", metadata: ["error": "\(error)"])
        }
    }
}
