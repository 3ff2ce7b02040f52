import Foundation
import Logging
import Metrics
import RegistryStore

/// The lease the current task works under, set by `LeasedRunner` for the job it runs (and so for
/// every child task of it): `EventConsumerRunner` fences its cursor moves with it, so a holder that
/// lost its lease (paused, partitioned) can never move a cursor after another node took over.
public struct LeaseFencing: Sendable {
    public let fence: LeaseFence
    public let store: any LeaseStore

    public init(fence: LeaseFence, store: any LeaseStore) {
        self.fence = fence
        self.store = store
    }

    @TaskLocal public static var current: LeaseFencing?
}

/// Runs background work that must happen once across the cluster (event consumers with a global
/// effect, the lifecycle schedules) only while this node holds the work's lease: the job starts
/// when the lease is acquired, the lease is renewed every third of its time to live, and the job is
/// cancelled as soon as a renewal fails or is refused; acquisition is retried with jitter. On a
/// single node the lease is free (or its own, after a restart under the same holder name), so the
/// job starts at once.
public struct LeasedRunner: Sendable {
    public let store: any LeaseStore
    /// This node's name in the leases: unique per node.
    public let holder: String
    /// Seconds a lease lives without renewal: how long the cluster waits for a node that died.
    public let ttl: TimeInterval
    /// Seconds between attempts to acquire a lease another node holds (jittered ±50 %).
    public let retry: TimeInterval
    let logger: Logger

    public init(store: any LeaseStore, holder: String, ttl: TimeInterval = 15, retry: TimeInterval? = nil,
                logger: Logger = Logger(label: "berth.leases")) {
        self.store = store
        self.holder = holder
        self.ttl = max(0.01, ttl)
        self.retry = max(0.001, retry ?? ttl / 3)
        self.logger = logger
    }

    /// Runs `job` whenever this node holds `name`, until the task is cancelled or `isStopping`.
    /// `job` runs until it is cancelled (the lease was lost or the runner stops) or returns (then
    /// the lease is released and acquired again, after a pause). `pause` is how the runner waits
    /// between attempts (a service passes one that ends at a graceful shutdown).
    public func run(lease name: String, isStopping: @escaping @Sendable () -> Bool = { false },
                    pause: @escaping @Sendable (Duration) async -> Void = { try? await Task.sleep(for: $0) },
                    job: @escaping @Sendable () async throws -> Void) async {
        let held = Gauge(label: "berth_lease_held", dimensions: [("lease", name)])
        while !Task.isCancelled && !isStopping() {
            let lease: Lease?
            do {
                lease = try await store.acquireLease(name: name, holder: holder, ttl: ttl)
            } catch {
                logger.warning("could not acquire a lease", metadata: ["lease": "\(name)", "error": "\(error)"])
                lease = nil
            }
            if let lease {
                logger.debug("lease acquired", metadata: ["lease": "\(name)", "token": "\(lease.token)"])
                held.record(1)
                let lost = await hold(lease, job: job)
                held.record(0)
                if lost {
                    logger.warning("lease lost: its work stopped here", metadata: ["lease": "\(name)"])
                } else {
                    // Out of the task's cancellation, so a stopping node hands the lease over at once.
                    let store = store, holder = holder
                    await Task.detached { try? await store.releaseLease(name: name, holder: holder, token: lease.token) }.value
                }
            }
            if Task.isCancelled || isStopping() { return }
            await pause(.milliseconds(Int64(retry * Double.random(in: 0.5...1.5) * 1000)))
        }
    }

    /// Runs `job` under `lease` while renewing it; true when the lease was lost (the job was
    /// cancelled then), false when the job ended (or the runner was cancelled).
    private func hold(_ lease: Lease, job: @escaping @Sendable () async throws -> Void) async -> Bool {
        let fencing = LeaseFencing(fence: lease.fence, store: store)
        let store = store, holder = holder, ttl = ttl, logger = logger
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await LeaseFencing.$current.withValue(fencing) { try await job() }
                } catch where !(error is CancellationError) {
                    logger.warning("leased work failed", metadata: ["lease": "\(lease.name)", "error": "\(error)"])
                } catch {}
                return false
            }
            group.addTask {
                while true {
                    do { try await Task.sleep(for: .milliseconds(Int64(ttl / 3 * 1000))) } catch { return false }
                    let renewed: Bool
                    do {
                        renewed = try await store.renewLease(name: lease.name, holder: holder, token: lease.token, ttl: ttl)
                    } catch {
                        if Task.isCancelled { return false }
                        logger.warning("could not renew a lease", metadata: ["lease": "\(lease.name)", "error": "\(error)"])
                        renewed = false
                    }
                    if !renewed { return true }
                }
            }
            let lost = await group.next() ?? false
            group.cancelAll()
            return lost
        }
    }
}
