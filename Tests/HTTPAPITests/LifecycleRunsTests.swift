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
