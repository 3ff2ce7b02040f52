import Access
import ArgumentParser
import Foundation

struct CertificateGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certificate", abstract: "Certificates for TLS and for signing.",
        subcommands: [CertificateCreate.self, CertificateCreateSigning.self])
}

/// `berth certificate create`: a self-signed certificate for development TLS.
struct CertificateCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a self-signed TLS certificate for development.",
        discussion: "Writes PREFIX.crt and PREFIX.key (0600). Serve with `berth serve --tls-cert PREFIX.crt --tls-key PREFIX.key`; clients trust PREFIX.crt (e.g. copy it into a `skopeo --cert-dir` directory).")

    @Option(help: "Common name of the certificate.")
    var commonName: String = "localhost"

    @Option(parsing: .upToNextOption, help: "Host names and IP addresses the certificate is valid for.")
    var host: [String] = ["localhost", "127.0.0.1", "::1"]

    @Option(help: "Days of validity.")
    var days: Int = 365

    @Option(help: "Output path prefix: writes PREFIX.crt and PREFIX.key.")
    var out: String = "berth-tls"

    @Flag(help: "Create a code-signing certificate for `berth sign` instead of a TLS certificate (needs --subject).")
    var signing = false

    @Option(help: "Subject of a signing certificate, e.g. \"CN=payments.org,O=Platform\".")
    var subject: String?

    @Flag(help: "With --signing: also create a CA that issues the signing certificate (PREFIX-ca.crt).")
    var ca = false

    func run() async throws {
        if signing {
            guard let subject else { throw ValidationError("--signing needs --subject, e.g. \"CN=payments.org,O=Platform\"") }
            try await runCLI { try CertificateCreateSigning.write(subject: subject, ca: ca, validity: "\(days)d", out: out) }
            return
        }
        if subject != nil || ca { throw ValidationError("--subject and --ca go with --signing") }
        guard days > 0, days <= 3650 else { throw ValidationError("--days must be 1-3650") }
        let (cert, key) = try DevelopmentCertificate.make(commonName: commonName, hosts: host, days: days)
        let fm = FileManager.default
        guard fm.createFile(atPath: out + ".key", contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]),
              fm.createFile(atPath: out + ".crt", contents: Data(cert.utf8), attributes: [.posixPermissions: 0o644])
        else { throw ValidationError("cannot write \(out).crt / \(out).key") }
        print("wrote \(out).crt and \(out).key (valid \(days) days for \(host.joined(separator: ", ")))")
    }
}
