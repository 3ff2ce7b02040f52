import Access
import ArgumentParser
import BerthCredentials
import Foundation
import RegistryCore
import Signing

// Notation-compatible signing: `berth certificate create-signing`, `berth sign`, `berth verify`,
// `berth trust-store add|list`. Signatures are Notary Project JWS envelopes stored as OCI
// referrers (artifactType application/vnd.cncf.notary.signature) of the signed manifest.

/// Registry connection options shared by `berth sign` and `berth verify`. Credentials come from
/// the flags, then BERTH_USERNAME / BERTH_PASSWORD, then the login `berth login` stored for the
/// registry (whose URL also says whether it speaks plain HTTP).
struct SignatureRegistryOptions: ParsableArguments {
    @Option(help: "User name for the registry (default: env BERTH_USERNAME, then the login of 'berth login' for the registry).")
    var username: String?

    @Flag(help: "Read the password from standard input (default: env BERTH_PASSWORD).")
    var passwordStdin = false

    @Flag(help: "Talk plain HTTP to the registry (default: HTTPS, or plain HTTP when 'berth login' used an http:// URL).")
    var insecure = false

    @Option(help: "PEM file of CA certificates to trust for the registry's TLS certificate.")
    var caFile: String?

    func client(host: String) throws -> RegistryClient {
        let env = ProcessInfo.processInfo.environment
        var user = username ?? env["BERTH_USERNAME"].flatMap { $0.isEmpty ? nil : $0 }
        var password: String?
        if passwordStdin {
            guard user != nil else { throw CLIError("--password-stdin needs --username (or BERTH_USERNAME)") }
            password = try readPasswordFromStdin()
        } else if user != nil {
            password = env["BERTH_PASSWORD"]
            if password == nil { throw CLIError("no password: use --password-stdin or set BERTH_PASSWORD") }
        }
        var plainHTTP = insecure
        if user == nil, let (url, login) = try Self.storedLogin(host: host) {
            // A stored refresh token is presented as the password of the well-known refresh-token user.
            user = AccessControl.refreshTokenUser
            password = login.refreshToken
            plainHTTP = plainHTTP || url.hasPrefix("http://")
        }
        return try RegistryClient(host: host, insecure: plainHTTP, caFile: caFile, username: user, password: password)
    }

    /// The login `berth login` stored for the registry at `host` (`host[:port]`), with its URL.
    static func storedLogin(host: String) throws -> (url: String, login: CLIConfig.Login)? {
        try CLIConfig.load().login(host: host)
    }
}

/// `berth certificate create-signing`: a signing key and code-signing certificate (optionally with a CA).
struct CertificateCreateSigning: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-signing",
        abstract: "Create a key and code-signing certificate for signing images (Notary Project / Notation).",
        discussion: """
            Writes PREFIX.key (0600) and PREFIX.crt (the leaf certificate, then the CA certificate with --ca). \
            With --ca also writes PREFIX-ca.crt: add it to a trust store with \
            'berth trust-store add --type ca --store NAME PREFIX-ca.crt' (without --ca, add PREFIX.crt itself).
            """)

    @Option(help: "Subject of the signing certificate, e.g. \"CN=payments.org,O=Platform\".")
    var subject: String

    @Flag(help: "Also create a CA that issues the signing certificate (written to PREFIX-ca.crt).")
    var ca = false

    @Option(help: "Validity of the certificates, e.g. 365d, 24h or 90s.")
    var validity: String = "365d"

    @Option(help: "Output path prefix.")
    var out: String

    func run() async throws {
        try await runCLI { try Self.write(subject: subject, ca: ca, validity: validity, out: out) }
    }

    /// Writes PREFIX.key, PREFIX.crt (and PREFIX-ca.crt with a CA); shared with `certificate create --signing`.
    static func write(subject: String, ca: Bool, validity: String, out: String) throws {
            let seconds = try positiveDuration(validity, option: "--validity")
            let material = try SigningCertificates.create(subject: subject, withCA: ca, validity: seconds)
            let fm = FileManager.default
            for path in [out + ".key", out + ".crt"] + (ca ? [out + "-ca.crt"] : []) where fm.fileExists(atPath: path) {
                throw CLIError("\(path) already exists; choose another --out or remove it")
            }
            guard fm.createFile(atPath: out + ".key", contents: Data(material.privateKeyPEM.utf8), attributes: [.posixPermissions: 0o600])
            else { throw CLIError("cannot write \(out).key") }
            guard fm.createFile(atPath: out + ".crt", contents: Data(try material.chainPEM().utf8), attributes: [.posixPermissions: 0o644])
            else { throw CLIError("cannot write \(out).crt") }
            if let caCert = material.ca {
                guard fm.createFile(atPath: out + "-ca.crt", contents: Data((try CertificateCoding.pem(caCert) + "\n").utf8),
                                    attributes: [.posixPermissions: 0o644])
                else { throw CLIError("cannot write \(out)-ca.crt") }
                print("wrote \(out).key, \(out).crt (signed by \(CertificateCoding.subject(caCert))) and \(out)-ca.crt")
            } else {
                print("wrote \(out).key and \(out).crt (self-signed)")
            }
            print("subject: \(CertificateCoding.subject(material.leaf))")
            print("thumbprint (sha256): \(try CertificateCoding.thumbprint(material.leaf))")
    }
}

