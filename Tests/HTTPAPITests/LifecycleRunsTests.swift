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
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let app = try await BerthServer.makeApplication(registry: registry, access: access, features: standardFeatures(registry),
                                                        host: "127.0.0.1", port: 0, logger: logger)
        try await app.test(.router) { client in
            let gc = try JSONEncoder().encode(DryRunRequest(dryRun: true))
            #expect(try await client.execute(uri: "/api/v1/gc", method: .post, headers: owner, body: ByteBuffer(bytes: gc)).status == .ok)
            try await registry.metadata.recordRun(kind: .gc, name: nil, dryRun: true, startedAt: Date(), finishedAt: Date(),
                                                  report: #"{"kind":"gc","damaged":"#, event: nil)
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
