import Foundation
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import Scanning
import ServiceLifecycle

/// Scan on push: an event consumer of the runner (durable cursor, at least once, retries with
/// backoff) that inventories every pushed manifest. Run as the feature's service, so under a lease
/// (`service:ScanService`) only one node of a cluster runs it. Events are handled one after another;
/// one that fails stops the batch there (`EventBatchStopped`) and is retried first; after
/// `maxAttempts` tries it is recorded as a failed scan and the consumer goes on, so no image
/// holds up the queue.
public struct ScanConsumer: EventConsumer {
    public static let name = "scan:inventory"
    public var name: String { Self.name }
    /// From the beginning of the log: a registry that turns scanning on has its images inventoried.
    public var start: EventConsumerStart { .beginning }

    let inventorier: ScanInventorier
    /// Gives the scan policy's quarantine verdicts after each scan (nil: none).
    let gate: ScanGate?

    public init(inventorier: ScanInventorier, gate: ScanGate? = nil) {
        self.inventorier = inventorier
        self.gate = gate
    }

    public func handle(_ events: [Event]) async throws { try await handle(events, attempt: 1) }

    /// On the scanner's own thread of lower priority (`BackgroundExecutor.scanning`), so that
    /// scanning on push never holds back a request.
    public func handle(_ events: [Event], attempt: Int) async throws {
        try await withTaskExecutorPreference(BackgroundExecutor.scanning) {
            try await handleHere(events, attempt: attempt)
        }
    }

    func handleHere(_ events: [Event], attempt: Int) async throws {
        var handled: Int64?
        for (k, event) in events.enumerated() {
            guard event.action == .manifestPush, let raw = event.digest, let digest = try? Digest(parsing: raw) else {
                handled = event.sequence
                continue
            }
            do {
                let previous = try await inventorier.matcher?.store.findings(manifest: digest)
                let outcome = try await inventorier.scan(repository: event.repository, digest: digest)
                if let gate, let outcome {
                    // Before promotion: a Pending image gets its verdict once its findings are stored.
                    try await gate.judge(repository: event.repository, outcome: outcome)
                    // An OpenVEX referrer: the verdicts on the image it is about read its statements.
                    if outcome.status == .notAnImage,
                       let record = try await inventorier.registry.metadata.manifest(repository: event.repository, digest: digest),
                       record.artifactType == OpenVEX.mediaType, let subject = record.subject {
                        try await gate.rejudge(repository: event.repository, subject: subject)
                    }
                    if outcome.findings != nil, let current = try await inventorier.matcher?.store.findings(manifest: digest) {
                        try await gate.announce(repository: event.repository, digest: digest, previous: previous, current: current)
                    }
                }
            } catch {
                if k == 0, attempt >= inventorier.configuration.maxAttempts {
                    // Given up on: recorded, so it shows, and the queue goes on.
                    try await inventorier.record(.failed, digest, layers: [],
                                                 detail: "gave up after \(attempt) attempts: \(String(describing: error).prefix(500))")
                } else if k == 0 {
                    throw error
                } else {
                    throw EventBatchStopped(handledThrough: handled, error: error)
                }
            }
            handled = event.sequence
        }
    }
}

/// Runs the scan consumer with the server (the feature's service; leased by the server).
public struct ScanService: Service, EventConsumerHost {
    let runner: EventConsumerRunner
    let poll: Duration

    public var consumerNames: [String] { [runner.consumer.name] }

    public init(runner: EventConsumerRunner, poll: Duration) {
        self.runner = runner
        self.poll = poll
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await runner.run(poll: poll, isStopping: { Task.isShuttingDownGracefully })
        }
    }
}
