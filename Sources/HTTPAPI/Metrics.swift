import Foundation
import Metrics
import NIOConcurrencyHelpers
import Prometheus

/// Prometheus metrics of the HTTP layer: requests by route and status with latency histograms,
/// bytes in and out. Gauges that describe stored state are read at scrape time.
public final class HTTPMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private struct Handles {
        var counters: [String: Prometheus.Counter] = [:]
        var histograms: [String: DurationHistogram] = [:]
    }
    private let handles = NIOLockedValueBox(Handles())
    private let bytesIn: Prometheus.Counter
    private let bytesOut: Prometheus.Counter
    let openUploads: Prometheus.Gauge
    let storedBytes: Prometheus.Gauge
    /// Counts already added to `berth_metadata_round_trips_total` (by backend) and to
    /// `berth_metadata_transaction_retries_total` (by `retries:` and backend).
    let roundTripsReported = NIOLockedValueBox<[String: Int64]>([:])
    private static let buckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
    ]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        bytesIn = registry.makeCounter(name: "berth_http_request_bytes_total", help: "Request body bytes received")
        bytesOut = registry.makeCounter(name: "berth_http_response_bytes_total", help: "Response body bytes sent")
        openUploads = registry.makeGauge(name: "berth_upload_sessions_open", help: "Upload sessions in progress")
        storedBytes = registry.makeGauge(name: "berth_stored_bytes", help: "Bytes stored after deduplication")
        _ = Self.startTime
        registry.makeGauge(name: "berth_build_info", labels: [("version", BerthVersion.string)],
                           help: "The running Berth version (always 1)").set(Int64(1))
    }

    func record(route: String, method: String, status: Int, duration: Duration, bytesIn inBytes: Int64, bytesOut outBytes: Int64) {
        let key = "\(route) \(method) \(status)"
        let (counter, histogram) = handles.withLockedValue { h -> (Prometheus.Counter, DurationHistogram) in
            if let c = h.counters[key], let d = h.histograms[key] { return (c, d) }
            let labels = [("route", route), ("method", method), ("status", String(status))]
            let c = registry.makeCounter(name: "berth_http_requests_total", labels: labels, help: "HTTP requests")
            let d = registry.makeDurationHistogram(name: "berth_http_request_duration_seconds", labels: labels,
                                                   buckets: Self.buckets, help: "HTTP request latency")
            h.counters[key] = c
            h.histograms[key] = d
            return (c, d)
        }
        counter.increment()
        histogram.recordNanoseconds(Int64(duration.components.seconds) * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
        if inBytes > 0 { bytesIn.increment(by: Int64(inBytes)) }
        if outBytes > 0 { bytesOut.increment(by: Int64(outBytes)) }
    }
}

extension HTTPMetrics {
    /// Sends swift-metrics (used by RegistryCore, Access, Webhooks) to this registry too. Once per
    /// process: `berth serve` calls it at start.
    public func bootstrapMetricsSystem() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }
}

/// Failed logins by how they failed: a password (Basic, token endpoint), a bearer token, or a
/// request refused by the failed-login limiter.
enum LoginMetrics {
    static func failed(scheme: String) {
        Metrics.Counter(label: "berth_login_failures_total", dimensions: [("kind", scheme)]).increment()
    }
}

/// State read at scrape time: the process (from /proc, as Prometheus' client libraries name it),
/// manifests by quarantine state, and each event consumer's backlog.
extension HTTPMetrics {
    public func setGauge(_ name: String, _ labels: [(String, String)] = [], _ value: Double, help: String) {
        registry.makeGauge(name: name, labels: labels, help: help).set(value)
    }

    func scrapeProcess() {
        setGauge("process_start_time_seconds", [], Self.startTime, help: "Start time of the process since the epoch")
        #if os(Linux)
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let pages = statm.split(separator: " ").compactMap { Double($0) }
            let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
            if pages.count > 1 {
                setGauge("process_virtual_memory_bytes", [], pages[0] * pageSize, help: "Virtual memory size in bytes")
                setGauge("process_resident_memory_bytes", [], pages[1] * pageSize, help: "Resident memory size in bytes")
            }
        }
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
           let close = stat.lastIndex(of: ")") {
            // fields after the command name; utime and stime are the 12th and 13th of them
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) {
                let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
                setGauge("process_cpu_seconds_total", [], (user + system) / ticks, help: "Total user and system CPU time in seconds")
            }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            setGauge("process_open_fds", [], Double(fds.count), help: "Number of open file descriptors")
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            setGauge("process_max_fds", [], Double(limit.rlim_cur), help: "Maximum number of open file descriptors")
        }
        #endif
    }

    static let startTime = Date().timeIntervalSince1970
}
