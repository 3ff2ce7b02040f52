import BerthAPIContract
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import RegistryStore
import ServiceLifecycle
import Webhooks

/// Webhooks as a feature: `/api/v1/webhooks` (behind the management check), the dispatcher that
/// delivers events, and the event-log and backlog gauges of `/metrics`.
public struct WebhooksFeature: RegistryFeature {
    let webhooks: WebhookService

    public init(service: WebhookService) {
        webhooks = service
    }

    public var services: [any Service] { [WebhookDispatcher(service: webhooks)] }

    public func updateMetrics(_ metrics: HTTPMetrics) async throws {
        metrics.setGauge("berth_event_log_sequence", [], Double(try await webhooks.latestEventSequence()),
                         help: "Sequence number of the newest event in the event log")
        for (name, events) in try await webhooks.backlog() {
            // Not berth_event_consumer_lag_events: that family is the runner's (swift-metrics,
            // registered with its own help text, which a second registration must not contradict).
            metrics.setGauge("berth_webhook_backlog_events", [("webhook", name)], Double(events),
                             help: "Events in the log after a webhook's cursor")
        }
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let webhooks = self.webhooks
        let server = routes.server
        let api = routes.management
        api.get("webhooks") { _, _ in
            server.json(try await webhooks.list().map(BerthAPIContract.WebhookView.init))
        }
        api.post("webhooks") { request, _ in
            let body = try await server.decode(WebhookRequest.self, request)
            if let status = body.status, status != "enabled", status != "disabled" {
                throw WebhookError.invalid("status must be enabled or disabled")
            }
            let (view, secret) = try await webhooks.create(name: body.name ?? "", uri: body.uri ?? "", actions: body.actions ?? ["push"],
                                                           scope: body.scope, headers: body.headers ?? [:],
                                                           enabled: body.status.map { $0 == "enabled" } ?? true)
            return server.json(WebhookCreated(webhook: BerthAPIContract.WebhookView(view), secret: secret), status: .created)
        }
        api.get("webhooks/:name") { _, context in
            server.json(BerthAPIContract.WebhookView(try await webhooks.get(try context.parameters.require("name"))))
        }
        api.patch("webhooks/:name") { request, context in
            let body = try await server.decode(WebhookRequest.self, request)
            if let status = body.status, status != "enabled", status != "disabled" {
                throw WebhookError.invalid("status must be enabled or disabled")
            }
            let view = try await webhooks.update(name: try context.parameters.require("name"), uri: body.uri,
                                                 actions: body.actions, scope: body.scope.map { Optional($0) },
                                                 headers: body.headers, enabled: body.status.map { $0 == "enabled" })
            return server.json(BerthAPIContract.WebhookView(view))
        }
        api.delete("webhooks/:name") { _, context in
            try await webhooks.delete(name: try context.parameters.require("name"))
            return Response(status: .noContent)
        }
        api.post("webhooks/:name/ping") { _, context in
            server.json(try await WebhookDeliveryView(webhooks.ping(name: try context.parameters.require("name"))))
        }
        api.get("webhooks/:name/events") { request, context in
            let limit = min(try server.queryInt(request, "limit") ?? 100, 1000)
            return server.json(try await webhooks.deliveries(name: try context.parameters.require("name"), limit: limit).map(WebhookDeliveryView.init))
        }
    }
}

/// Webhook errors in the management API's envelope.
extension WebhookError: ManagementErrorConvertible {
    public var managementError: ManagementError {
        switch self {
        case .invalid(let m): ManagementError(status: .badRequest, code: "INVALID", message: m)
        case .notFound(let m): ManagementError(status: .notFound, code: "NOT_FOUND", message: "\(m) not found")
        case .conflict(let m): ManagementError(status: .conflict, code: "CONFLICT", message: m)
        }
    }
}

// The HTTP edge: the webhook service's views and records in the management API's contract.

extension BerthAPIContract.WebhookView {
    init(_ v: Webhooks.WebhookView) {
        self.init(name: v.name, uri: v.uri, actions: v.actions, scope: v.scope, headers: v.headers, status: v.status,
                  createdAt: v.createdAt, pendingAttempts: v.pendingAttempts)
    }
}

extension WebhookDeliveryView {
    init(_ d: WebhookDelivery) {
        self.init(id: d.id, webhook: d.webhook, eventSequence: d.eventSequence, action: d.action, attempt: d.attempt,
                  statusCode: d.statusCode, latencyMilliseconds: d.latencyMilliseconds, error: d.error, timestamp: d.timestamp,
                  payload: d.payload)
    }
}
