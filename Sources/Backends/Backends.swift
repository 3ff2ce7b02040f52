import BlobStorage
import FileSystemStorage
import Foundation
import Logging
import RegistryCore
import RegistryStore
import S3Storage
import SQLiteStore

/// Which backends hold a registry's metadata and blobs. The embedded default keeps both under one
/// data directory; PostgreSQL and S3-compatible backends are added here as further cases.
public struct BackendConfiguration: Sendable, Equatable {
    public enum Metadata: Sendable, Equatable {
        /// One SQLite database file.
        case sqlite(path: String)
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

    public init(endpoint: String, region: String, bucket: String, prefix: String, accessKey: String, secretKey: String) {
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.prefix = prefix
        self.accessKey = accessKey
        self.secretKey = secretKey
    }

    public var description: String {
        "S3BlobSettings(endpoint: \(endpoint), region: \(region), bucket: \(bucket), prefix: \(prefix), accessKey: \(accessKey), secretKey: <redacted>)"
    }

    func location() throws(S3Error) -> S3Location {
        try S3Location(endpoint: endpoint, region: region, bucket: bucket,
                       credentials: S3Credentials(accessKey: accessKey, secretKey: secretKey))
    }

    /// Nil when these settings can open a store, else what is wrong with them.
    public func problem() -> String? {
        do {
            _ = try S3BlobStore(client: S3Client(location: try location()), prefix: prefix)
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

    public init(metadata: any MetadataBackend, blobs: any BlobStore) {
        self.metadata = metadata
        self.blobs = blobs
    }

    public static func open(_ configuration: BackendConfiguration) throws -> Backends {
        let metadata: any MetadataBackend
        switch configuration.metadata {
        case .sqlite(let path): metadata = try SQLiteMetadataStore(path: path)
        }
        let blobs: any BlobStore
        switch configuration.blobs {
        case .filesystem(let root): blobs = try FileSystemBlobStore(root: root)
        case .s3(let settings):
            blobs = try S3BlobStore(client: S3Client(location: try settings.location(), logger: Logger(label: "berth.s3")),
                                    prefix: settings.prefix, logger: Logger(label: "berth.s3"))
        }
        return Backends(metadata: metadata, blobs: blobs)
    }

    /// Opens (creating on first use) the embedded default under `dataDirectory`, which holds keys,
    /// sealed secrets and every image: it is made its owner's alone.
    public static func embedded(dataDirectory: String) throws -> Backends {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dataDirectory)
        return try open(.embedded(dataDirectory: dataDirectory))
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
