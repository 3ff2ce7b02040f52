import Access
import ArgumentParser
import Foundation
import SQLiteStore
import RegistryStore
#if canImport(Glibc)
import Glibc
#endif

// `berth recover`: offline repairs on the data directory of a stopped server. Unlike the
// management commands, these open the database directly, the way `berth serve` does.

struct RecoverGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover", abstract: "Offline recovery on the data directory of a stopped server.",
        subcommands: [RecoverOwner.self])
}

struct RecoverOwner: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "owner", abstract: "Give an identity the Owner role on * and a new password, on a stopped server.",
        discussion: """
            For a registry nobody can manage any more. Works on the data directory of a STOPPED server \
            (refused while a server holds <data>/berth.lock): creates the identity (default 'owner') or \
            re-enables it, assigns it Owner on *, prints a new generated password once on standard \
            output and records the change in the audit log.
            """)

    @Option(help: "Data directory of the stopped server.")
    var data: String

    @Option(help: "Identity to create or re-enable.")
    var name: String = "owner"

    @Option(help: "The server's configuration file, if it has one (for its registry-name; env BERTH_CONFIG).")
    var config: String?

    func run() async throws {
        try await runCLI {
            guard FileManager.default.fileExists(atPath: data + "/metadata.sqlite") else {
                throw CLIError("\(data) holds no Berth data (no metadata.sqlite)")
            }
            let lock = try DataDirectoryLock(directory: data, purpose: "berth recover owner")
            defer { withExtendedLifetime(lock) {} }
            let store = try SQLiteMetadataStore(path: data + "/metadata.sqlite")
            // The admin user's name is reserved for it, as in `berth serve` (same file and environment).
            var settings = try ServeSettings.resolve(configPath: config, environment: ProcessInfo.processInfo.environment, flags: [])
            settings.data = data
            let access = try await AccessControl.open(store: store, keyDirectory: data + "/keys", keyEncryptionKey: try settings.keyEncryptionKey(),
                                                      registryName: settings.registryName)
            let password: String
            do {
                password = try await access.recoverOwner(Access.Actor(name: "berth recover owner", address: "local"), name: name)
            } catch let e as AccessError {
                switch e {
                case .invalid(let m), .conflict(let m), .notFound(let m): throw CLIError("cannot recover \(name): \(m)")
                default: throw CLIError("cannot recover \(name): \(e)")
                }
            }
            FileHandle.standardError.write(Data("Identity '\(name)' is enabled with the Owner role on *. Its new password, shown once:\n".utf8))
            print(password)
        }
    }
}
