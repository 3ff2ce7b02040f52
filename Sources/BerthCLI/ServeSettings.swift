import Access
import ArgumentParser
import Backends
import Foundation
import HTTPAPI
import OCIModel
import ReplicationFeature
import ScanningFeature
import Yams

/// Settings of `berth serve`. Precedence: command-line flag, then environment variable
/// (`BERTH_DATA`, `BERTH_LISTEN`, ...), then the `--config` file (JSON or YAML), then the default.
///
/// Every setting is described once, in `ServeSettings.schema`: its configuration key, its flag
/// (the same name, when it has one), its environment variable, its default and the one parser
/// that reads its value from any of the three sources. `berth serve --help` and the README's
/// table are made from, and tested against, that schema.
struct ServeSettings: Equatable {
    var data: String = "./berth-data"
    var listen: String = "127.0.0.1:5000"
    var logLevel: String = "info"
    var logFormat: LogFormat = .text
    var uploadMaxAgeSeconds: Double = 24 * 3600
    var janitorIntervalSeconds: Double = 600
    var lifecycleTickSeconds: Double = 30
    /// How long a lease on background work lives without renewal (renewed every third of it):
    /// how long the cluster waits for a node that stopped answering.
    var leaseTTLSeconds: Double = 15
    /// Inventory every pushed image and push its SBOMs as referrers (issue 15's scanning feature).
    var scanOnPush = true
    /// The continuous re-match keeps current only images pulled or pushed within this many days; 0: all.
    var scanRematchDays = 30
    /// Base-image triggers of one build task within this many seconds are coalesced.
    var taskBaseTriggerWindowSeconds: Double = 5
    /// This region's name (issue 13): the origin of the changes made here, as peers see them.
    var region: String = "default"
    /// This region's own data endpoint (issue 13 item 4): upload sessions name it, and blob GETs
    /// are routed to other regions only when it is set.
    var dataEndpoint: String?
    /// Client networks mapped to regions (`CIDR=REGION`), longest prefix first.
    var clientNetworks = ClientNetworks()
    /// Signed data-endpoint URLs are bound to the client's address.
    var bindClient = false
    var maxConcurrentUploads: Int = 512
    /// Event-loop threads and blocking-pool threads of the process; nil: one per core (NIO's
    /// default). Several nodes on one machine each take a share of its cores.
    var threads: Int?
    /// How long SIGINT/SIGTERM waits for in-flight requests before the process exits anyway.
    var shutdownTimeoutSeconds: Double = 30
    /// The admin user's name (the registry's name).
    var registryName: String = "berth"
    /// External URL clients use, when Berth sits behind a proxy (for the token realm).
    var publicURL: String?
    /// The token service's name (the audience of tokens); default: the public URL's host, else the listen address.
    var serviceName: String?
    /// PEM certificate (chain) and private key: serve HTTPS.
    var tlsCert: String?
    var tlsKey: String?
    /// Address ranges and host names Berth may send webhooks and OIDC requests to although they
    /// are loopback, private or otherwise non-public (comma-separated).
    var outboundAllow: String?
    /// Advisory feeds `berth scan db update` downloads (`NAME=FORMAT:URL …`) and the seconds
    /// between scheduled updates (nil: only on demand).
    var advisoryFeeds: [AdvisoryFeedConfiguration] = []
    var advisoryUpdateIntervalSeconds: Int?
    /// Seconds between the git-commit triggers' looks at their branches.
    var taskCommitPollSeconds = 60
    var taskBasePollSeconds = 600
    var taskRunDiskQuotaBytes: Int64 = 10 << 30
    var taskBuildMemoryBytes: Int64 = 2 << 30
    var taskInsecureBaseRegistries: Set<String> = []
    var taskRegistryCA: String?
    /// The pull-through cache: how long an upstream 404 is remembered per node (0: not), the
    /// largest upstream blob it stores, and how long it waits to connect to an upstream.
    var cacheNegativeSeconds = 30
    var cacheMaxBlobBytes: Int64 = 10 << 30
    var cacheConnectTimeoutSeconds: Double = 2
    /// Bounds of an uploaded build context: its size, and its members and unpacked size.
    var taskContextMaxBytes = 256 << 20
    var taskContextMaxEntries = 100_000
    var taskContextMaxUnpackedBytes: Int64 = 2 << 30
    /// Which backend keeps the metadata, and which the blobs (the composition root opens them).
    var metadataStore: MetadataStoreKind = .sqlite
    var blobStore: BlobStoreKind = .filesystem
    /// The S3 blob store (blob-store s3). Its key pair comes from BERTH_S3_ACCESS_KEY and
    /// BERTH_S3_SECRET_KEY, else from the credentials file; it is read once settings are resolved.
    var s3Endpoint: String?
    var s3Region: String = "us-east-1"
    var s3Bucket: String?
    var s3Prefix: String = ""
    var s3CredentialsFile: String?
    var s3AllowInsecureHTTP = false
    var s3RedirectBlobGets = false
    var s3RedirectTTL = 300
    var s3Credentials: S3KeyPair?

    /// Compared, never printed: the description hides the secret.
    struct S3KeyPair: Equatable, CustomStringConvertible {
        let accessKey: String
        let secretKey: String
        var description: String { "S3KeyPair(accessKey: \(accessKey), secretKey: <redacted>)" }
    }
    /// The PostgreSQL database of `metadata-store postgres` (a `postgres://` URL), and a file
    /// holding its password (instead of the URL). Never on the command line, never logged.
    var postgresURL: String?
    var postgresPasswordFile: String?
    /// `metadata` and `storage`: the backends as one URL each (they set the settings above, see
    /// `applyLocations`), and the paths their `sqlite:///` and `file:///` forms name.
    var metadataLocation: MetadataLocation?
    var storageLocation: StorageLocation?
    var sqlitePath: String?
    var filesystemRoot: String?
    /// The key-encryption key's file (32 random bytes, raw or base64, owner-only): it seals the key
    /// material the nodes share in the metadata store. Default (sqlite only): `<data>/keys/key-encryption.key`.
    var keyFile: String?

