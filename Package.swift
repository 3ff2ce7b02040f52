// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "berth",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "berth", targets: ["BerthCLI"]),
        .executable(name: "berth-credential-provider", targets: ["BerthCredentialProvider"]),
        .executable(name: "docker-credential-berth", targets: ["DockerCredentialBerth"]),
        // For the fuzz package (fuzz/, its own Package.swift): it drives Scanning's parsers
        // through `@_spi(Fuzzing) ScanFuzzEntry`. Nothing else of the package uses this product.
        .library(name: "Scanning", targets: ["Scanning"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        // FilePath, which swift-subprocess's API takes (already in the graph through swift-nio).
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        // The web console's server-rendered pages (templates escape by default).
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        // The management API's request and response bodies, shared by the server and the CLI.
        .target(name: "BerthAPIContract", swiftSettings: strict),
        .target(name: "OCIModel", dependencies: [
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strict),
        // The blob store protocol; FileSystemStorage is the embedded backend (S3 next).
        .target(name: "BlobStorage", dependencies: [
            "OCIModel",
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: strict),
        // Store protocols and record types only: no database.
        .target(name: "RegistryStore", dependencies: ["OCIModel"], swiftSettings: strict),
        // Backends, each in its own target. Only SQLiteStore imports GRDB.
        .target(name: "SQLiteStore", dependencies: [
            "OCIModel", "RegistryStore",
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: strict),
        // The PostgreSQL metadata backend: the only target that imports PostgresNIO.
        .target(name: "PostgresStore", dependencies: [
            "OCIModel", "RegistryStore",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        .target(name: "FileSystemStorage", dependencies: [
            "OCIModel", "BlobStorage",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strict),
        // The S3-compatible blob backend: SigV4 over swift-crypto, an S3 client over AsyncHTTPClient.
        .target(name: "S3Storage", dependencies: [
            "OCIModel", "BlobStorage", "RegistryStore",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "Access", dependencies: [
            "OCIModel", "RegistryStore",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strict),
        .target(name: "Webhooks", dependencies: [
            "OCIModel", "RegistryStore", "RegistryCore", "Access",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        .target(name: "RegistryCore", dependencies: [
            "OCIModel", "BlobStorage", "RegistryStore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: strict),
        // Opens the backends a configuration names and hands them to the core: the only target
        // besides the backends' own that knows them.
        .target(name: "Backends", dependencies: [
            "RegistryCore", "RegistryStore", "BlobStorage", "SQLiteStore", "PostgresStore", "FileSystemStorage", "S3Storage",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        // Pull admission (locks, quarantine, then the checks features contribute, such as content
        // trust): the one chain /v2/ reads and the Kubernetes admission endpoints both call.
        .target(name: "Admission", dependencies: ["OCIModel", "RegistryCore", "RegistryStore", "Access"], swiftSettings: strict),
        // The HTTP layer: the hand-routed /v2/ tree, Hummingbird's router for the rest, and the
        // `RegistryFeature` protocol through which feature targets plug in. It imports none of them.
        .target(name: "HTTPAPI", dependencies: [
            "OCIModel", "BlobStorage", "RegistryStore", "RegistryCore", "Access", "Admission", "BerthAPIContract",
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: strict),
        // Features: each contributes routes, services and pull checks through HTTPAPI's
        // `RegistryFeature`; the composition root (berth serve, the HTTP tests) picks them.
        .target(name: "WebhooksAPI", dependencies: [
            "HTTPAPI", "Webhooks", "RegistryStore", "BerthAPIContract",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        // The web console under /console/: server-rendered pages over the same core, store and
        // Access calls as /api/v1.
        .target(name: "ConsoleFeature", dependencies: [
            "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "Admission", "BerthAPIContract", "OCIModel",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Mustache", package: "swift-mustache"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strict),
        .target(name: "ContentTrustFeature", dependencies: [
            "HTTPAPI", "Admission", "RegistryCore", "RegistryStore", "Access", "OCIModel", "Signing", "BerthAPIContract",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strict),
        // Issue 13: replicas in other regions (`/api/v1/replications`), their sealed credentials and status.
        .target(name: "ReplicationFeature", dependencies: [
            "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "BerthAPIContract", "OCIModel", "UpstreamClient",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // Issue 15 wired into the server: scan on push, stored inventories, SBOM referrers, /api/v1/scans,
        // and the advisory database (`Advisory…` files: import, scheduled update, /api/v1/scan/db).
        .target(name: "ScanningFeature", dependencies: [
            "HTTPAPI", "RegistryCore", "RegistryStore", "Scanning", "Access", "Admission", "BerthAPIContract", "OCIModel", "BlobStorage",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        // Import (issue 17): /api/v1/imports, a server-side copy from another registry.
        .target(name: "ImportFeature", dependencies: [
            "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "OCIModel", "UpstreamClient", "BerthAPIContract",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strict),
        // The pull-through cache (issue 17 item 2): /api/v1/cache-rules, /api/v1/credential-sets, and
        // the ContentFallback that fills missed /v2/ reads from a rule's upstream over UpstreamClient.
        .target(name: "CacheFeature", dependencies: [
            "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "OCIModel", "UpstreamClient", "BerthAPIContract",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strict),
        .target(name: "AdmissionFeature", dependencies: [
            "HTTPAPI", "Admission", "RegistryCore", "Access", "OCIModel",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], swiftSettings: strict),
        // Build tasks (issue 16): /api/v1/tasks, the run queue (a leased service), run identities.
        .target(name: "TasksFeature", dependencies: [
            "HTTPAPI", "RegistryCore", "RegistryStore", "Access", "Tasks", "TaskRunner", "UpstreamClient", "BerthAPIContract", "OCIModel",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: strict),
        .target(name: "Signing", dependencies: [
            "OCIModel",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ], swiftSettings: strict),
        // A client of upstream OCI registries treated as untrusted (import, next the pull-through
        // cache and replication): every destination checked by Access.OutboundPolicy.
        .target(name: "UpstreamClient", dependencies: [
            "OCIModel", "Access",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: strict),
        .target(name: "Tasks", dependencies: [
            "OCIModel",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: strict),
        // Issue 15's pure logic. CompressNIO (zlib streaming inflate) decompresses gzip layers as
        // they stream; zstd is loaded from the system's libzstd at run time (no build dependency).
        .target(name: "Scanning", dependencies: [
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "CompressNIO", package: "compress-nio"),
            // The system SQLite that GRDB links (a module map, no code of GRDB's): rpm databases
            // (rpmdb.sqlite) are read from memory through its C API.
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ], swiftSettings: strict),
        // The client side of credentials: the stored login of `berth login`, the token endpoints'
        // client, and the kubelet credential provider and docker credential helper protocols.
        .target(name: "BerthCredentials", dependencies: [
            "OCIModel", "BerthAPIContract",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ], swiftSettings: strict),
        .executableTarget(name: "BerthCredentialProvider", dependencies: [
            "BerthCredentials",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        .executableTarget(name: "DockerCredentialBerth", dependencies: ["BerthCredentials"], swiftSettings: strict),
        // Runs task files (buildah, podman) as child processes: the only target that starts processes.
        .target(name: "TaskRunner", dependencies: [
            "Tasks", "OCIModel",
            .product(name: "Subprocess", package: "swift-subprocess"),
            .product(name: "SystemPackage", package: "swift-system"),
        ], swiftSettings: strict),
        .executableTarget(name: "BerthCLI", dependencies: [
            "HTTPAPI", "RegistryCore", "Webhooks", "Signing", "Backends", "SQLiteStore",
            "WebhooksAPI", "ContentTrustFeature", "AdmissionFeature", "TasksFeature", "Tasks", "BerthAPIContract", "BerthCredentials", "Scanning",
            "ReplicationFeature", "ScanningFeature", "ConsoleFeature", "ImportFeature", "CacheFeature",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            // `berth scan inventory` streams layer files of an OCI layout (Hummingbird builds it already).
            .product(name: "_NIOFileSystem", package: "swift-nio"),
        ], swiftSettings: strict),
        // Backend conformance suites: one suite of the store contracts, run against any backend by
        // a test target that hands it a factory of fresh, empty stores.
        .target(name: "MetadataStoreConformance", dependencies: ["RegistryStore", "OCIModel"],
                path: "Tests/Support/MetadataStoreConformance", swiftSettings: strict),
        .target(name: "BlobStoreConformance", dependencies: [
            "BlobStorage", "OCIModel",
            .product(name: "NIOCore", package: "swift-nio"),
        ], path: "Tests/Support/BlobStoreConformance", swiftSettings: strict),
        .testTarget(name: "OCIModelTests", dependencies: ["OCIModel"]),
        .testTarget(name: "BlobStorageTests", dependencies: ["BlobStorage", "FileSystemStorage", "BlobStoreConformance"]),
        .testTarget(name: "S3StorageTests", dependencies: [
            "S3Storage", "BlobStorage", "BlobStoreConformance", "OCIModel", "RegistryStore", "SQLiteStore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "RegistryStoreTests", dependencies: ["RegistryStore", "SQLiteStore", "MetadataStoreConformance"]),
        .testTarget(name: "PostgresStoreTests", dependencies: [
            "PostgresStore", "RegistryStore", "OCIModel", "MetadataStoreConformance", "Access", "Webhooks",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
        ]),
        .testTarget(name: "RegistryCoreTests", dependencies: ["RegistryCore", "Backends", "BlobStoreConformance"]),
        .testTarget(name: "AccessTests", dependencies: [
            "Access", "Backends", "SQLiteStore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "WebhooksTests", dependencies: [
            "Webhooks", "Access", "Backends", "SQLiteStore",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "SigningTests", dependencies: ["Signing"]),
        .testTarget(name: "BerthCredentialsTests", dependencies: ["BerthCredentials", "Access"]),
        .testTarget(name: "UpstreamClientTests", dependencies: [
            "UpstreamClient", "Access", "OCIModel",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "ImportFeatureTests", dependencies: [
            "ImportFeature", "UpstreamClient", "Backends", "RegistryCore", "Access", "OCIModel", "BerthAPIContract",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "CacheFeatureTests", dependencies: [
            "CacheFeature", "ImportFeature", "HTTPAPI", "UpstreamClient", "Backends", "RegistryCore", "RegistryStore", "Access", "OCIModel", "BerthAPIContract",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "TasksTests", dependencies: ["Tasks", "OCIModel"]),
        .testTarget(name: "ReplicationTests", dependencies: [
            "ReplicationFeature", "RegistryStore", "BerthAPIContract", "OCIModel", "Access",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "TaskRunnerTests", dependencies: ["TaskRunner", "Tasks", "OCIModel"]),
        .testTarget(name: "TasksFeatureTests", dependencies: [
            "TasksFeature", "HTTPAPI", "Access", "Backends", "SQLiteStore", "RegistryStore", "RegistryCore", "BerthAPIContract", "OCIModel", "TaskRunner",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "ScanningTests", dependencies: [
            "Scanning",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "CompressNIO", package: "compress-nio"),
            // Hostile SQLite files for the rpm cataloger's tests, written through the C API.
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "ScanningFeatureTests", dependencies: [
            "ScanningFeature", "Scanning", "HTTPAPI", "Backends", "RegistryCore", "RegistryStore", "OCIModel", "BerthAPIContract", "Access",
            "Admission", "AdmissionFeature",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "CompressNIO", package: "compress-nio"),
        ]),
        .testTarget(name: "ConsoleFeatureTests", dependencies: [
            "ConsoleFeature", "HTTPAPI", "Access", "Backends", "RegistryCore", "RegistryStore", "OCIModel",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "HTTPAPITests", dependencies: [
            "HTTPAPI", "Admission", "Signing", "BlobStorage", "Backends", "ContentTrustFeature", "AdmissionFeature", "BerthAPIContract",
            "ReplicationFeature", "ScanningFeature", "BlobStoreConformance",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
