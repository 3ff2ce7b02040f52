import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// Prometheus metrics of the HTTP layer: requests by route and status with latency histograms,
/// bytes in and out. Gauges that describe stored state are read at scrape time.
public final class HTTPMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private struct Handles {
        var counters: [String: Counter] = [:]
        var histograms: [String: DurationHistogram] = [:]
    }
    private let handles = NIOLockedValueBox(Handles())
    private let bytesIn: Counter
    private let bytesOut: Counter
    let openUploads: Gauge
    let storedBytes: Gauge
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
        registry.makeGauge(name: "berth_build_info", labels: [("version", BerthVersion.string)],
                           help: "The running Berth version (always 1)").set(Int64(1))
    }

    func record(route: String, method: String, status: Int, duration: Duration, bytesIn inBytes: Int64, bytesOut outBytes: Int64) {
        let key = "\(route) \(method) \(status)"
        let (counter, histogram) = handles.withLockedValue { h -> (Counter, DurationHistogram) in
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
