import Foundation
import NIOConcurrencyHelpers
import S3Storage
import SQLiteStore

/// The S3 service the tests use: the one `scripts/test` started (BERTH_TEST_S3_* in the
/// environment), or else one this process starts with `scripts/services/ceph-rgw start` (which
/// reuses a running one). Never skipped: without an object store these tests fail.
enum S3TestService {
    struct Settings: Sendable {
        let endpoint: String, accessKey: String, secretKey: String, region: String
    }

    static let settings = Task<Settings, any Error> {
        var env = ProcessInfo.processInfo.environment
        if env["BERTH_TEST_S3_ENDPOINT"] == nil {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let process = Process()
            process.executableURL = root.appendingPathComponent("scripts/services/ceph-rgw")
            process.arguments = ["start"]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw S3Error.invalidConfiguration("scripts/services/ceph-rgw start failed (\(process.terminationStatus))")
            }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let assignment = line.hasPrefix("export ") ? line.dropFirst(7) : line
                guard let eq = assignment.firstIndex(of: "=") else { continue }
                env[String(assignment[..<eq])] = String(assignment[assignment.index(after: eq)...])
            }
        }
        guard let endpoint = env["BERTH_TEST_S3_ENDPOINT"], let access = env["BERTH_TEST_S3_ACCESS_KEY"],
              let secret = env["BERTH_TEST_S3_SECRET_KEY"]
        else { throw S3Error.invalidConfiguration("no BERTH_TEST_S3_* settings") }
        return Settings(endpoint: endpoint, accessKey: access, secretKey: secret, region: env["BERTH_TEST_S3_REGION"] ?? "us-east-1")
    }

    /// One fresh bucket for this test process; every store gets a fresh prefix in it.
    static let bucket = Task<String, any Error> {
        let name = "berth-test-" + UUID().uuidString.lowercased().prefix(12)
        try await client(bucket: name).createBucket()
        return name
    }

    static func client(bucket: String, secret: String? = nil) async throws -> S3Client {
        let s = try await settings.value
        return S3Client(location: try S3Location(endpoint: s.endpoint, region: s.region, bucket: bucket,
                                                 credentials: S3Credentials(accessKey: s.accessKey, secretKey: secret ?? s.secretKey)))
    }

    /// A store over a new, empty prefix (parts of S3's minimum size, to keep multipart tests small).
    /// Stores over one prefix share one metadata store, as nodes of one registry do.
    static func store(prefix: String = "case-" + UUID().uuidString.lowercased(), client given: S3Client? = nil) async throws -> S3BlobStore {
        let client = if let given { given } else { try await client(bucket: try await bucket.value) }
        return try S3BlobStore(client: client, prefix: prefix, sessions: try sessions(for: prefix), partSize: S3BlobStore.minimumPartSize)
    }

    private static let metadata = NIOLockedValueBox<[String: SQLiteMetadataStore]>([:])

    /// The upload sessions of the stores over `prefix` (a SQLite store of their own).
    static func sessions(for prefix: String) throws -> SQLiteMetadataStore {
        try metadata.withLockedValue { map in
            if let store = map[prefix] { return store }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("berth-s3-sessions-" + UUID().uuidString)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let store = try SQLiteMetadataStore(path: directory.appendingPathComponent("metadata.sqlite").path)
            map[prefix] = store
            return store
        }
    }
}
