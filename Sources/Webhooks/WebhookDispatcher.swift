import Foundation
import Logging
import NIOConcurrencyHelpers
import RegistryCore
import ServiceLifecycle

/// Runs with the server: every webhook with work gets its own task, so a slow or failing
/// receiver never holds up another webhook, and nothing holds up a push.
public struct WebhookDispatcher: Service, EventConsumerHost {
    let service: WebhookService
    let interval: Duration

    /// One consumer per webhook, `webhook:<name>`.
    public var consumerNames: [String] { [WebhookConsumer.name("") + "*"] }

    public init(service: WebhookService, interval: Duration = .milliseconds(250)) {
        self.service = service
        self.interval = interval
    }

    public func run() async throws {
        let running = NIOLockedValueBox<Set<String>>([])
        await withTaskGroup(of: Void.self) { group in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                let names = await ((try? service.store.webhooks()) ?? []).filter(\.enabled).map(\.name)
                for name in names {
                    let start = running.withLockedValue { $0.insert(name).inserted }
                    guard start else { continue }
                    group.addTask {
                        defer { running.withLockedValue { _ = $0.remove(name) } }
                        do {
                            try await service.drain(name)
                        } catch is CancellationError {
                            // shutting down
                        } catch {
                            service.logger.warning("webhook dispatch failed", metadata: ["webhook": "\(name)", "error": "\(error)"])
                        }
                    }
                }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            }
            group.cancelAll()
        }
    }
}
