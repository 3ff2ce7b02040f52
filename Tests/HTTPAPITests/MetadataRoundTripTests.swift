import Access
import Backends
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import Testing
@testable import HTTPAPI

/// The hot pull path does not reach the database: a manifest GET or HEAD served from the read
/// cache, Bearer token checked, adds no metadata round trip; the count is on /metrics.
@Suite struct MetadataRoundTripTests {
    @Test func aCachedManifestGetMakesNoMetadataRoundTripOnSQLite() async throws {
        let dir = tempDataDir()
        try await cachedGetsMakeNoRoundTrip(try Registry.embedded(dataDirectory: dir, configuration: Self.configuration, logger: Self.logger),
                                            dir: dir)
    }

    @Test func aCachedManifestGetMakesNoMetadataRoundTripOnPostgreSQL() async throws {
        let dir = tempDataDir()
        let database = try TestPostgres.createDatabase()
        defer { TestPostgres.dropDatabase(database.name) }
        let backends = try await Backends.open(BackendConfiguration(metadata: .postgres(url: database.url, passwordFile: nil),
                                                                    blobs: .filesystem(root: dir + "/storage")), logger: Self.logger)
        let counted = try #require(backends.metadata as? any CountsMetadataRoundTrips)
        #expect(counted.roundTrips.backend == "postgres")
        try await cachedGetsMakeNoRoundTrip(Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: Self.configuration,
                                                     logger: Self.logger), dir: dir)
    }

    /// A cache clock that stands still: the TTL backstop (which drops entries after 5 s however
    /// long a loaded machine takes over the loop) stays out of the count.
    static let configuration: RegistryConfiguration = {
        var configuration = RegistryConfiguration()
        configuration.cacheClock = { 1000 }
        return configuration
    }()

    static let logger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()

    /// Pushes an image, GETs its manifest by tag and by digest once (now cached), then GETs and
    /// HEADs it 75 times more with a Bearer token: no round trip. A tag move makes the next GET read.
    /// The responder `berth serve` uses, without its background services (event consumers,
    /// lifecycle, cache invalidation): they make round trips of their own on their own schedule.
    func cachedGetsMakeNoRoundTrip(_ registry: Registry, dir: String) async throws {
        let logger = Self.logger
        let counted = try #require(registry.metadata as? any CountsMetadataRoundTrips)
        // A clock that stands still: the periodic access-state check (once per interval) stays out.
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore,
                                                  keyDirectory: dir + "/keys", clock: { 1000 })
        _ = try await access.bootstrap(ownerPassword: ownerPassword)
        let responder = BerthServer.makeResponder(registry: registry, access: access, features: standardFeatures(registry),
                                                  serviceName: "registry.test", logger: logger)
        let app = Application(responder: responder, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.router) { client in
            #expect(try await push(client, "team/app", tag: "v1", auth: owner, seed: "1") == .created)
            var headers = bearer(try await token(client, owner, scope: "repository:team/app:pull"))
            headers[.accept] = MediaType.ociManifest
            func get(_ reference: String, _ method: HTTPRequest.Method = .get) async throws -> TestResponse {
                try await client.execute(uri: "/v2/team/app/manifests/\(reference)", method: method, headers: headers)
            }
            let first = try await get("v1")
            #expect(first.status == .ok)
            let digest = try #require(first.headers[.testDigest])
            #expect(try await get(digest).status == .ok)   // both references now cached

            let before = counted.roundTrips.total
            for _ in 0..<25 {
                #expect(try await get("v1").status == .ok)
                #expect(try await get(digest).status == .ok)
                #expect(try await get("v1", .head).status == .ok)
            }
            #expect(counted.roundTrips.total == before)

            // The tag moves: the cache is dropped and the next GET reads the database again.
            #expect(try await push(client, "team/app", tag: "v1", auth: owner, seed: "2") == .created)
            let afterMove = counted.roundTrips.total
            let moved = try await get("v1")
            #expect(moved.status == .ok && moved.headers[.testDigest] != digest)
            #expect(counted.roundTrips.total > afterMove)
        }
    }

    @Test func metricsCountTheMetadataRoundTrips() async throws {
        let app = try await makeApp()
        try await app.test(.router) { client in
            try await V2(client: client).pushImage("team/app", tag: "v1", seed: "1")
            let text = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("berth_metadata_round_trips_total{backend=\"sqlite\"}") })
            let value = try #require(line.split(separator: " ").last.flatMap { Double($0) })
            #expect(value > 0)
            // SQLite never asks for a transaction to be run again
            let retries = try #require(text.split(separator: "\n").first { $0.hasPrefix("berth_metadata_transaction_retries_total{backend=\"sqlite\"}") })
            #expect(retries.split(separator: " ").last.flatMap { Double($0) } == 0)
            // the counter only grows, from one scrape to the next
            let again = String(buffer: try await client.execute(uri: "/metrics", method: .get).body)
            let next = try #require(again.split(separator: "\n").first { $0.hasPrefix("berth_metadata_round_trips_total{backend=\"sqlite\"}") })
            #expect(try #require(next.split(separator: " ").last.flatMap { Double($0) }) > value)
        }
    }
}

/// A database of the test's own on the PostgreSQL test service (BERTH_TEST_POSTGRES_URL, else the
/// project's service, started here as the store tests do), made and dropped with psql.
enum TestPostgres {
    static let adminURL: String = {
        if let url = ProcessInfo.processInfo.environment["BERTH_TEST_POSTGRES_URL"], !url.isEmpty { return url }
        let output = run(root + "/scripts/services/postgres", ["start"])
        guard let url = output?.trimmingCharacters(in: .whitespacesAndNewlines), !url.isEmpty else {
            fatalError("scripts/services/postgres start failed")
        }
        return url
    }()

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// The URL of a new, empty database.
    static func createDatabase() throws -> (name: String, url: String) {
        let name = "http_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try #require(psql("CREATE DATABASE \(name)"))
        var components = try #require(URLComponents(string: adminURL))
        components.path = "/" + name
        return (name, try #require(components.string))
    }

    static func dropDatabase(_ name: String) {
        _ = psql("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    }

    /// Runs one statement made here (never from input); the password goes by environment.
    private static func psql(_ sql: String) -> Bool {
        guard var components = URLComponents(string: adminURL) else { return false }
        let password = components.password ?? ""
        components.password = nil
        return run("/usr/bin/psql", [components.string ?? "", "-v", "ON_ERROR_STOP=1", "-qc", sql],
                   environment: ["PGPASSWORD": password]) != nil
    }

    /// The standard output of a command that exited 0, else nil.
    private static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? String(data: data, encoding: .utf8) : nil
    }
}
