import Access
import ArgumentParser
import Backends
import Foundation
import Logging
import SQLiteStore
import RegistryStore
#if canImport(Glibc)
import Glibc
#endif

// `berth recover`: break-glass repairs that open the metadata store directly, the way `berth serve`
// does, not through the management API: the embedded store's data directory of a stopped server,
// or a cluster's PostgreSQL database.

struct RecoverGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover", abstract: "Break-glass recovery on the metadata store (a stopped server's data directory, or PostgreSQL).",
        subcommands: [RecoverOwner.self])
}

struct RecoverOwner: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "owner", abstract: "Give an identity the Owner role on * and a new password (break-glass).",
        discussion: """
            For a registry nobody can manage any more: creates the identity (default 'owner') or \
            re-enables it, assigns it Owner on *, prints a new generated password once on standard \
            output and records the change in the audit log. Tokens issued to it before stop working.

            On the embedded store it works on the data directory of a STOPPED server (--data; refused \
            while a server holds <data>/berth.lock). On PostgreSQL (metadata postgres://…, from --metadata, \
            the config file or BERTH_METADATA, with the cluster's key-file) it works while the nodes run: \
            the change is one compare-and-swap of the access state, and every node (and every replica \
            region) sees it within seconds.
            """)

    @Option(help: "Data directory of the stopped server (the embedded store).")
    var data: String?

    @Option(help: "The metadata store, when it is not the data directory's: postgres://USER@HOST:PORT/DATABASE (a password only from BERTH_METADATA, the config file or postgres-password-file).")
    var metadata: String?

    @Option(help: "Identity to create or re-enable.")
    var name: String = "owner"

    @Option(help: "The server's configuration file, if it has one (its metadata store, key-file and registry-name; env BERTH_CONFIG).")
    var config: String?

    func run() async throws {
        try await runCLI {
            let flags = [("data", data), ("metadata", metadata)].compactMap { f in f.1.map { (key: f.0, value: $0) } }
            let settings = try ServeSettings.resolve(configPath: config, environment: ProcessInfo.processInfo.environment, flags: flags)
            let password: String
            switch settings.metadataStore {
            case .sqlite:
                password = try await recoverEmbedded(settings)
            case .postgres:
                password = try await recoverShared(settings)
            }
            FileHandle.standardError.write(Data("Identity '\(name)' is enabled with the Owner role on *. Its new password, shown once:\n".utf8))
            print(password)
        }
    }

    /// The embedded store: its file, only while no server holds the data directory.
    private func recoverEmbedded(_ settings: ServeSettings) async throws -> String {
        guard let data else {
            throw CLIError("--data: the data directory of the stopped server (or, for a cluster, metadata postgres://… with its key-file)")
        }
        guard FileManager.default.fileExists(atPath: data + "/metadata.sqlite") else {
            throw CLIError("\(data) holds no Berth data (no metadata.sqlite)")
        }
        let lock = try DataDirectoryLock(directory: data, purpose: "berth recover owner")
        defer { withExtendedLifetime(lock) {} }
        let store = try SQLiteMetadataStore(path: data + "/metadata.sqlite")
        return try await recover(store: store, settings: settings, keyDirectory: data + "/keys")
    }

    /// PostgreSQL: the cluster's database, with the key-file its nodes share (its signing keys are
    /// sealed under it in the database).
    private func recoverShared(_ settings: ServeSettings) async throws -> String {
        let opened: (store: any MetadataBackend, close: @Sendable () async -> Void)
        do {
            opened = try await Backends.openMetadata(settings.backendConfiguration.metadata, logger: Logger(label: "berth.recover"))
        } catch {
            throw CLIError("cannot open the metadata store (\(settings.backendConfiguration.metadata)): \(error)")
        }
        do {
            // A database no registry ever used (a mistyped name) gets no keys and no owner.
            guard try await opened.store.loadAccessState() != nil else {
                throw CLIError("\(settings.backendConfiguration.metadata) holds no registry (no access state): is it the nodes' database?")
            }
            let password = try await recover(store: opened.store, settings: settings, keyDirectory: nil)
            await opened.close()
            return password
        } catch {
            await opened.close()
            throw error
        }
    }

    /// `keyDirectory` nil: nothing is imported from one (PostgreSQL: the keys are in the database,
    /// and the working directory's `./berth-data/keys` is not the cluster's).
    private func recover(store: any MetadataBackend, settings: ServeSettings, keyDirectory: String?) async throws -> String {
        // The admin user's name is reserved for it, as in `berth serve` (same file and environment).
        let access = try await AccessControl.open(store: store, keyDirectory: keyDirectory,
                                                  keyEncryptionKey: try settings.keyEncryptionKey(), registryName: settings.registryName)
        do {
            return try await access.recoverOwner(Access.Actor(name: "berth recover owner", address: "local"), name: name)
        } catch let e as AccessError {
            switch e {
            case .invalid(let m), .conflict(let m), .notFound(let m): throw CLIError("cannot recover \(name): \(m)")
            default: throw CLIError("cannot recover \(name): \(e)")
            }
        }
    }
}