/// `berth sign HOST/REPO@sha256:...`.
struct SignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign",
        abstract: "Sign an image manifest (Notary Project JWS signature, compatible with Notation).",
        discussion: "Sign by digest: a tag is resolved, its digest printed, and signing refused (tags move).")

    @Argument(help: "HOST/REPO@sha256:DIGEST")
    var reference: String

    @Option(help: "PEM private key file.")
    var key: String

    @Option(help: "PEM certificate chain file: the signing certificate first, then its CA(s).")
    var cert: String

    @Option(help: "Expiry of the signature, e.g. 24h or 30d (default: none).")
    var expiry: String?

    @OptionGroup var registry: SignatureRegistryOptions

    func run() async throws {
        try await runCLI {
            let ref = try ArtifactReference(reference)
            var expiryDate: Date?
            if let expiry {
                let seconds = try positiveDuration(expiry, option: "--expiry")
                expiryDate = Date().addingTimeInterval(seconds)
            }
            let keyProvider = try PEMFileKeyProvider(path: key)
            guard let certData = FileManager.default.contents(atPath: cert) else { throw CLIError("cannot read \(cert)") }
            let chain = try CertificateCoding.parseCertificates(certData)
            let client = try registry.client(host: ref.host)
            do {
                guard let digest = ref.digest else {
                    let (desc, _) = try await client.manifest(ref.repository, reference: ref.tag ?? "latest")
                    print(desc.digest)
                    throw CLIError("refusing to sign the tag \(ref): tags can move; sign by digest instead: "
                        + "berth sign \(ref.scope)@\(desc.digest)")
                }
                let (target, _) = try await client.manifest(ref.repository, reference: digest)
                let envelope = try await JWSEnvelope.sign(target: target, key: keyProvider, chain: chain,
                                                          expiry: expiryDate, signingAgent: "berth/0.1")
                let (manifest, envelopeBytes) = try SignatureManifest.build(envelope: envelope, subject: target)
                _ = try await client.pushBlob(ref.repository, SignatureManifest.emptyConfig)
                _ = try await client.pushBlob(ref.repository, envelopeBytes)
                let sigDigest = try await client.pushManifest(ref.repository, manifest, mediaType: NotaryMediaType.ociManifest)
                await client.shutdown()
                print("signed \(ref.scope)@\(digest)")
                print("signature: \(ref.scope)@\(sigDigest)")
            } catch {
                await client.shutdown()
                throw error
            }
        }
    }
}

