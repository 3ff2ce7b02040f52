import Foundation
import Metrics

/// Lifecycle runs (GC, purge, retention, recycle-bin expiry) through swift-metrics (Prometheus on
/// `berth serve`'s /metrics): how many ran, how long they took, what they removed.
public enum LifecycleMetrics {
    static func run(kind: String, dryRun: Bool, startedAt: Date, finishedAt: Date, manifestsDeleted: Int = 0,
                    blobsDeleted: Int = 0, bytesReclaimed: Int64 = 0) {
        let mode = dryRun ? "dry-run" : "run"
        Counter(label: "berth_lifecycle_runs_total", dimensions: [("kind", kind), ("mode", mode)]).increment()
        Timer(label: "berth_lifecycle_run_duration_seconds", dimensions: [("kind", kind)])
            .recordNanoseconds(Int64(max(0, finishedAt.timeIntervalSince(startedAt)) * 1e9))
        guard !dryRun else { return }
        if manifestsDeleted > 0 {
            Counter(label: "berth_lifecycle_manifests_deleted_total", dimensions: [("kind", kind)]).increment(by: manifestsDeleted)
        }
        if blobsDeleted > 0 { Counter(label: "berth_gc_blobs_deleted_total").increment(by: blobsDeleted) }
        if bytesReclaimed > 0 { Counter(label: "berth_gc_bytes_reclaimed_total").increment(by: bytesReclaimed) }
    }

    /// A background job that threw (it is retried on the next tick).
    public static func jobFailed(_ job: String) {
        Counter(label: "berth_background_job_failures_total", dimensions: [("job", job)]).increment()
    }
}
