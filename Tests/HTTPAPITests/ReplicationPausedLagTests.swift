import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import RegistryCore
import RegistryStore
import Testing
@testable import ReplicationFeature

/// Issue 13 item 1 (`status`: lag in events and seconds): a paused replica applies nothing but
/// keeps reading how far the peer's log has moved. Its lag used to stay at what it was when it was
/// paused, so a status read right after a resume said "caught up" (lag 0) while the peer's writes
/// made during the pause were still to be applied (the interop test that pauses both regions read
/// one region as caught up before it had applied the other's deletion).
@Suite struct ReplicationPausedLagTests {
    /// A peer whose log holds `log` (the events served after `after`, at most `limit`), every
    /// request's query recorded.
    static func withPeer(_ log: NIOLockedValueBox<[ReplicationEventView]>,
                         _ body: @Sendable (Int, NIOLockedValueBox<[String]>) async throws -> Void) async throws {
        let queries = NIOLockedValueBox<[String]>([])
        let router = Router()
        router.get("/api/v1/replication/events") { request, _ -> Response in
            queries.withLockedValue { $0.append(request.uri.query ?? "") }
            let after = request.uri.queryParameters.get("after", as: Int64.self) ?? 0
            let limit = request.uri.queryParameters.get("limit", as: Int.self) ?? 100
            let events = log.withLockedValue { $0 }
            let page = ReplicationEventPage(region: "west", latestSequence: events.last?.sequence ?? 0,
                                            events: Array(events.filter { $0.sequence > after }.prefix(limit)))
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            var h = HTTPFields()
            h[.contentType] = "application/json"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(page))))
        }
        var logger = Logger(label: "peer")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            try await body(try #require(client.port), queries)
        }
    }

    static func event(_ sequence: Int64, at: Date) -> ReplicationEventView {
        ReplicationEventView(sequence: sequence, at: at, action: "tag.move", repository: "geo/app", digest: nil, mediaType: nil, size: nil,
                             tag: "t\(sequence)", subject: nil, detail: nil, region: "west", hlc: "0")
    }

    @Test func aPausedReplicasLagFollowsThePeersLog() async throws {
        let region = try await ReplicationTestRegion.make()
        let log = NIOLockedValueBox<[ReplicationEventView]>([])
        try await Self.withPeer(log) { port, queries in
            _ = try await region.service.create(location: "west", endpoint: "http://127.0.0.1:\(port)", credential: nil, regionEndpointEnabled: true)
            // caught up with an empty log, then paused
            #expect(try await region.applier.step(location: "west") == .idle)
            #expect(try await region.service.status("west").lagEvents == 0)
            #expect(try await region.backend.setEventConsumerPaused(name: ReplicationService.consumerName("west"), paused: true))

            // the peer writes while this region is paused
            let start = Date()
            let oldest = start.addingTimeInterval(-30)
            log.withLockedValue { $0 = [Self.event(1, at: oldest), Self.event(2, at: oldest.addingTimeInterval(5)), Self.event(3, at: start)] }
            queries.withLockedValue { $0.removeAll() }
            #expect(try await region.applier.step(location: "west", now: start) == .idle)
            let status = try await region.service.status("west", now: start)
            #expect(status.lagEvents == 3)
            #expect(status.appliedSequence == 0)
            let seconds = try #require(status.lagSeconds)
            #expect(seconds >= 29 && seconds < 120, "the oldest pending event's age, not 0")
            // one page of one event, nothing applied
            #expect(queries.withLockedValue { $0 } == ["after=0&limit=1"])

            // read at most every pausedInterval
            log.withLockedValue { $0.append(Self.event(4, at: start)) }
            #expect(try await region.applier.step(location: "west", now: start.addingTimeInterval(1)) == .idle)
            #expect(queries.withLockedValue { $0.count } == 1)
            #expect(try await region.service.status("west").lagEvents == 3)
            #expect(try await region.applier.step(location: "west", now: start.addingTimeInterval(6)) == .idle)
            #expect(queries.withLockedValue { $0.count } == 2)
            #expect(try await region.service.status("west").lagEvents == 4)

            // a peer that cannot be read while paused leaves the lag as it was, with no error
            // (the pause is the operator's; an error shows once replication runs again) ...
            func endpoint(_ url: String) async throws {
                _ = try await region.service.update(location: "west", endpoint: url, credential: nil, clearCredential: false,
                                                    regionEndpointEnabled: nil)
            }
            try await endpoint("http://127.0.0.1:9")
            #expect(try await region.applier.step(location: "west", now: start.addingTimeInterval(12)) == .idle)
            let after = try await region.service.status("west")
            #expect(after.lagEvents == 4)
            #expect(after.progress.lastError == nil)
            // ... and is not read again before pausedBackoff
            try await endpoint("http://127.0.0.1:\(port)")
            #expect(try await region.applier.step(location: "west", now: start.addingTimeInterval(20)) == .idle)
            #expect(queries.withLockedValue { $0.count } == 2)
            #expect(try await region.applier.step(location: "west", now: start.addingTimeInterval(73)) == .idle)
            #expect(queries.withLockedValue { $0.count } == 3)

            // a deleted replica's paused read is forgotten with it (the consumer loop's pass)
            #expect(region.applier.pausedReadLocations == ["west"])
            try await region.service.delete(location: "west")
            region.applier.forget(except: Set(try await region.service.store.replicas().map(\.location)))
            #expect(region.applier.pausedReadLocations.isEmpty)
        }
    }

    /// A worker that lost the replication lease (paused, partitioned) while reading its peer leaves
    /// the progress its successor records alone.
    @Test func aWorkerThatLostItsLeaseRecordsNoProgress() async throws {
        let region = try await ReplicationTestRegion.make()
        let log = NIOLockedValueBox<[ReplicationEventView]>([])
        try await Self.withPeer(log) { port, _ in
            _ = try await region.service.create(location: "west", endpoint: "http://127.0.0.1:\(port)", credential: nil, regionEndpointEnabled: true)
            #expect(try await region.applier.step(location: "west") == .idle)
            #expect(try await region.backend.setEventConsumerPaused(name: ReplicationService.consumerName("west"), paused: true))
            let old = try #require(try await region.backend.acquireLease(name: "replication", holder: "n1", ttl: 60))
            try await region.backend.releaseLease(name: "replication", holder: "n1", token: old.token)
            let current = try #require(try await region.backend.acquireLease(name: "replication", holder: "n2", ttl: 60))
            let start = Date()
            log.withLockedValue { $0 = [Self.event(1, at: start), Self.event(2, at: start)] }
            // the stale worker reads the peer's head (two events) but may not record it
            _ = try await LeaseFencing.$current.withValue(LeaseFencing(fence: old.fence, store: region.backend)) {
                try await region.applier.step(location: "west", now: start)
            }
            #expect(try await region.service.status("west").lagEvents == 0)
            // the current holder records it
            _ = try await LeaseFencing.$current.withValue(LeaseFencing(fence: current.fence, store: region.backend)) {
                try await region.applier.step(location: "west", now: start.addingTimeInterval(6))
            }
            #expect(try await region.service.status("west").lagEvents == 2)
        }
    }
}
