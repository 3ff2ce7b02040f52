import Access
import BerthAPIContract
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RegistryCore
import RegistryStore
import Scanning
@testable import ScanningFeature
import Testing
@testable import HTTPAPI

/// `/api/v1/scan/db`: who may read, import and update, and the answers to bad input.
@Suite struct AdvisoryDatabaseAPITests {
    static let record = #"""
        {"id": "GHSA-test-0001", "modified": "2026-11-01T00:00:00Z",
         "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                       "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.32.0"}]}]}]}
        """#

    func makeApp(maxFeedBytes: Int = 1 << 20, feeds: [AdvisoryFeedConfiguration] = [])
        async throws -> (some ApplicationProtocol, AccessControl) {
        let (app, access, _) = try await makeAppAndDatabase(maxFeedBytes: maxFeedBytes, feeds: feeds)
        return (app, access)
    }

    func makeAppAndDatabase(maxFeedBytes: Int = 1 << 20, feeds: [AdvisoryFeedConfiguration] = [])
        async throws -> (some ApplicationProtocol, AccessControl, AdvisoryDatabase) {
        let dir = tempDataDir()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: dir, logger: logger)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        var configuration = AdvisoryDatabaseConfiguration(feeds: feeds)
        configuration.maxFeedBytes = maxFeedBytes
        let database = AdvisoryDatabase(store: registry.metadata as! any AdvisoryStore, configuration: configuration, logger: logger)
        let app = try await BerthServer.makeApplication(registry: registry, access: access,
                                                        features: standardFeatures(registry) + [AdvisoryDatabaseFeature(database: database)],
                                                        host: "127.0.0.1", port: 0, logger: logger)
        return (app, access, database)
    }

    func reader(_ access: AccessControl) async throws -> HTTPFields {
        _ = try await access.createIdentity(testActor, name: "auditor", withPassword: false)
        let password = try await access.resetIdentityPassword(testActor, name: "auditor")
        _ = try await access.assignRole(testActor, assignee: "auditor", role: "Reader", scope: "*")
        return basic("auditor", password)
    }

    struct Envelope: Decodable { struct E: Decodable { let code: String; let message: String }; let error: E }

    @Test func readersSeeTheDatabaseOnlyOwnersImportAndUpdate() async throws {
        let (app, access) = try await makeApp()
        let auditor = try await reader(access)
        try await app.test(.router) { client in
            #expect(try await client.execute(uri: "/api/v1/scan/db", method: .get).status == .unauthorized)
            let shown = try await client.execute(uri: "/api/v1/scan/db", method: .get, headers: auditor)
            #expect(shown.status == .ok)
            let empty = try JSONDecoder().decode(AdvisoryDatabaseView.self, from: Data(buffer: shown.body))
            #expect(empty.version == 0 && empty.sources.isEmpty)
            for uri in ["/api/v1/scan/db/import?format=osv", "/api/v1/scan/db/update"] {
                let r = try await client.execute(uri: uri, method: .post, headers: auditor, body: buf(Array(Self.record.utf8)))
                #expect(r.status == .forbidden, "\(uri)")
            }
            let imported = try await client.execute(uri: "/api/v1/scan/db/import?source=pypi", method: .post, headers: owner,
                                                    body: buf(Array(Self.record.utf8)))
            #expect(imported.status == .ok)
            let view = try JSONDecoder().decode(AdvisoryImportView.self, from: Data(buffer: imported.body))
            #expect(view.source == "pypi" && view.format == "osv" && view.version == 1 && view.added == 1 && view.created)
            let again = try await client.execute(uri: "/api/v1/scan/db/import?source=pypi", method: .post, headers: owner,
                                                 body: buf(Array(Self.record.utf8)))
            let second = try JSONDecoder().decode(AdvisoryImportView.self, from: Data(buffer: again.body))
            #expect(second.version == 1 && !second.created && second.unchanged == 1)
            let audit = String(buffer: try await client.execute(uri: "/api/v1/audit?since=1h", method: .get, headers: owner).body)
            #expect(audit.contains("scan-db.import"))
        }
    }

    @Test(arguments: [
        ("/api/v1/scan/db/import", "not json at all"),
        ("/api/v1/scan/db/import", "[1, 2, 3]"),
        ("/api/v1/scan/db/import?format=alpine", #"{"packages": 7}"#),
        ("/api/v1/scan/db/import?format=rpm", "{}"),
        ("/api/v1/scan/db/import?source=bad%20name", record),
        ("/api/v1/scan/db/import", String(repeating: "[", count: 50_000)),
    ])
    func badInputIsA400WithTheManagementEnvelope(_ c: (String, String)) async throws {
        let (app, _) = try await makeApp()
        try await app.test(.router) { client in
            let r = try await client.execute(uri: c.0, method: .post, headers: owner, body: buf(Array(c.1.utf8)))
            #expect(r.status == .badRequest)
            let e = try JSONDecoder().decode(Envelope.self, from: Data(buffer: r.body))
            #expect(e.error.code == "INVALID")
            let state = try JSONDecoder().decode(AdvisoryDatabaseView.self, from: Data(buffer:
                try await client.execute(uri: "/api/v1/scan/db", method: .get, headers: owner).body))
            #expect(state.version == 0 && state.sources.isEmpty)
        }
    }

    @Test func aFeedOverTheLimitIs413AndAnUnknownFeedIs404() async throws {
        let (app, _) = try await makeApp(maxFeedBytes: 256)
        try await app.test(.router) { client in
            let big = try await client.execute(uri: "/api/v1/scan/db/import", method: .post, headers: owner,
                                               body: buf(Array(Self.record.utf8) + [UInt8](repeating: 0x20, count: 300)))
            #expect(big.status == .contentTooLarge)
            let unknown = try await client.execute(uri: "/api/v1/scan/db/update?feed=nothing", method: .post, headers: owner)
            #expect(unknown.status == .notFound)
        }
    }

    @Test func feedSettingsAreParsedStrictly() throws {
        let feeds = try AdvisoryFeedConfiguration.parseList("debian=debian:https://example.org/json, go=osv:https://example.org/Go/all.zip")
        #expect(feeds.map(\.name) == ["debian", "go"] && feeds.map(\.format.rawValue) == ["debian", "osv"])
        #expect(feeds.last?.url == "https://example.org/Go/all.zip")
        for bad in ["debian", "x=rpm:https://example.org", "x=osv:ftp://example.org/a", "x=osv:https://user:pw@example.org/a",
                    "x=osv:https://a.org/1 x=osv:https://a.org/2", "-x=osv:https://a.org/1", "=osv:https://a.org"] {
            #expect(throws: AdvisoryDatabaseError.self, "\(bad)") { try AdvisoryFeedConfiguration.parseList(bad) }
        }
    }

    @Test func aSecondImportOrUpdateWhileOneRunsIs409() async throws {
        let (app, _, database) = try await makeAppAndDatabase()
        try await app.test(.router) { client in
            #expect(await database.gate.begin())
            for uri in ["/api/v1/scan/db/import", "/api/v1/scan/db/update"] {
                let r = try await client.execute(uri: uri, method: .post, headers: owner, body: buf(Array(Self.record.utf8)))
                #expect(r.status == .conflict, "\(uri)")
                #expect(try JSONDecoder().decode(Envelope.self, from: Data(buffer: r.body)).error.code == "CONFLICT")
            }
            await database.gate.end()
            let r = try await client.execute(uri: "/api/v1/scan/db/import", method: .post, headers: owner, body: buf(Array(Self.record.utf8)))
            #expect(r.status == .ok)
        }
    }

    @Test func scheduledUpdatesAreDueAnIntervalAfterEveryFeedsLastCheck() async throws {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let registry = try Registry.embedded(dataDirectory: tempDataDir(), logger: logger)
        let store = registry.metadata as! any AdvisoryStore
        let feeds = try AdvisoryFeedConfiguration.parseList("a=osv:https://a.example/x b=debian:https://b.example/y")
        let onDemand = AdvisoryDatabase(store: store, configuration: AdvisoryDatabaseConfiguration(feeds: feeds), logger: logger)
        #expect(await onDemand.nextUpdateDelay() == nil)
        #expect(AdvisoryDatabaseFeature(database: onDemand).services.isEmpty)
        let scheduled = AdvisoryDatabase(store: store, configuration: AdvisoryDatabaseConfiguration(feeds: feeds, updateIntervalSeconds: 3600),
                                         logger: logger)
        #expect(AdvisoryDatabaseFeature(database: scheduled).services.count == 1)
        #expect(await scheduled.nextUpdateDelay() == 0)
        try await store.recordAdvisoryCheck(source: "a", format: "osv", error: nil)
        #expect(await scheduled.nextUpdateDelay() == 0)   // b was never checked
        try await store.recordAdvisoryCheck(source: "b", format: "debian", error: "the feed answered HTTP 500")
        let checked = try #require(try await store.advisorySources().compactMap(\.checkedAt).min())
        let due = try #require(await scheduled.nextUpdateDelay(now: checked))
        let sooner = try #require(await scheduled.nextUpdateDelay(now: checked.addingTimeInterval(3000)))
        #expect(abs(due - 3600) < 0.01 && abs(sooner - 600) < 0.01)
        #expect(await scheduled.nextUpdateDelay(now: checked.addingTimeInterval(7200)) == 0)
    }

    @Test func importedAdvisoriesMatchInstalledPackagesFromTheStore() async throws {
        let (app, _, database) = try await makeAppAndDatabase()
        let debian = #"""
            {"openssl": {"CVE-2026-1000": {"releases": {
                "bookworm": {"status": "resolved", "fixed_version": "3.0.14-1~deb12u2", "urgency": "medium"},
                "trixie": {"status": "open", "urgency": "unimportant", "nodsa": "Minor issue"}}}}}
            """#
        try await app.test(.router) { client in
            for (source, body) in [("pypi", Self.record), ("debian", debian)] {
                let r = try await client.execute(uri: "/api/v1/scan/db/import?source=\(source)", method: .post, headers: owner,
                                                 body: buf(Array(body.utf8)))
                #expect(r.status == .ok)
            }
        }
        let installed = [
            InstalledPackage(ecosystem: "PyPI", name: "Requests", version: "2.31.0"),
            InstalledPackage(ecosystem: "Debian", name: "libssl3", version: "3.0.11-1~deb12u2", sourceName: "openssl", release: "12"),
            InstalledPackage(ecosystem: "Debian", name: "libssl3", version: "3.0.14-1~deb12u2", sourceName: "openssl", release: "bookworm"),
            InstalledPackage(ecosystem: "Debian", name: "libssl3t64", version: "3.3.2-1", sourceName: "openssl", release: "trixie"),
        ]
        let (version, index, undecodable) = try await database.index(for: installed)
        #expect(version == 2 && undecodable == 0 && index.advisories.count == 2)
        let results = installed.map { index.matches(for: $0) }
        #expect(results[0].matches.map(\.advisory.id) == ["GHSA-test-0001"] && results[0].matches.first?.fixedVersion == "2.32.0")
        #expect(results[1].matches.map(\.fixedVersion) == ["3.0.14-1~deb12u2"])
        #expect(results[2].matches.isEmpty)   // the fixed backport itself
        #expect(results[3].matches.map(\.reason) == [.unfixed] && results[3].matches.first?.affected.noDSA == true)
        #expect(results.allSatisfy { $0.problems.isEmpty })
    }
}
