import ArgumentParser
import BerthCredentials
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `berth-credential-provider`: a kubelet image credential provider. Reads one
/// `CredentialProviderRequest` (credentialprovider.kubelet.k8s.io/v1) on standard input and writes
/// one `CredentialProviderResponse`: for an image of the configured registry, a Berth refresh token
/// exchanged for the pod's service-account token (or the node's token file) through the registry's
/// federated credentials; for any other image, no credentials. Errors: one line on standard error,
/// exit status 1; no token is ever printed there.
@main
struct CredentialProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "berth-credential-provider",
        abstract: "Kubelet image credential provider for a Berth registry (no secret on the node).",
        discussion: """
            Run by the kubelet (CredentialProviderConfig, apiVersion kubelet.config.k8s.io/v1, provider apiVersion \
            credentialprovider.kubelet.k8s.io/v1). With tokenAttributes.serviceAccountTokenAudience set, the pod's \
            service-account token comes in the request; otherwise the token in --token-file is used (e.g. a projected \
            token of the node's own service account). The registry must have an identity with a federated credential \
            naming the cluster's service-account issuer, the subject system:serviceaccount:NAMESPACE:NAME and the audience.
            """)

    @Option(help: "Registry URL, e.g. https://registry.example.com (env BERTH_REGISTRY).")
    var registry: String?

    @Option(help: "File holding the node's token, used when the request carries no service-account token (env BERTH_TOKEN_FILE).")
    var tokenFile: String?

    @Option(help: "PEM file of the CA certificates to trust for the registry instead of the system's (env BERTH_CA_FILE).")
    var caFile: String?

    func run() async throws {
        do {
            try await provide()
        } catch {
            let message = "\(error)".replacingOccurrences(of: "\n", with: " ")
            FileHandle.standardError.write(Data("berth-credential-provider: error: \(message)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func provide() async throws {
        let env = ProcessInfo.processInfo.environment
        func setting(_ flag: String?, _ name: String) -> String? {
            flag ?? env[name].flatMap { $0.isEmpty ? nil : $0 }
        }
        guard let rawRegistry = setting(registry, "BERTH_REGISTRY") else {
            throw CredentialError("no registry configured: pass --registry URL or set BERTH_REGISTRY")
        }
        let registryURL = try normalizeRegistryURL(rawRegistry)
        let tokenPath = setting(tokenFile, "BERTH_TOKEN_FILE")
        let request = try KubeletCredentialProvider.parse(
            readBounded(fd: STDIN_FILENO, limit: KubeletCredentialProvider.requestLimit, what: "the CredentialProviderRequest"))
        let client = try TokenEndpoint.helperClient(caFile: setting(caFile, "BERTH_CA_FILE"))
        let endpoint = TokenEndpoint(registry: registryURL, client: client)
        let response: KubeletCredentialProvider.Response
        do {
            response = try await KubeletCredentialProvider.respond(
                to: request, registry: registryURL, nodeToken: { try tokenPath.map { try readTokenFile($0) } },
                exchange: { token in
                    do {
                        return try await endpoint.exchange(idToken: token)
                    } catch let e as RegistryAPIError where e.status == 401 {
                        throw CredentialError("the registry \(registryURL) refused the token (\(e.code), HTTP 401): it matches no "
                            + "federated credential (issuer, subject, audience) or has expired")
                    }
                })
        } catch {
            try? await client.shutdown()
            throw error
        }
        try? await client.shutdown()
        FileHandle.standardOutput.write(try KubeletCredentialProvider.encode(response))
    }
}
