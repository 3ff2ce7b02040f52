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
                                       logger: Logger) throws -> some ApplicationProtocol {
        let responder = makeResponder(registry: registry, access: access, webhooks: webhooks, limits: limits,
                                      publicURL: publicURL, tls: tls != nil, logger: logger)
        // Idle connections (between requests, or a request whose bytes stopped coming: slowloris)
        // are closed after two minutes; a response being written is never cut off.
        let http1 = HTTPServerBuilder.http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler()],
                                                                 idleTimeout: .seconds(120)))
        var server = http1
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
            services: [UploadJanitor(registry: registry, interval: janitorInterval, logger: logger)]
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

/// Removes abandoned upload sessions periodically; stops with the server.
struct UploadJanitor: Service {
    let registry: Registry
    let interval: Duration
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await registry.removeStaleUploads()
            } catch {
                logger.warning("upload janitor failed", metadata: ["error": "\(error)"])
            }
            try? await gracefulShutdown(for: interval)
            _ = ()
        }
    }

    private func gracefulShutdown(for duration: Duration) async throws {
        try await cancelWhenGracefulShutdown {
            try await Task.sleep(for: duration)
        }
    }
}