    enum MetadataStoreKind: String, Equatable, CaseIterable {
        /// `metadata.sqlite` under `data`.
        case sqlite
        /// The PostgreSQL database of `postgres-url`.
        case postgres
    }

    enum BlobStoreKind: String, Equatable, CaseIterable {
        /// `storage/` under `data`.
        case filesystem
        /// An S3-compatible bucket (`s3-*` settings).
        case s3
    }

    enum LogFormat: String, Equatable, CaseIterable {
        case text, json
    }

    /// One setting: where it can come from and how its value is read.
    struct Spec: Sendable {
        let key: String
        let environment: String
        /// `--<key>` exists on `berth serve`.
        let hasFlag: Bool
        let defaultText: String
        let summary: String
        let apply: @Sendable (inout ServeSettings, String) throws(SettingError) -> Void
    }

    struct SettingError: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    static let schema: [Spec] = [
        Spec(key: "data", environment: "BERTH_DATA", hasFlag: true, defaultText: "./berth-data",
             summary: "data directory: blobs, upload sessions, metadata.sqlite, keys") { s, v throws(SettingError) in
            s.data = try nonEmpty(v)
        },
        Spec(key: "listen", environment: "BERTH_LISTEN", hasFlag: true, defaultText: "127.0.0.1:5000",
             summary: "address to listen on, HOST:PORT ([v6]:PORT for IPv6)") { s, v throws(SettingError) in
            _ = try parseListen(v)
            s.listen = v
        },
        Spec(key: "log-level", environment: "BERTH_LOG_LEVEL", hasFlag: true, defaultText: "info",
             summary: "one of " + logLevels.joined(separator: ", ") + "; one access-log line per request at info") { s, v throws(SettingError) in
            guard logLevels.contains(v) else {
                throw SettingError("unknown log level '\(v)': use one of \(logLevels.joined(separator: ", "))")
            }
            s.logLevel = v
        },
        Spec(key: "log-format", environment: "BERTH_LOG_FORMAT", hasFlag: true, defaultText: "text",
             summary: "text (one line per entry) or json (one JSON object per line)") { s, v throws(SettingError) in
            guard let f = LogFormat(rawValue: v) else { throw SettingError("unknown log format '\(v)': use text or json") }
            s.logFormat = f
        },
        Spec(key: "tls-cert", environment: "BERTH_TLS_CERT", hasFlag: true, defaultText: "-",
             summary: "PEM certificate (chain) to serve HTTPS with; needs tls-key") { s, v throws(SettingError) in
            s.tlsCert = try nonEmpty(v)
        },
        Spec(key: "tls-key", environment: "BERTH_TLS_KEY", hasFlag: true, defaultText: "-",
             summary: "PEM private key of tls-cert") { s, v throws(SettingError) in
            s.tlsKey = try nonEmpty(v)
        },
        Spec(key: "outbound-allow", environment: "BERTH_OUTBOUND_ALLOW", hasFlag: true, defaultText: "-",
             summary: "comma-separated CIDRs and host names that webhooks, OIDC issuers, advisory feeds and import sources may use although they are loopback, private or link-local (a list in the file)") { s, v throws(SettingError) in
            do throws(RegistryError) { _ = try OutboundPolicy(allow: v) } catch { throw SettingError(error.message) }
            s.outboundAllow = v
        },
        Spec(key: "upload-max-age-seconds", environment: "BERTH_UPLOAD_MAX_AGE_SECONDS", hasFlag: true, defaultText: "86400",
             summary: "abandoned upload sessions are removed after this many seconds") { s, v throws(SettingError) in
            s.uploadMaxAgeSeconds = try seconds(v)
        },
        Spec(key: "lifecycle-tick-seconds", environment: "BERTH_LIFECYCLE_TICK_SECONDS", hasFlag: true, defaultText: "30",
             summary: "how often purge schedules, retention, recycle-bin expiry and periodic GC are looked at") { s, v throws(SettingError) in
            s.lifecycleTickSeconds = try seconds(v)
        },
        Spec(key: "shutdown-timeout", environment: "BERTH_SHUTDOWN_TIMEOUT", hasFlag: true, defaultText: "30",
             summary: "seconds SIGINT/SIGTERM waits for in-flight requests before exiting anyway; a second signal exits at once") { s, v throws(SettingError) in
            let d = try seconds(v)
            guard d <= 86_400 else { throw SettingError("the shutdown timeout must be at most 86400 seconds, got \(v)") }
            s.shutdownTimeoutSeconds = d
        },
        Spec(key: "lease-ttl-seconds", environment: "BERTH_LEASE_TTL_SECONDS", hasFlag: false, defaultText: "15",
             summary: "how long a lease on background work lasts unless renewed (every third of it): another server takes the work over this long after its holder stops answering") { s, v throws(SettingError) in
            let d = try seconds(v)
            guard d >= 1, d <= 3600 else { throw SettingError("the lease time to live must be 1 to 3600 seconds, got \(v)") }
            s.leaseTTLSeconds = d
        },
        Spec(key: "scan-on-push", environment: "BERTH_SCAN_ON_PUSH", hasFlag: false, defaultText: "true",
             summary: "true (the default) inventories every pushed image in the background (each layer read once per digest) and pushes its SPDX and CycloneDX SBOMs as referrers") { s, v throws(SettingError) in
            s.scanOnPush = try boolean(v)
        },
        Spec(key: "scan-rematch-days", environment: "BERTH_SCAN_REMATCH_DAYS", hasFlag: false, defaultText: "30",
             summary: "when the advisory database changes, only images pulled or pushed within this many days are matched again (0: every image; at most 3650)") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 0, n <= 3650 else { throw SettingError("'\(v)' is not a number of days from 0 to 3650") }
            s.scanRematchDays = n
        },
        Spec(key: "task-base-trigger-window-seconds", environment: "BERTH_TASK_BASE_TRIGGER_WINDOW_SECONDS", hasFlag: false,
             defaultText: "5",
             summary: "base-image triggers of one build task within this many seconds are coalesced: the first queues a run at once, the rest at most one more at the window's end (at most 3600)") { s, v throws(SettingError) in
            let d = try seconds(v)
            guard d <= 3600 else { throw SettingError("the base-image trigger window must be at most 3600 seconds, got \(v)") }
            s.taskBaseTriggerWindowSeconds = d
        },
        Spec(key: "region", environment: "BERTH_REGION", hasFlag: true, defaultText: "default",
             summary: "this region's name (1-64 of a-z, 0-9, '-'): the origin peer regions see on the changes made here; give every region its own") { s, v throws(SettingError) in
            guard !v.isEmpty, v.utf8.count <= 64, v.first != "-",
                  v.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d })
            else { throw SettingError("a region is 1-64 characters of a-z, 0-9 and '-' (e.g. westeurope), got '\(v.prefix(80))'") }
            s.region = v
        },
        Spec(key: "data-endpoint", environment: "BERTH_DATA_ENDPOINT", hasFlag: true, defaultText: "none (no routing)",
             summary: "this region's data endpoint, an http(s) base URL: upload sessions' Location names it (a push stays in its region) and blob GETs of clients that client-network maps to another region are sent (307, a signed URL) to that replica's data endpoint") { s, v throws(SettingError) in
            do throws(ReplicationError) { s.dataEndpoint = try ReplicationService.normalizeDataEndpoint(v) } catch {
                throw SettingError(error.text)
            }
        },
        Spec(key: "client-network", environment: "BERTH_CLIENT_NETWORKS", hasFlag: true, defaultText: "none",
             summary: "client networks mapped to regions, CIDR=REGION (repeat the flag; comma-separated in the environment, a list in the file); the longest prefix wins; used with data-endpoint") { s, v throws(SettingError) in
            do throws(ReplicationError) { s.clientNetworks = try ClientNetworks.parse([v]) } catch {
                throw SettingError(error.text)
            }
        },
        Spec(key: "bind-client", environment: "BERTH_BIND_CLIENT", hasFlag: false, defaultText: "false",
             summary: "true binds the signed data-endpoint URLs this region issues to the client's address as it sees it (the peer region must see the same address): a leaked URL then works for no other client") { s, v throws(SettingError) in
            s.bindClient = try boolean(v)
        },
        Spec(key: "janitor-interval-seconds", environment: "BERTH_JANITOR_INTERVAL_SECONDS", hasFlag: false, defaultText: "600",
             summary: "how often abandoned uploads are looked for") { s, v throws(SettingError) in
            s.janitorIntervalSeconds = try seconds(v)
        },
        Spec(key: "max-concurrent-uploads", environment: "BERTH_MAX_CONCURRENT_UPLOADS", hasFlag: false, defaultText: "512",
             summary: "more upload requests at once get 429 TOOMANYREQUESTS") { s, v throws(SettingError) in
            guard let n = Int(v), n > 0 else { throw SettingError("'\(v)' is not a positive whole number") }
            s.maxConcurrentUploads = n
        },
        Spec(key: "threads", environment: "BERTH_THREADS", hasFlag: false, defaultText: "one per core",
             summary: "event-loop threads (and as many for blocking work) of this server: give each of several servers on one machine its share of the cores (1 to 256)") { s, v throws(SettingError) in
            guard let n = Int(v), (1...256).contains(n) else { throw SettingError("threads must be a whole number from 1 to 256, got '\(v)'") }
            s.threads = n
        },
        Spec(key: "metadata", environment: "BERTH_METADATA", hasFlag: true, defaultText: "sqlite",
             summary: "the metadata backend as one URL: sqlite, sqlite:///PATH or postgres://USER@HOST:PORT/DATABASE?sslmode=disable|require (a password only from BERTH_METADATA or the file, else use postgres-password-file); sets metadata-store and postgres-url") { s, v throws(SettingError) in
            do throws(BackendLocationError) { s.metadataLocation = try MetadataLocation.parse(v) } catch { throw SettingError(error.message) }
        },
        Spec(key: "storage", environment: "BERTH_STORAGE", hasFlag: true, defaultText: "filesystem",
             summary: "the blob backend as one URL: filesystem, file:///PATH or s3://BUCKET[/PREFIX]?endpoint=http(s)://HOST[:PORT]&region=REGION (no keys in it: BERTH_S3_ACCESS_KEY/BERTH_S3_SECRET_KEY or s3-credentials-file); sets blob-store and s3-*") { s, v throws(SettingError) in
            do throws(BackendLocationError) { s.storageLocation = try StorageLocation.parse(v) } catch { throw SettingError(error.message) }
        },
        Spec(key: "metadata-store", environment: "BERTH_METADATA_STORE", hasFlag: true, defaultText: "sqlite",
             summary: "the metadata backend: sqlite (metadata.sqlite under data) or postgres (postgres-url)") { s, v throws(SettingError) in
            s.metadataStore = try choice(v, "metadata store")
        },
        Spec(key: "postgres-url", environment: "BERTH_POSTGRES_URL", hasFlag: false, defaultText: "-",
             summary: "the database of metadata-store postgres: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require] (TLS required unless on loopback)") { s, v throws(SettingError) in
            if let problem = BackendConfiguration.Metadata.postgresURLProblem(v) { throw SettingError(problem) }
            s.postgresURL = v
        },
        Spec(key: "postgres-password-file", environment: "BERTH_POSTGRES_PASSWORD_FILE", hasFlag: false, defaultText: "-",
             summary: "a file whose first line is the PostgreSQL password (instead of one in postgres-url)") { s, v throws(SettingError) in
            s.postgresPasswordFile = try nonEmpty(v)
        },
        Spec(key: "key-file", environment: "BERTH_KEY_FILE", hasFlag: false, defaultText: "keys/key-encryption.key under data (sqlite)",
             summary: "a file only its owner may read holding a 32-byte key (raw or base64, e.g. `openssl rand -base64 32`) that seals the signing keys shared in the metadata store; required with metadata-store postgres, the same file on every node") { s, v throws(SettingError) in
            s.keyFile = try nonEmpty(v)
        },
        Spec(key: "blob-store", environment: "BERTH_BLOB_STORE", hasFlag: false, defaultText: "filesystem",
             summary: "the blob backend: filesystem (storage/ under data) or s3 (an S3-compatible bucket, see s3-*)") { s, v throws(SettingError) in
            s.blobStore = try choice(v, "blob store")
        },
        Spec(key: "s3-endpoint", environment: "BERTH_S3_ENDPOINT", hasFlag: false, defaultText: "-",
             summary: "blob-store s3: the endpoint, http(s)://host[:port] (operator configuration: loopback and private addresses are allowed)") { s, v throws(SettingError) in
            s.s3Endpoint = try nonEmpty(v)
        },
        Spec(key: "s3-region", environment: "BERTH_S3_REGION", hasFlag: false, defaultText: "us-east-1",
             summary: "blob-store s3: the region requests are signed for") { s, v throws(SettingError) in
            s.s3Region = try nonEmpty(v)
        },
        Spec(key: "s3-bucket", environment: "BERTH_S3_BUCKET", hasFlag: false, defaultText: "-",
             summary: "blob-store s3: the bucket (it must exist), addressed path-style") { s, v throws(SettingError) in
            s.s3Bucket = try nonEmpty(v)
        },
        Spec(key: "s3-prefix", environment: "BERTH_S3_PREFIX", hasFlag: false, defaultText: "-",
             summary: "blob-store s3: key prefix inside the bucket, so registries can share one") { s, v throws(SettingError) in
            s.s3Prefix = v
        },
        Spec(key: "s3-credentials-file", environment: "BERTH_S3_CREDENTIALS_FILE", hasFlag: false, defaultText: "-",
             summary: "blob-store s3: a file only its owner may read, with the lines 'access-key: ...' and 'secret-key: ...' (BERTH_S3_ACCESS_KEY and BERTH_S3_SECRET_KEY take precedence)") { s, v throws(SettingError) in
            s.s3CredentialsFile = try nonEmpty(v)
        },
        Spec(key: "s3-allow-insecure-http", environment: "BERTH_S3_ALLOW_INSECURE_HTTP", hasFlag: false, defaultText: "false",
             summary: "blob-store s3: true accepts a plain-http endpoint on a host that is not loopback (refused by default)") { s, v throws(SettingError) in
            s.s3AllowInsecureHTTP = try boolean(v)
        },
        Spec(key: "s3-redirect-blob-gets", environment: "BERTH_S3_REDIRECT_BLOB_GETS", hasFlag: false, defaultText: "false",
             summary: "blob-store s3: true answers blob GETs of clients allowed to pull with a 307 to a short-lived presigned URL of the bucket (clients must reach the endpoint)") { s, v throws(SettingError) in
            s.s3RedirectBlobGets = try boolean(v)
        },
        Spec(key: "s3-redirect-ttl", environment: "BERTH_S3_REDIRECT_TTL", hasFlag: false, defaultText: "300",
             summary: "blob-store s3: seconds a redirected blob GET's presigned URL stays valid (1-3600)") { s, v throws(SettingError) in
            guard let n = Int(v), (1...3600).contains(n) else { throw SettingError("'\(v)' is not a number of seconds from 1 to 3600") }
            s.s3RedirectTTL = n
        },
        Spec(key: "registry-name", environment: "BERTH_REGISTRY_NAME", hasFlag: false, defaultText: "berth",
             summary: "the admin user's name") { s, v throws(SettingError) in
            s.registryName = try nonEmpty(v)
        },
        Spec(key: "public-url", environment: "BERTH_PUBLIC_URL", hasFlag: false, defaultText: "-",
             summary: "external URL behind a proxy (token realm), e.g. https://registry.example.com") { s, v throws(SettingError) in
            guard let url = URL(string: v), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
                throw SettingError("'\(v)' is not an http(s) URL")
            }
            s.publicURL = v
        },
        Spec(key: "advisory-feeds", environment: "BERTH_ADVISORY_FEEDS", hasFlag: false, defaultText: "-",
             summary: "advisory feeds 'berth scan db update' downloads: NAME=FORMAT:URL entries (FORMAT osv, debian or alpine) separated by spaces or commas (a list in the file); downloads follow outbound-allow") { s, v throws(SettingError) in
            do throws(AdvisoryDatabaseError) { s.advisoryFeeds = try AdvisoryFeedConfiguration.parseList(v) } catch {
                throw SettingError(error.description)
            }
        },
        Spec(key: "advisory-update-interval-seconds", environment: "BERTH_ADVISORY_UPDATE_INTERVAL_SECONDS", hasFlag: false,
             defaultText: "0", summary: "seconds between scheduled updates of advisory-feeds (one node of a cluster runs them); 0: only 'berth scan db update'") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 0, n <= 30 * 86400 else { throw SettingError("'\(v)' is not a number of seconds from 0 to 2592000") }
            s.advisoryUpdateIntervalSeconds = n == 0 ? nil : max(60, n)
        },
        Spec(key: "task-commit-poll-seconds", environment: "BERTH_TASK_COMMIT_POLL_SECONDS", hasFlag: false, defaultText: "60",
             summary: "seconds between the git-commit triggers' looks at their tasks' branches (git ls-remote; one node of a cluster polls)") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 1, n <= 86400 else { throw SettingError("'\(v)' is not a number of seconds from 1 to 86400") }
            s.taskCommitPollSeconds = n
        },
        Spec(key: "task-base-poll-seconds", environment: "BERTH_TASK_BASE_POLL_SECONDS", hasFlag: false, defaultText: "600",
             summary: "seconds between looks at the base images tasks declare in other registries (a HEAD of each tag; a new digest queues the tasks with a base-image trigger; one node of a cluster polls)") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 1, n <= 86400 else { throw SettingError("'\(v)' is not a number of seconds from 1 to 86400") }
            s.taskBasePollSeconds = n
        },
        Spec(key: "task-run-disk-quota-bytes", environment: "BERTH_TASK_RUN_DISK_QUOTA_BYTES", hasFlag: false, defaultText: "10737418240",
             summary: "bytes of disk one task run may use (its source, run directory, and what its task's storage grows by while it runs), checked every second: a run over it is stopped and fails; 0: no quota") { s, v throws(SettingError) in
            guard let n = Int64(v), n >= 0 else { throw SettingError("'\(v)' is not a number of bytes") }
            s.taskRunDiskQuotaBytes = n
        },
        Spec(key: "task-build-memory-bytes", environment: "BERTH_TASK_BUILD_MEMORY_BYTES", hasFlag: false, defaultText: "2147483648",
             summary: "bytes of memory each build step of a task run may use (buildah and its RUN instructions, in a memory cgroup of their own): over it the kernel kills a process of the build and the run fails; where no writable memory cgroup exists the run's log says so and builds run without; 0: no limit") { s, v throws(SettingError) in
            guard let n = Int64(v), n == 0 || (n >= 16 << 20 && n <= 1 << 50) else { throw SettingError("'\(v)' is not 0 or a number of bytes from 16777216 to 2^50") }
            s.taskBuildMemoryBytes = n
        },
        Spec(key: "task-insecure-base-registries", environment: "BERTH_TASK_INSECURE_BASE_REGISTRIES", hasFlag: false, defaultText: "",
             summary: "comma-separated host[:port] of registries whose base images are polled over plain HTTP (the outbound policy still applies); every other is asked over HTTPS") { s, v throws(SettingError) in
            var hosts: Set<String> = []
            for item in v.split(separator: ",") {
                let host = item.trimmingCharacters(in: .whitespaces).lowercased()
                guard !host.isEmpty, host.count <= 260, host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) }) else {
                    throw SettingError("'\(item.prefix(100))' is not a registry host[:port]")
                }
                hosts.insert(host)
            }
            s.taskInsecureBaseRegistries = hosts
        },
        Spec(key: "task-registry-ca", environment: "BERTH_TASK_REGISTRY_CA", hasFlag: false, defaultText: "-",
             summary: "PEM file of the CA certificates that task runs trust, besides the system's roots, for this registry's public URL (a TLS-terminating proxy with a private CA); without a public URL the default is tls-cert") { s, v throws(SettingError) in
            s.taskRegistryCA = try nonEmpty(v)
        },
        Spec(key: "cache-negative-seconds", environment: "BERTH_CACHE_NEGATIVE_SECONDS", hasFlag: false, defaultText: "30",
             summary: "seconds a pull-through cache node remembers that its upstream answered 404 for a tag, manifest or blob (a storm of pulls of a missing name asks once); 0: not remembered") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 0, n <= 86400 else { throw SettingError("'\(v)' is not a number of seconds from 0 to 86400") }
            s.cacheNegativeSeconds = n
        },
        Spec(key: "cache-max-blob-bytes", environment: "BERTH_CACHE_MAX_BLOB_BYTES", hasFlag: false, defaultText: "10737418240",
             summary: "largest blob the pull-through cache fetches from an upstream (by its declared length, or counted while it streams); larger is refused with 502 and nothing stored") { s, v throws(SettingError) in
            guard let n = Int64(v), n >= 1024, n <= 1 << 50 else { throw SettingError("'\(v)' is not a number of bytes from 1024 to 2^50") }
            s.cacheMaxBlobBytes = n
        },
        Spec(key: "cache-connect-timeout-seconds", environment: "BERTH_CACHE_CONNECT_TIMEOUT_SECONDS", hasFlag: false, defaultText: "2",
             summary: "seconds the pull-through cache waits to connect to an upstream: an unreachable upstream fails this fast and what is cached is served (0.1 to 300)") { s, v throws(SettingError) in
            guard let d = Double(v), d.isFinite, d >= 0.1, d <= 300 else { throw SettingError("'\(v)' is not a number of seconds from 0.1 to 300") }
            s.cacheConnectTimeoutSeconds = d
        },
        Spec(key: "task-context-max-bytes", environment: "BERTH_TASK_CONTEXT_MAX_BYTES", hasFlag: false, defaultText: "268435456",
             summary: "largest build context a task run may upload (an uncompressed tar; larger is refused with 413)") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 1024, n <= 1 << 40 else { throw SettingError("'\(v)' is not a number of bytes from 1024 to 2^40") }
            s.taskContextMaxBytes = n
        },
        Spec(key: "task-context-max-entries", environment: "BERTH_TASK_CONTEXT_MAX_ENTRIES", hasFlag: false, defaultText: "100000",
             summary: "most members an uploaded build context may have (a run with more fails before anything is unpacked)") { s, v throws(SettingError) in
            guard let n = Int(v), n >= 1, n <= 100_000_000 else { throw SettingError("'\(v)' is not a number from 1 to 100000000") }
            s.taskContextMaxEntries = n
        },
        Spec(key: "task-context-max-unpacked-bytes", environment: "BERTH_TASK_CONTEXT_MAX_UNPACKED_BYTES", hasFlag: false,
             defaultText: "2147483648", summary: "most bytes the members of an uploaded build context may hold together") { s, v throws(SettingError) in
            guard let n = Int64(v), n >= 1024, n <= 1 << 50 else { throw SettingError("'\(v)' is not a number of bytes from 1024 to 2^50") }
            s.taskContextMaxUnpackedBytes = n
        },
        Spec(key: "service-name", environment: "BERTH_SERVICE_NAME", hasFlag: false, defaultText: "public-url's host, else listen (postgres: berth)",
             summary: "the token service's name: the audience every token is issued for and checked against (never a request's Host)") { s, v throws(SettingError) in
            guard BerthServer.isValidServiceName(v) else {
                throw SettingError("the service name must be 1-255 printable ASCII characters without spaces, quotes or backslashes")
            }
            s.serviceName = v
        },
    ]

    static func spec(key: String) -> Spec? { schema.first { $0.key == key } }

    /// Environment variables read outside the schema (secrets and the config file's path).
    static let otherEnvironment: [(name: String, summary: String)] = [
        ("BERTH_CONFIG", "path of the configuration file (JSON or YAML); also --config"),
        ("BERTH_BOOTSTRAP_OWNER_PASSWORD", "the first owner's password (generated when unset)"),
        ("BERTH_S3_ACCESS_KEY", "blob-store s3: the access key (with BERTH_S3_SECRET_KEY; else s3-credentials-file)"),
        ("BERTH_S3_SECRET_KEY", "blob-store s3: the secret key"),
    ]

    /// The settings part of `berth serve --help`.
    static var helpText: String {
        var lines = ["Settings come from flags, then environment variables, then the --config file (JSON or YAML, same keys), then defaults.",
                     "", "key (flag) | environment | default: meaning"]
        for s in schema {
            lines.append("  \(s.key)\(s.hasFlag ? " (--\(s.key))" : "") | \(s.environment) | \(s.defaultText): \(s.summary)")
        }
        for e in otherEnvironment { lines.append("  \(e.name): \(e.summary)") }
        return lines.joined(separator: "\n")
    }

    // MARK: resolution

    /// Resolves the settings from the file, the environment and the flags (`key` → value).
    static func resolve(configPath: String?, environment: [String: String], flags: [(key: String, value: String)]) throws -> ServeSettings {
        var settings = ServeSettings()
        var given = Set<String>()
        if let path = configPath ?? environment["BERTH_CONFIG"] {
            for (key, value) in try readFile(path) {
                guard let spec = spec(key: key) else {
                    throw ValidationError("config file \(path): unknown key '\(key)'" + suggestion(for: key))
                }
                do { try spec.apply(&settings, value) } catch {
                    throw ValidationError("config file \(path): key '\(key)': \(error.message)")
                }
                given.insert(key)
            }
        }
        for spec in schema {
            guard let value = environment[spec.environment] else { continue }
            do { try spec.apply(&settings, value) } catch {
                throw ValidationError("environment variable \(spec.environment): \(error.message)")
            }
            given.insert(spec.key)
        }
        for (key, value) in flags {
            guard let spec = spec(key: key) else { continue }
            do { try spec.apply(&settings, value) } catch {
                throw ValidationError("--\(key): \(error.message)")
            }
            // argv is readable by every user of the machine: no password on the command line.
            if key == "metadata", case .postgres(_, hasPassword: true) = settings.metadataLocation {
                throw ValidationError("--metadata: the URL holds a password, and the command line is visible to every user of this machine: leave it out and use postgres-password-file (BERTH_POSTGRES_PASSWORD_FILE), or give the whole URL in BERTH_METADATA or the config file")
            }
            given.insert(key)
        }
        try settings.applyLocations(given: given)
        if (settings.tlsCert == nil) != (settings.tlsKey == nil) {
            throw ValidationError("tls-cert and tls-key go together")
        }
        switch settings.metadataStore {
        case .postgres where settings.postgresURL == nil:
            throw ValidationError("metadata-store postgres needs postgres-url (or BERTH_POSTGRES_URL): postgres://USER@HOST:PORT/DATABASE")
        case .sqlite where settings.postgresURL != nil || settings.postgresPasswordFile != nil:
            throw ValidationError("postgres-url and postgres-password-file are for metadata-store postgres; the metadata store is sqlite")
        default: break
        }
        if settings.metadataStore == .postgres, let path = settings.postgresPasswordFile {
            // checked here, where a refusal is a clear start-up error (the backend reads it later)
            do { _ = try SecretFile.read(path, what: "postgres-password-file", maxBytes: 4096) } catch { throw ValidationError(error.message) }
        }
        if settings.metadataStore == .postgres && settings.keyFile == nil {
            throw ValidationError("""
                metadata-store postgres needs key-file (or BERTH_KEY_FILE): every node needs the same key, \
                e.g. made once with `openssl rand -base64 32 > berth.key; chmod 600 berth.key`
                """)
        }
        if settings.blobStore == .s3 {
            try settings.resolveS3(environment: environment)
        }
        return settings
    }

    /// A configuration file as (key, value) pairs, in file order. JSON when it starts with `{`,
    /// YAML otherwise; values must be scalars.
    static func readFile(_ path: String) throws -> [(String, String)] {
        guard let contents = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read config file \(path)")
        }
        guard contents.count <= 1 << 20, let text = String(data: contents, encoding: .utf8) else {
            throw ValidationError("config file \(path) is not UTF-8 text of at most 1 MiB")
        }
        let isJSON = text.drop(while: { $0.isWhitespace }).first == "{"
        let root: Any?
        do {
            if isJSON {
                root = try JSONSerialization.jsonObject(with: contents)
            } else {
                root = try Yams.load(yaml: text)
            }
        } catch let e as ValidationError {
            throw e
        } catch {
            throw ValidationError("config file \(path) is not valid \(isJSON ? "JSON" : "YAML"): \(error)")
        }
        guard let map = root as? [String: Any] else {
            throw ValidationError("config file \(path) must be a \(isJSON ? "JSON object" : "YAML mapping") of settings")
        }
        return try map.keys.sorted().map { key in
            let value = map[key]!
            switch value {
            case let s as String: return (key, s)
            case let b as Bool where type(of: value) == Bool.self: return (key, b ? "true" : "false")
            case let n as NSNumber:
                // JSON numbers arrive as NSNumber; whole numbers print without a fraction.
                let d = n.doubleValue
                return (key, d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d))
            case let list as [Any] where key == "outbound-allow" || key == "advisory-feeds" || key == "client-network":
                guard let strings = list as? [String] else {
                    throw ValidationError("config file \(path): key '\(key)' must be a list of strings")
                }
                return (key, strings.joined(separator: ","))
            case let i as Int: return (key, String(i))
            case let d as Double: return (key, String(d))
            default:
                throw ValidationError("config file \(path): key '\(key)' must be a string or a number")
            }
        }
    }

    /// " (did you mean 'x'?)" for the closest key within two edits, else "" plus the known keys.
    static func suggestion(for key: String) -> String {
        if let best = EditDistance.closest(to: key, among: schema.map(\.key), maxDistance: max(2, key.count / 3)) {
            return " (did you mean '\(best)'?)"
        }
        return "; known keys: " + schema.map(\.key).joined(separator: ", ")
    }

    // MARK: value parsers

    /// One of an enum's cases by name; otherwise an error that lists them.
    static func choice<E: RawRepresentable & CaseIterable>(_ v: String, _ what: String) throws(SettingError) -> E where E.RawValue == String {
        guard let value = E(rawValue: v) else {
            throw SettingError("unknown \(what) '\(v)': use one of " + E.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return value
    }

    static func boolean(_ v: String) throws(SettingError) -> Bool {
        switch v {
        case "true": return true
        case "false": return false
        default: throw SettingError("'\(v)' is not true or false")
        }
    }

    static func nonEmpty(_ v: String) throws(SettingError) -> String {
        guard !v.isEmpty else { throw SettingError("must not be empty") }
        return v
    }

    static func seconds(_ v: String) throws(SettingError) -> Double {
        guard let d = Double(v), d.isFinite, d > 0 else { throw SettingError("'\(v)' is not a positive number of seconds") }
        return d
    }

    /// Parses `host:port` (`[v6]:port` for IPv6).
    static func parseListen(_ value: String) throws(SettingError) -> (host: String, port: Int) {
        guard let colon = value.lastIndex(of: ":"), let port = Int(value[value.index(after: colon)...]),
              (0...65535).contains(port)
        else { throw SettingError("listen must be HOST:PORT, got \(value)") }
        var host = String(value[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw SettingError("listen must name a host, e.g. 127.0.0.1:5000") }
        return (host, port)
    }
}

extension ServeSettings {
    /// The outbound policy of these settings; Berth's own listener and public URL are never contacted.
    func outboundPolicy() throws -> OutboundPolicy {
        var policy: OutboundPolicy
        do {
            policy = try OutboundPolicy(allow: outboundAllow ?? "")
        } catch {
            throw ValidationError(error.message)
        }
        if let (host, port) = try? Self.parseListen(listen) { policy.ownEndpoints.append(.init(host: host, port: port)) }
        if let publicURL, let origin = OutboundPolicy.origin(of: publicURL) {
            policy.ownEndpoints.append(.init(host: origin.host, port: origin.port))
        }
        return policy
    }
}

extension ServeSettings {
    /// blob-store s3: every setting it needs is there, the key pair is read, and together they make
    /// a store (endpoint, bucket, region and prefix are checked; the bucket is not contacted here).
    mutating func resolveS3(environment: [String: String]) throws {
        guard let endpoint = s3Endpoint else { throw ValidationError("blob-store s3 needs s3-endpoint (BERTH_S3_ENDPOINT)") }
        guard let bucket = s3Bucket else { throw ValidationError("blob-store s3 needs s3-bucket (BERTH_S3_BUCKET)") }
        let access = environment["BERTH_S3_ACCESS_KEY"], secret = environment["BERTH_S3_SECRET_KEY"]
        if access != nil || secret != nil {
            guard let access, let secret, !access.isEmpty, !secret.isEmpty else {
                throw ValidationError("BERTH_S3_ACCESS_KEY and BERTH_S3_SECRET_KEY go together and must not be empty")
            }
            s3Credentials = S3KeyPair(accessKey: access, secretKey: secret)
        } else if let path = s3CredentialsFile {
            s3Credentials = try Self.readS3Credentials(path)
        } else {
            throw ValidationError("blob-store s3 needs credentials: BERTH_S3_ACCESS_KEY and BERTH_S3_SECRET_KEY, or s3-credentials-file")
        }
        _ = (endpoint, bucket)
        guard case .s3(let store) = backendConfiguration.blobs else { return }
        if let problem = store.problem() { throw ValidationError("blob-store s3: \(problem)") }
    }

    /// `access-key: …` and `secret-key: …` lines of a file that only its owner can read.
    static func readS3Credentials(_ path: String) throws -> S3KeyPair {
        let contents: Data
        do { contents = try SecretFile.read(path, what: "s3-credentials-file") } catch { throw ValidationError(error.message) }
        var access: String?, secret: String?
        for line in String(decoding: contents, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = trimmed.firstIndex(of: ":") else {
                throw ValidationError("s3-credentials-file \(path): lines are 'access-key: ...' and 'secret-key: ...'")
            }
            let key = trimmed[..<colon].trimmingCharacters(in: .whitespaces)
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            switch key {
            case "access-key": access = value
            case "secret-key": secret = value
            default: throw ValidationError("s3-credentials-file \(path): unknown key '\(key)' (use access-key and secret-key)")
            }
        }
        guard let access, let secret, !access.isEmpty, !secret.isEmpty else {
            throw ValidationError("s3-credentials-file \(path) needs both access-key and secret-key")
        }
        return S3KeyPair(accessKey: access, secretKey: secret)
    }
}

extension ServeSettings {
    /// Folds `metadata` and `storage` into the settings they stand for; a setting also given on its
    /// own must agree with them.
    mutating func applyLocations(given: Set<String>) throws {
        func agree<T: Equatable>(_ key: String, _ current: T, _ wanted: T, _ via: String) throws {
            if given.contains(key), current != wanted {
                throw ValidationError("\(via) and \(key) disagree: give the backend once (\(via) sets \(key))")
            }
        }
        switch metadataLocation {
        case nil: break
        case .sqlite(let path):
            try agree("metadata-store", metadataStore, .sqlite, "metadata")
            if given.contains("postgres-url") { throw ValidationError("metadata is sqlite but postgres-url is given: give the backend once") }
            metadataStore = .sqlite
            sqlitePath = path
        case .postgres(let url, _):
            try agree("metadata-store", metadataStore, .postgres, "metadata")
            try agree("postgres-url", postgresURL, url, "metadata")
            if let problem = BackendConfiguration.Metadata.postgresURLProblem(url) { throw ValidationError("metadata: \(problem)") }
            metadataStore = .postgres
            postgresURL = url
        }
        switch storageLocation {
        case nil: break
        case .filesystem(let root):
            try agree("blob-store", blobStore, .filesystem, "storage")
            for key in ["s3-endpoint", "s3-region", "s3-bucket", "s3-prefix", "s3-credentials-file"] where given.contains(key) {
                throw ValidationError("storage is a filesystem but \(key) is given: give the backend once")
            }
            blobStore = .filesystem
            filesystemRoot = root
        case .s3(let bucket, let prefix, let endpoint, let region):
            try agree("blob-store", blobStore, .s3, "storage")
            try agree("s3-bucket", s3Bucket, bucket, "storage")
            try agree("s3-prefix", s3Prefix, prefix, "storage")
            if let endpoint { try agree("s3-endpoint", s3Endpoint, endpoint, "storage") }
            if let region { try agree("s3-region", s3Region, region, "storage") }
            blobStore = .s3
            s3Bucket = bucket
            s3Prefix = prefix
            if let endpoint { s3Endpoint = endpoint }
            if let region { s3Region = region }
        }
    }

    /// The key-encryption key: from key-file, else (the embedded store) the one under the data
    /// directory, created at first start.
    func keyEncryptionKey() throws -> KeyEncryptionKey {
        do {
            if let keyFile { return try KeyEncryptionKey.read(path: keyFile) }
            return try KeyEncryptionKey.readOrCreate(path: data + "/keys/" + KeyEncryptionKey.defaultFile)
        } catch let e as KeyMaterialError {
            throw ValidationError(e.message)
        }
    }
}

extension ServeSettings {
    /// The backends these settings name, under the data directory.
    var backendConfiguration: BackendConfiguration {
        let metadata: BackendConfiguration.Metadata = switch metadataStore {
        case .sqlite: .sqlite(path: sqlitePath ?? data + "/metadata.sqlite")
        case .postgres: .postgres(url: postgresURL ?? "", passwordFile: postgresPasswordFile)
        }
        let blobs: BackendConfiguration.Blobs = switch blobStore {
        case .filesystem: .filesystem(root: filesystemRoot ?? data + "/storage")
        case .s3: .s3(S3BlobSettings(endpoint: s3Endpoint ?? "", region: s3Region, bucket: s3Bucket ?? "", prefix: s3Prefix,
                                     accessKey: s3Credentials?.accessKey ?? "", secretKey: s3Credentials?.secretKey ?? "",
                                     allowInsecureHTTP: s3AllowInsecureHTTP,
                                     redirectTTL: s3RedirectBlobGets ? s3RedirectTTL : nil))
        }
        return BackendConfiguration(metadata: metadata, blobs: blobs)
    }
}

extension ServeSettings {
    /// The token service's name the server is given: the configured one; else, on a shared
    /// metadata store without a public URL, `berth`: the listen address (the embedded store's
    /// default, see `AuthGate.serviceName`) differs per node, so a token one node issued would be
    /// refused by the next and every challenge would name the node behind the balancer.
    var tokenServiceName: String? {
        if let serviceName { return serviceName }
        if metadataStore == .postgres && publicURL == nil { return Self.sharedStoreServiceName }
        return nil
    }

    static let sharedStoreServiceName = "berth"
}
