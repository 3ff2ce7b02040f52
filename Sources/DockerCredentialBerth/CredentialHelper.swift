import BerthCredentials
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `docker-credential-berth get|store|erase|list`: the docker credential helper protocol over the
/// logins of `berth login` (see `DockerCredentialHelper`). As the protocol wants, an error is one
/// line on standard output and exit status 1.
@main
enum CredentialHelperMain {
    static let usage = """
        Usage: docker-credential-berth get|store|erase|list
        A docker credential helper backed by the logins of 'berth login' ($XDG_CONFIG_HOME/berth/config.json).
          get    reads a server URL on standard input, prints {"ServerURL","Username","Secret"} with a fresh token
          store  reads {"ServerURL","Username","Secret"}: logs in and keeps only a refresh token (mode 0600)
          erase  reads a server URL on standard input and forgets its login
          list   prints {"<server URL>": "<user name>", ...}
        BERTH_CA_FILE: PEM file of the CA certificates to trust for the registry instead of the system's.

        """

    static func main() async {
        let args = Array(CommandLine.arguments.dropFirst())
        guard args.count == 1, ["get", "store", "erase", "list"].contains(args[0]) else {
            if args.first == "--help" || args.first == "-h" {
                FileHandle.standardOutput.write(Data(usage.utf8))
                exit(0)
            }
            FileHandle.standardError.write(Data(usage.utf8))
            exit(2)
        }
        do {
            let input = args[0] == "list" ? Data()
                : try readBounded(fd: STDIN_FILENO, limit: DockerCredentialHelper.inputLimit, what: "standard input")
            let caFile = ProcessInfo.processInfo.environment["BERTH_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 }
            let client = try TokenEndpoint.helperClient(caFile: caFile)
            let output: Data
            do {
                output = try await DockerCredentialHelper.run(args[0], input: input, http: client)
            } catch {
                try? await client.shutdown()
                throw error
            }
            try? await client.shutdown()
            FileHandle.standardOutput.write(output)
            exit(0)
        } catch {
            FileHandle.standardOutput.write(Data(("\(error)".replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
            exit(1)
        }
    }
}
