import Access
import Hummingbird
import Logging
import RegistryCore
import ServiceLifecycle

/// Assembles the HTTP application: the responder, its metrics, and the background janitor.
public enum BerthServer {
    public static func makeApplication(registry: Registry, access: AccessControl?, host: String, port: Int,
                                       limits: RegistryResponder.Limits = .init(),
                                       publicURL: String? = nil,
                                       janitorInterval: Duration = .seconds(600),
                                       logger: Logger) -> some ApplicationProtocol {
        let responder = makeResponder(registry: registry, access: access, limits: limits, publicURL: publicURL, logger: logger)
        return Application(
            responder: responder,
            server: .http1(configuration: .init(additionalChannelHandlers: [ExpectContinueHandler()])),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            services: [UploadJanitor(registry: registry, interval: janitorInterval, logger: logger)],
            logger: logger
        )
    }

    public static func makeResponder(registry: Registry, access: AccessControl?, limits: RegistryResponder.Limits = .init(),
                                     publicURL: String? = nil, logger: Logger) -> RegistryResponder {
        var accessLog = logger
        accessLog[metadataKey: "component"] = "access"
        return RegistryResponder(registry: registry, metrics: HTTPMetrics(), accessLog: accessLog, limits: limits,
                                 access: access, publicURL: publicURL)
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
