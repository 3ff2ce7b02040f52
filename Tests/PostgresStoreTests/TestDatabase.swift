import Foundation
import Logging
import PostgresNIO
@testable import PostgresStore
import Synchronization

/// The PostgreSQL the tests use: BERTH_TEST_POSTGRES_URL (scripts/test exports it), else the
/// project's own test service, started here (`scripts/services/postgres start`), so a plain
/// `swift test` works on a development machine. The tests never skip for want of a database.
enum TestDatabase {
    static let url: String = {
        if let url = ProcessInfo.processInfo.environment["BERTH_TEST_POSTGRES_URL"], !url.isEmpty { return url }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let process = Process()
        process.executableURL = root.appendingPathComponent("scripts/services/postgres")
        process.arguments = ["start"]
        let output = Pipe()
        process.standardOutput = output
        do { try process.run() } catch { fatalError("cannot run scripts/services/postgres start: \(error)") }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
              let url = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !url.isEmpty else {
            fatalError("scripts/services/postgres start failed (exit \(process.terminationStatus))")
        }
        return url
    }()

    static let logger = Logger(label: "berth.postgres.tests")

    /// A configuration on a new, empty schema of the test database.
    static func freshSchema() async throws -> PostgresConfiguration {
        var configuration = try PostgresConfiguration(url: url)
        configuration.maximumConnections = 4
        let schema = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await execute(configuration, "CREATE SCHEMA \(schema)")
        configuration.schema = schema
        return configuration
    }

    static func dropSchema(_ configuration: PostgresConfiguration) async throws {
        guard let schema = configuration.schema else { return }
        var c = configuration
        c.schema = nil
        try await execute(c, "DROP SCHEMA IF EXISTS \(schema) CASCADE")
    }

    /// A connection of the test's own, on the schema of `c`.
    static func connect(_ c: PostgresConfiguration) async throws -> PostgresConnection {
        var config = PostgresConnection.Configuration(host: c.host, port: c.port, username: c.username, password: c.password,
                                                      database: c.database, tls: .disable)
        if let schema = c.schema { config.options.additionalStartupParameters = [("search_path", schema)] }
        return try await PostgresConnection.connect(configuration: config, id: 1, logger: logger)
    }

    /// Runs one statement (test set-up only: the text is made here, never from input).
    static func execute(_ c: PostgresConfiguration, _ sql: String) async throws {
        let conn = try await connect(c)
        do {
            try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger)
            try await conn.close()
        } catch {
            try? await conn.close()
            throw error
        }
    }

    /// A fresh, empty schema, dropped after `body`.
    static func withSchema<T>(_ body: (PostgresConfiguration) async throws -> T) async throws -> T {
        let configuration = try await freshSchema()
        do {
            let value = try await body(configuration)
            try await dropSchema(configuration)
            return value
        } catch {
            try? await dropSchema(configuration)
            throw error
        }
    }

    /// A fresh store on a schema of its own, closed and dropped after `body`.
    static func withStore<T>(_ body: (PostgresMetadataStore) async throws -> T) async throws -> T {
        let configuration = try await freshSchema()
        let store = try await PostgresMetadataStore.open(configuration, logger: logger)
        do {
            let value = try await body(store)
            await store.close()
            try await dropSchema(configuration)
            return value
        } catch {
            await store.close()
            try? await dropSchema(configuration)
            throw error
        }
    }
}

/// The store a conformance case's factory made, kept to close it after the case.
final class StoreSlot: Sendable {
    private let store = Mutex<PostgresMetadataStore?>(nil)
    func set(_ s: PostgresMetadataStore) { store.withLock { $0 = s } }
    var value: PostgresMetadataStore? { store.withLock { $0 } }
}
