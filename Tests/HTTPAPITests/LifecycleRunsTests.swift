import Access
import Backends
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RegistryCore
import RegistryStore
import Testing
@testable import HTTPAPI

@Suite struct LifecycleRunsTests {
    @Test func aRunWhoseStoredReportDoesNotReadIsLeftOutOfTheListNotAFailureOfIt() async throws {
        let (app, _, registry) = try await makeSecuredServer()
        try await app.test(.router) { client in
            let gc = try JSONEncoder().encode(DryRunRequest(dryRun: true))
            #expect(try await client.execute(uri: "/api/v1/gc", method: .post, headers: owner, body: ByteBuffer(bytes: gc)).status == .ok)
            try await registry.metadata.recordRun(kind: .gc, name: nil, dryRun: true, startedAt: Date(), finishedAt: Date(),
                                                  report: #"{"kind":"gc","damaged":"#, event: nil, keep: 1000)
            #expect(try await client.execute(uri: "/api/v1/gc", method: .post, headers: owner, body: ByteBuffer(bytes: gc)).status == .ok)
            let listed = try await client.execute(uri: "/api/v1/lifecycle/runs", method: .get, headers: owner)
            #expect(listed.status == .ok)
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let runs = try decoder.decode([LifecycleRunView].self, from: Data(buffer: listed.body))
            #expect(runs.count == 2 && runs.allSatisfy { $0.id != nil })
        }
    }
}

/// `GET /api/v1/leases`: which node holds each piece of cluster-once work, from the shared store.
@Suite struct LeaseListTests {
    @Test func everyLeaseWithItsHolderByNameLiveOrRunOutBehindTheManagementCheck() async throws {
        let (app, access, registry) = try await makeSecuredServer(leaseHolder: "node-a")
        let store = registry.metadata as! any LeaseStore
        // held by other nodes of the cluster: one live, one whose holder stopped renewing (work
        // this node does not run, so it does not take it over)
        let live = try #require(try await store.acquireLease(name: "service:Elsewhere", holder: "node-b", ttl: 600))
        let lapsed = try #require(try await store.acquireLease(name: "consumer:gone", holder: "node-c", ttl: 0.05))
        try await Task.sleep(for: .milliseconds(100))
        _ = try await access.createIdentity(testActor, name: "reader", withPassword: false)
        let readerPassword = try await access.resetIdentityPassword(testActor, name: "reader")
        _ = try await access.assignRole(testActor, assignee: "reader", role: "Pull", scope: "*")
        try await app.test(.router) { client in
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            // this node's runner takes the lifecycle lease as it starts
            var leases: [LeaseView] = []
            for _ in 0..<100 {
                let r = try await client.execute(uri: "/api/v1/leases", method: .get, headers: owner)
                #expect(r.status == .ok)
                leases = try decoder.decode([LeaseView].self, from: Data(buffer: r.body))
                if leases.contains(where: { $0.name == "lifecycle" }) { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(leases.first { $0.name == "lifecycle" }?.holder == "node-a")
            #expect(leases.map(\.name) == leases.map(\.name).sorted())
            let others = leases.filter { $0.holder != "node-a" }
            #expect(others.map(\.name) == ["consumer:gone", "service:Elsewhere"])
            #expect(others.map(\.holder) == ["node-c", "node-b"])
            #expect(others.map(\.live) == [false, true])
            #expect(others.map(\.token) == [lapsed.token, live.token])
            #expect(abs(others[1].expiresAt.timeIntervalSince(live.expiresAt)) < 1)
            // what this node's runner took (the lifecycle schedules, the retention consumer) is live
            let mine = leases.filter { $0.holder == "node-a" }
            #expect(mine.filter { !$0.live }.isEmpty)
            // Each event consumer names the lease it runs under and who holds it: the core's
            // retention consumer its own; a consumer no service of this server runs (a webhook's,
            // since deleted) none.
            _ = try await registry.metadata.registerEventConsumer(name: "webhook:gone", start: .beginning)
            var consumers: [BerthAPIContract.EventConsumerView] = []
            for _ in 0..<100 {
                let r = try await client.execute(uri: "/api/v1/event-consumers", method: .get, headers: owner)
                #expect(r.status == .ok)
                consumers = try decoder.decode([BerthAPIContract.EventConsumerView].self, from: Data(buffer: r.body))
                if consumers.first(where: { $0.name == "retention" })?.leaseHolder != nil { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let retention = try #require(consumers.first { $0.name == "retention" })
            #expect(retention.lease == "consumer:retention" && retention.leaseHolder == "node-a")
            #expect(leases.contains { $0.name == retention.lease })
            let gone = try #require(consumers.first { $0.name == "webhook:gone" })
            #expect(gone.lease == nil && gone.leaseHolder == nil)
            let paused = try await client.execute(uri: "/api/v1/event-consumers/retention/pause", method: .post, headers: owner)
            #expect(try decoder.decode(BerthAPIContract.EventConsumerView.self, from: Data(buffer: paused.body)).lease == "consumer:retention")
            _ = try await client.execute(uri: "/api/v1/event-consumers/retention/resume", method: .post, headers: owner)
            #expect(try await client.execute(uri: "/api/v1/leases", method: .get).status == .unauthorized)
            // pulling everywhere is no management right
            let refused = try await client.execute(uri: "/api/v1/leases", method: .get, headers: basic("reader", readerPassword))
            #expect(refused.status == .forbidden, "\(refused.status) \(String(buffer: refused.body))")
        }
    }

    @Test func aServerRunningItsWorkWithoutLeasesListsNone() async throws {
        let (app, _, _) = try await makeSecuredServer()
        try await app.test(.router) { client in
            let r = try await client.execute(uri: "/api/v1/leases", method: .get, headers: owner)
            #expect(r.status == .ok)
            #expect(String(buffer: r.body) == "[]")
            // and its consumers name no lease
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            var consumers: [BerthAPIContract.EventConsumerView] = []
            for _ in 0..<100 {
                let listed = try await client.execute(uri: "/api/v1/event-consumers", method: .get, headers: owner)
                consumers = try decoder.decode([BerthAPIContract.EventConsumerView].self, from: Data(buffer: listed.body))
                if !consumers.isEmpty { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(!consumers.isEmpty && consumers.allSatisfy { $0.lease == nil && $0.leaseHolder == nil })
            #expect(!String(buffer: try await client.execute(uri: "/api/v1/event-consumers", method: .get, headers: owner).body)
                .contains("lease"))
        }
    }
}