/// `berth verify HOST/REPO@sha256:... --trust-policy FILE`.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify the Notary Project signatures of an image against a trust policy.",
        discussion: """
            Trust stores are read like Notation keeps them: $NOTATION_CONFIG (default \
            $XDG_CONFIG_HOME/notation)/truststore/x509/<type>/<store>/*.crt. Succeeds when one signature \
            passes every enforced check; otherwise prints which check failed and exits 1.
            """)

    @Argument(help: "HOST/REPO@sha256:DIGEST (a tag is resolved to its digest, with a warning)")
    var reference: String

    @Option(help: "Trust policy JSON file (default: <notation config>/trustpolicy.json).")
    var trustPolicy: String?

    @OptionGroup var registry: SignatureRegistryOptions

    func run() async throws {
        try await runCLI {
            let ref = try ArtifactReference(reference)
            let policyPath = trustPolicy ?? FileTrustStore.configDirectory().appendingPathComponent("trustpolicy.json").path
            let document = try TrustPolicyDocument.load(path: policyPath)
            let applicable = try document.policy(for: ref.scope)
            if try applicable.signatureVerification.parsedLevel() == .skip {
                print("verification skipped for \(ref) (trust policy \(applicable.name) has level skip)")
                return
            }
            let verifier = SignatureVerifier(policy: document, store: FileTrustStore.default())
            let client = try registry.client(host: ref.host)
            do {
                try await verify(ref, client: client, verifier: verifier)
                await client.shutdown()
            } catch {
                await client.shutdown()
                throw error
            }
        }
    }

    func verify(_ ref: ArtifactReference, client: RegistryClient, verifier: SignatureVerifier) async throws {
        do {
            var digest = ref.digest ?? ""
            if ref.digest == nil {
                let (desc, _) = try await client.manifest(ref.repository, reference: ref.tag ?? "latest")
                digest = desc.digest
                printWarning("\(ref) resolved to \(digest); verify by digest, tags can move")
            } else {
                _ = try await client.manifest(ref.repository, reference: digest)
            }
            let signatures = try await client.signatures(ref.repository, digest: digest)
            guard !signatures.isEmpty else {
                throw CLIError("no signature found for \(ref.scope)@\(digest)")
            }
            var failures: [String] = []
            for sig in signatures {
                let outcome: VerificationOutcome
                do {
                    let (_, manifestBody) = try await client.manifest(ref.repository, reference: sig.digest)
                    let layer = try SignatureManifest.envelopeLayer(of: manifestBody)
                    let envelope = try await client.blob(ref.repository, digest: layer.digest)
                    outcome = try verifier.verify(envelope: envelope, repository: ref.scope, digest: digest)
                } catch {
                    failures.append("signature \(sig.digest): \(error)")
                    continue
                }
                for w in outcome.warnings { printWarning("signature \(sig.digest): \(w)") }
                if outcome.succeeded {
                    print("verified \(ref.scope)@\(digest)")
                    print("signature: \(sig.digest)")
                    print("signed by: \(outcome.signer ?? "?") at \(outcome.signingTime ?? "?")")
                    print("trust policy: \(outcome.policyName) (level \(outcome.level.rawValue))")
                    for r in outcome.results { print("  \(r)") }
                    return
                }
                failures.append("signature \(sig.digest): \(outcome.failure.map { "\($0)" } ?? "failed")")
            }
            throw CLIError("verification of \(ref.scope)@\(digest) failed: " + failures.joined(separator: "; "))
        }
    }
}

/// `berth trust-store`: Notation-layout trust stores.
struct TrustStoreGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trust-store", abstract: "Trust stores for signature verification (Notation layout).",
        subcommands: [TrustStoreAdd.self, TrustStoreList.self])
}

struct TrustStoreAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add certificates to a named trust store.")

    @Option(help: "Trust store type: ca, signingAuthority or tsa.")
    var type: String = "ca"

    @Option(help: "Name of the trust store, e.g. payments-ca.")
    var store: String

    @Argument(help: "Certificate files (PEM or DER).")
    var files: [String]

    func run() async throws {
        try await runCLI {
            guard !files.isEmpty else { throw CLIError("give at least one certificate file") }
            let ref = try TrustStoreReference(type: type, name: store)
            let trustStore = FileTrustStore.default()
            for f in files {
                let dest = try trustStore.add(ref, certificateFile: f)
                print("added \(f) to \(type):\(store) (\(dest))")
            }
        }
    }
}

struct TrustStoreList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the trust stores and their certificates.")

    func run() async throws {
        try await runCLI {
            let entries = FileTrustStore.default().list()
            if entries.isEmpty {
                print("no trust stores in \(FileTrustStore.default().root.path)")
                return
            }
            for e in entries {
                print("\(e.type):\(e.store)\t\(e.file)\t\(e.subjects.joined(separator: " | "))")
            }
        }
    }
}

/// A duration in the one grammar the server and every command use (`LifecycleDuration`: 30m, 12h,
/// 365d, 1d12h), more than zero.
private func positiveDuration(_ text: String, option: String) throws -> TimeInterval {
    let seconds: TimeInterval
    do {
        seconds = try LifecycleDuration.parse(text.trimmingCharacters(in: .whitespaces))
    } catch {
        throw CLIError("\(option): \(error.message)")
    }
    guard seconds > 0 else { throw CLIError("\(option) must be longer than 0 (e.g. 30m, 12h, 365d)") }
    return seconds
}
