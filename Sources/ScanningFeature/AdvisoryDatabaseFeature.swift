import Access
import BerthAPIContract
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Scanning
import ServiceLifecycle

/// The advisory database as a feature: `GET /api/v1/scan/db` (management/read),
/// `POST /api/v1/scan/db/import` and `POST /api/v1/scan/db/update` (management/write: Owner), and
/// the scheduled update of the configured feeds (a service, so the server runs it under a lease:
/// one node of a cluster at a time).
public struct AdvisoryDatabaseFeature: RegistryFeature {
    let database: AdvisoryDatabase

    public init(database: AdvisoryDatabase) {
        self.database = database
    }

    public var services: [any Service] {
        database.configuration.updateIntervalSeconds.map { _ in [AdvisoryUpdateService(database: database)] } ?? []
    }

    static func managementError(_ error: AdvisoryDatabaseError) -> ManagementError {
        switch error {
        case .invalid: ManagementError(status: .badRequest, code: "INVALID", message: error.description)
        case .busy: ManagementError(status: .conflict, code: "CONFLICT", message: error.description)
        case .notFound: ManagementError(status: .notFound, code: "NOT_FOUND", message: error.description)
        }
    }

    static func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as AdvisoryDatabaseError { throw managementError(e) }
    }

    public func addRoutes(to routes: FeatureRoutes) {
        let database = database
        let server = routes.server
        routes.management.get("scan/db") { _, _ in
            server.json(try await database.view())
        }
        routes.management.post("scan/db/import") { request, context in
            let actor = context.managementActor ?? Actor(name: "anonymous", address: "-")
            let query = request.uri.queryParameters
            var format: AdvisoryFeedFormat?
            if let raw = query["format"], raw != "auto" {
                guard let f = AdvisoryFeedFormat(rawValue: String(raw)) else {
                    throw ManagementError(status: .badRequest, code: "INVALID", message: "format must be osv, debian, alpine or auto")
                }
                format = f
            }
            let source = query["source"].map(String.init)
            let limit = database.configuration.maxFeedBytes
            // Over the limit: NIOTooManyBytesError, which the one error mapping answers 413.
            var request = request
            let body = try await request.collectBody(upTo: limit)
            let view = try await Self.mapping {
                try await database.importUpload(Data(body.readableBytesView), format: format, source: source)
            }
            await server.access.recordAudit(actor: actor.name, address: actor.address, action: "scan-db.import", target: view.source,
                                            outcome: "ok", detail: "version=\(view.version) added=\(view.added) changed=\(view.changed) removed=\(view.removed)")
            return server.json(view)
        }
        routes.management.post("scan/db/update") { request, context in
            let actor = context.managementActor ?? Actor(name: "anonymous", address: "-")
            let feed = request.uri.queryParameters["feed"].map(String.init)
            let view = try await Self.mapping { try await database.update(feed: feed) }
            await server.access.recordAudit(actor: actor.name, address: actor.address, action: "scan-db.update", target: feed ?? "*",
                                            outcome: view.feeds.allSatisfy { $0.status != "failed" } ? "ok" : "failed",
                                            detail: view.feeds.map { "\($0.name)=\($0.status)" }.joined(separator: " "))
            return server.json(view)
        }
    }
}

/// Updates the configured feeds every `updateIntervalSeconds`, counted from the latest check, so a
/// restart does not download them again early. A failure is kept with its source (`scan db
/// show`) and retried at the next interval.
struct AdvisoryUpdateService: Service {
    let database: AdvisoryDatabase

    func run() async throws {
        let interval = TimeInterval(database.configuration.updateIntervalSeconds ?? 60)
        var justRan = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            guard var delay = await database.nextUpdateDelay() else { return }
            // A check that could not be recorded (the store failing) must not turn into a loop.
            if justRan { delay = max(delay, min(interval, 60)) }
            if delay > 0 {
                let wait = Duration.milliseconds(Int64(delay * 1000) + 1)
                do {
                    try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) }
                } catch { return }
                justRan = false
                continue
            }
            do {
                _ = try await database.update()
            } catch {
                database.logger.warning("scheduled advisory update did not run: \(error)")
            }
            justRan = true
        }
    }
}
