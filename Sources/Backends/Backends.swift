import BlobStorage
import FileSystemStorage
import Foundation
import Logging
import PostgresStore
import RegistryCore
import RegistryStore
import S3Storage
import SQLiteStore
import ServiceLifecycle

/// Which backends hold a registry's metadata and blobs. The embedded default keeps both under one
/// data directory; PostgreSQL and S3-compatible backends are added here as further cases.
public struct BackendConfiguration: Sendable, Equatable {
    public enum Metadata: Sendable, Equatable, CustomStringConvertible {
        /// One SQLite database file.
        case sqlite(path: String)
        /// A PostgreSQL database: a `postgres://` URL, its password in the URL or in `passwordFile`.
        case postgres(url: String, passwordFile: String?)

        /// Never shows a password.
        public var description: String {
            switch self {
            case .sqlite(let path): "sqlite \(path)"
            case .postgres(let url, _): "postgres " + PostgresConfiguration.redact(url)
            }
        }

        /// Why `url` cannot name a PostgreSQL database (nil: it can). The answer never quotes it.
        public static func postgresURLProblem(_ url: String) -> String? {
            do {
                _ = try PostgresConfiguration(url: url)
                return nil
            } catch {
                return "\(error)"
            }
        }
    }

    public enum Blobs: Sendable, Equatable {
        /// Content-addressed files under a directory.
        case filesystem(root: String)
        /// Objects in an S3-compatible bucket.
        case s3(S3BlobSettings)
    }

    public var metadata: Metadata
    public var blobs: Blobs

    public init(metadata: Metadata, blobs: Blobs) {
        self.metadata = metadata
        self.blobs = blobs
    }

    /// The embedded default: `metadata.sqlite` and `storage/` under `dataDirectory`.
    public static func embedded(dataDirectory: String) -> BackendConfiguration {
        BackendConfiguration(metadata: .sqlite(path: dataDirectory + "/metadata.sqlite"),
                             blobs: .filesystem(root: dataDirectory + "/storage"))
    }
}

/// Where the S3 blob store is and the key pair it uses. The endpoint is operator configuration, so
/// it may be a loopback or private address (the outbound policy that guards webhooks and OIDC does
/// not apply). Its description never shows the secret key.
public struct S3BlobSettings: Sendable, Equatable, CustomStringConvertible {
    public var endpoint: String
    public var region: String
    public var bucket: String
    /// Key prefix inside the bucket ("" for none), so several registries can share one bucket.
    public var prefix: String
    public var accessKey: String
    public var secretKey: String
    /// Whether a plain-http endpoint on a host other than loopback is accepted (off: refused, as
    /// answers to reads are not authenticated and blob bytes would cross the network in the clear).
    public var allowInsecureHTTP: Bool
    /// Blob GETs are answered 307 to a presigned URL valid this many seconds; nil: never.
    public var redirectTTL: Int?

    public init(endpoint: String, region: String, bucket: String, prefix: String, accessKey: String, secretKey: String,
                allowInsecureHTTP: Bool = false, redirectTTL: Int? = nil) {
        self.allowInsecureHTTP = allowInsecureHTTP
        self.redirectTTL = redirectTTL
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.prefix = prefix
        self.accessKey = accessKey
        self.secretKey = secretKey
    }

    public var description: String {
        "S3BlobSettings(endpoint: \(endpoint), region: \(region), bucket: \(bucket), prefix: \(prefix), accessKey: \(accessKey), secretKey: <redacted>, allowInsecureHTTP: \(allowInsecureHTTP), redirectTTL: \(redirectTTL.map(String.init) ?? "-"))"
    }

    func location() throws(S3Error) -> S3Location {
        let location = try S3Location(endpoint: endpoint, region: region, bucket: bucket,
                                      credentials: S3Credentials(accessKey: accessKey, secretKey: secretKey))
        if location.scheme == "http", !allowInsecureHTTP, !Self.isLoopback(location.host) {
            throw .invalidConfiguration("""
                endpoint '\(endpoint)' is plain http to a host that is not loopback: blob bytes and the answers to \
                reads would cross the network unprotected; use https, or set s3-allow-insecure-http true to accept it
                """)
        }
        return location
    }

