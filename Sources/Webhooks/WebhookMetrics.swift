import Metrics

/// Delivery outcomes, through swift-metrics (Prometheus on `berth serve`'s /metrics).
enum WebhookMetrics {
    static let attempts = Counter(label: "berth_webhook_delivery_attempts_total", dimensions: [("outcome", "ok")])
    static let failures = Counter(label: "berth_webhook_delivery_attempts_total", dimensions: [("outcome", "failed")])
    static let abandoned = Counter(label: "berth_webhook_deliveries_abandoned_total")

    static func attempt(failed: Bool, abandoned gaveUp: Bool) {
        (failed ? failures : attempts).increment()
        if gaveUp { abandoned.increment() }
    }
}