    /// localhost, 127.0.0.0/8 or ::1.
    static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h == "::1" || h == "0:0:0:0:0:0:0:1" { return true }
        let octets = h.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// Nil when these settings can open a store, else what is wrong with them.
    public func problem() -> String? {
        do {
            _ = try location()
            _ = try S3BlobStore.normalized(prefix: prefix)
            if let redirectTTL, !(1...3600).contains(redirectTTL) {
                return "s3-redirect-ttl must be between 1 and 3600 seconds"
            }
            return nil
        } catch {
            return error.description
        }
    }
}

/// The opened backends: the one metadata database every part of the registry shares (each part is
/// handed the narrow store protocol it needs) and the blob store.
public struct Backends: Sendable {
    public let metadata: any MetadataBackend
    public let blobs: any BlobStore
    /// What the backends need run while the registry runs (a connection pool), to be listed in the
    /// service group before the server: they close after it has drained.
    public let services: [any Service]

    public init(metadata: any MetadataBackend, blobs: any BlobStore, services: [any Service] = []) {
        self.metadata = metadata
        self.blobs = blobs
        self.services = services
    }

    public static func open(_ configuration: BackendConfiguration, logger: Logger = Logger(label: "berth.backends")) async throws -> Backends {
        switch configuration.metadata {
        case .sqlite(let path):
            let store = try SQLiteMetadataStore(path: path)
            return Backends(metadata: store, blobs: try openBlobs(configuration.blobs, metadata: store))
        case .postgres(let url, let passwordFile):
            let store = try await openPostgres(url: url, passwordFile: passwordFile, logger: logger)
            logger.info("metadata store opened", metadata: ["store": "\(store)"])
            return Backends(metadata: store, blobs: try openBlobs(configuration.blobs, metadata: store), services: [store])
        }
    }

    /// The metadata store alone, for a break-glass command (no blob store), with what closes it
    /// when the command is done (PostgreSQL's connection pool). PostgreSQL's schema is not
    /// migrated: a database whose schema is not this build's is refused.
    public static func openMetadata(_ configuration: BackendConfiguration.Metadata, logger: Logger = Logger(label: "berth.backends"))
        async throws -> (store: any MetadataBackend, close: @Sendable () async -> Void) {
        switch configuration {
        case .sqlite(let path):
            return (try SQLiteMetadataStore(path: path), {})
        case .postgres(let url, let passwordFile):
            let store = try await openPostgres(url: url, passwordFile: passwordFile, migrate: false, logger: logger)
            return (store, { await store.close() })
        }
    }

    private static func openPostgres(url: String, passwordFile: String?, migrate: Bool = true, logger: Logger) async throws
        -> PostgresMetadataStore {
        let password = try passwordFile.map(readPasswordFile)
        return try await PostgresMetadataStore.open(try PostgresConfiguration(url: url, password: password), migrate: migrate, logger: logger)
    }

    /// The blob store; the S3 one keeps its upload state in `metadata`, so any node continues any upload.
    private static func openBlobs(_ configuration: BackendConfiguration.Blobs, metadata: any MetadataBackend) throws -> any BlobStore {
        switch configuration {
        case .filesystem(let root): try FileSystemBlobStore(root: root)
        case .s3(let settings):
            try S3BlobStore(client: S3Client(location: try settings.location(), logger: Logger(label: "berth.s3")),
                            prefix: settings.prefix, sessions: metadata, redirectTTL: settings.redirectTTL,
                            logger: Logger(label: "berth.s3"))
        }
    }

    /// A password kept in a file (its first line).
    private static func readPasswordFile(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw PostgresStoreError("cannot read the PostgreSQL password file \(path)")
        }
        return String(text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            .trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
    }

    /// Opens (creating on first use) the embedded default under `dataDirectory`, which holds keys,
    /// sealed secrets and every image: it is made its owner's alone.
    public static func embedded(dataDirectory: String) throws -> Backends {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dataDirectory)
        let configuration = BackendConfiguration.embedded(dataDirectory: dataDirectory)
        guard case .sqlite(let path) = configuration.metadata else { preconditionFailure("the embedded default is SQLite") }
        let store = try SQLiteMetadataStore(path: path)
        return Backends(metadata: store, blobs: try openBlobs(configuration.blobs, metadata: store))
    }
}

extension Registry {
    /// A registry on the embedded default backends under `dataDirectory`.
    public static func embedded(dataDirectory: String, configuration: RegistryConfiguration = .init(),
                                logger: Logger = Logger(label: "berth.registry")) throws -> Registry {
        let backends = try Backends.embedded(dataDirectory: dataDirectory)
        return Registry(blobs: backends.blobs, metadata: backends.metadata, configuration: configuration, logger: logger)
    }
}
