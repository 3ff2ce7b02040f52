import Foundation
import X509

/// Notation's trust policy document (`trustpolicy.json`).
public struct TrustPolicyDocument: Codable, Sendable, Equatable {
    public var version: String
    public var trustPolicies: [TrustPolicy]

    public init(version: String = "1.0", trustPolicies: [TrustPolicy]) {
        self.version = version
        self.trustPolicies = trustPolicies
    }

    public static func load(path: String) throws -> TrustPolicyDocument {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SigningError("cannot read the trust policy \(path)")
        }
        let doc: TrustPolicyDocument
        do {
            doc = try JSONDecoder().decode(TrustPolicyDocument.self, from: data)
        } catch {
            throw SigningError("\(path) is not a trust policy document: \(error)")
        }
        try doc.validate()
        return doc
    }

    public func validate() throws {
        guard version == "1.0" else { throw SigningError("trust policy version \(version) is not supported (use \"1.0\")") }
        guard !trustPolicies.isEmpty else { throw SigningError("the trust policy document has no trustPolicies") }
        var names = Set<String>()
        var globals = 0
        var scopes = Set<String>()
        for p in trustPolicies {
            guard !p.name.isEmpty, names.insert(p.name).inserted else {
                throw SigningError("trust policy names must be present and unique (\(p.name))")
            }
            guard !p.registryScopes.isEmpty else { throw SigningError("trust policy \(p.name) has no registryScopes") }
            if p.registryScopes.contains("*") {
                guard p.registryScopes.count == 1 else {
                    throw SigningError("trust policy \(p.name): the global scope * must be the only scope")
                }
                globals += 1
            } else {
                for s in p.registryScopes {
                    guard !s.contains("*"), s.contains("/") else {
                        throw SigningError("trust policy \(p.name): scope \(s) is not a fully qualified repository (host/repo)")
                    }
                    guard scopes.insert(s).inserted else {
                        throw SigningError("scope \(s) appears in more than one trust policy")
                    }
                }
            }
            let level = try p.signatureVerification.parsedLevel()
            _ = try p.signatureVerification.actions()
            if level != .skip {
                guard !p.trustStores.isEmpty else { throw SigningError("trust policy \(p.name) has no trustStores") }
                guard !p.trustedIdentities.isEmpty else { throw SigningError("trust policy \(p.name) has no trustedIdentities") }
                for s in p.trustStores { _ = try TrustStoreReference(s) }
                _ = try p.identities()
            } else if p.registryScopes == ["*"] {
                throw SigningError("trust policy \(p.name): level skip cannot be used with the global scope *")
            }
        }
        guard globals <= 1 else { throw SigningError("only one trust policy may use the global scope *") }
    }

    /// Exact repository match first, then the global policy.
    public func policy(for repository: String) throws -> TrustPolicy {
        if let p = trustPolicies.first(where: { $0.registryScopes.contains(repository) }) { return p }
        if let p = trustPolicies.first(where: { $0.registryScopes == ["*"] }) { return p }
        throw SigningError("no trust policy applies to \(repository)")
    }
}

public struct TrustPolicy: Codable, Sendable, Equatable {
    public var name: String
    public var registryScopes: [String]
    public var signatureVerification: SignatureVerificationSetting
    public var trustStores: [String]
    public var trustedIdentities: [String]

    public init(name: String, registryScopes: [String], signatureVerification: SignatureVerificationSetting,
                trustStores: [String], trustedIdentities: [String]) {
        self.name = name
        self.registryScopes = registryScopes
        self.signatureVerification = signatureVerification
        self.trustStores = trustStores
        self.trustedIdentities = trustedIdentities
    }

    enum CodingKeys: String, CodingKey {
        case name, registryScopes, signatureVerification, trustStores, trustedIdentities
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        registryScopes = try c.decode([String].self, forKey: .registryScopes)
        signatureVerification = try c.decode(SignatureVerificationSetting.self, forKey: .signatureVerification)
        trustStores = try c.decodeIfPresent([String].self, forKey: .trustStores) ?? []
        trustedIdentities = try c.decodeIfPresent([String].self, forKey: .trustedIdentities) ?? []
    }

    /// nil = any identity (`*`); otherwise the parsed `x509.subject:` identities.
    public func identities() throws -> [[NameAttribute]]? {
        if trustedIdentities == ["*"] { return nil }
        return try trustedIdentities.map { raw in
            guard raw != "*" else { throw SigningError("trust policy \(name): * must be the only trusted identity") }
            let prefix = "x509.subject:"
            guard raw.hasPrefix(prefix) else {
                throw SigningError("trust policy \(name): trusted identity \(raw) must start with x509.subject:")
            }
            return try DistinguishedNames.parse(String(raw.dropFirst(prefix.count)))
        }
    }
}

public enum VerificationLevel: String, Sendable { case strict, permissive, audit, skip }
public enum ValidationAction: String, Sendable { case enforce, log, skip }
public enum ValidationCheck: String, Sendable, CaseIterable {
    case integrity, authenticity, authenticTimestamp, expiry, revocation
}

public struct SignatureVerificationSetting: Codable, Sendable, Equatable {
    public var level: String
    public var override: [String: String]?

    public init(level: String, override: [String: String]? = nil) {
        self.level = level
        self.override = override
    }

    public func parsedLevel() throws -> VerificationLevel {
        guard let l = VerificationLevel(rawValue: level) else {
            throw SigningError("signatureVerification.level \(level) is not one of strict, permissive, audit, skip")
        }
        return l
    }

    /// What happens when each check fails, after applying `override`.
    public func actions() throws -> [ValidationCheck: ValidationAction] {
        let l = try parsedLevel()
        var a: [ValidationCheck: ValidationAction]
        switch l {
        case .strict: a = [.integrity: .enforce, .authenticity: .enforce, .authenticTimestamp: .enforce, .expiry: .enforce, .revocation: .enforce]
        case .permissive: a = [.integrity: .enforce, .authenticity: .enforce, .authenticTimestamp: .log, .expiry: .log, .revocation: .log]
        case .audit: a = [.integrity: .enforce, .authenticity: .log, .authenticTimestamp: .log, .expiry: .log, .revocation: .log]
        case .skip: a = [.integrity: .skip, .authenticity: .skip, .authenticTimestamp: .skip, .expiry: .skip, .revocation: .skip]
        }
        if let override, !override.isEmpty {
            guard l != .skip else { throw SigningError("level skip cannot be overridden") }
            for (k, v) in override {
                guard let check = ValidationCheck(rawValue: k), check != .integrity else {
                    throw SigningError("override key \(k) is not one of authenticity, authenticTimestamp, expiry, revocation")
                }
                guard let action = ValidationAction(rawValue: v), action != .skip || check == .revocation else {
                    throw SigningError("override \(k): \(v) is not allowed (enforce or log\(check == .revocation ? " or skip" : ""))")
                }
                a[check] = action
            }
        }
        return a
    }
}

/// `ca:payments-ca`, `signingAuthority:name` or `tsa:name`.
public struct TrustStoreReference: Sendable, Equatable {
    public var type: String
    public var name: String

    public static let types = ["ca", "signingAuthority", "tsa"]

    public init(_ text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, Self.types.contains(parts[0]), Self.isValidName(parts[1]) else {
            throw SigningError("trust store \(text) is not TYPE:NAME with TYPE ca, signingAuthority or tsa")
        }
        type = parts[0]
        name = parts[1]
    }

    public init(type: String, name: String) throws {
        try self.init("\(type):\(name)")
    }

    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
            && name != "." && name != ".."
    }
}

/// Trust stores laid out like Notation keeps them:
/// `<config>/truststore/x509/<type>/<name>/*.{crt,pem,cer}` where `<config>` is `$NOTATION_CONFIG`,
/// else `$XDG_CONFIG_HOME/notation`, else `~/.config/notation`.
public struct FileTrustStore: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    public static func configDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let dir = environment["NOTATION_CONFIG"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("notation")
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".config/notation")
    }

    public static func `default`(environment: [String: String] = ProcessInfo.processInfo.environment) -> FileTrustStore {
        FileTrustStore(root: configDirectory(environment: environment).appendingPathComponent("truststore/x509"))
    }

    public func directory(_ ref: TrustStoreReference) -> URL {
        root.appendingPathComponent(ref.type).appendingPathComponent(ref.name)
    }

    static let extensions = ["crt", "pem", "cer"]

    /// The certificates of one named store (an absent store is an error: a policy naming it is misconfigured).
    public func certificates(_ ref: TrustStoreReference) throws -> [Certificate] {
        let dir = directory(ref)
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else {
            throw SigningError("trust store \(ref.type):\(ref.name) does not exist (\(dir.path))")
        }
        var result: [Certificate] = []
        for f in files.sorted() where Self.extensions.contains((f as NSString).pathExtension.lowercased()) {
            let path = dir.appendingPathComponent(f).path
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            do {
                result += try CertificateCoding.parseCertificates(data)
            } catch {
                throw SigningError("trust store \(ref.type):\(ref.name): \(f) is not a certificate file: \(error)")
            }
        }
        guard !result.isEmpty else { throw SigningError("trust store \(ref.type):\(ref.name) has no certificates (\(dir.path))") }
        return result
    }

    /// Copies a certificate file into a named store; returns the destination path.
    @discardableResult
    public func add(_ ref: TrustStoreReference, certificateFile: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: certificateFile) else {
            throw SigningError("cannot read \(certificateFile)")
        }
        let certs: [Certificate]
        do { certs = try CertificateCoding.parseCertificates(data) } catch {
            throw SigningError("\(certificateFile) is not a PEM or DER certificate: \(error)")
        }
        let dir = directory(ref)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var name = (certificateFile as NSString).lastPathComponent
        if !Self.extensions.contains((name as NSString).pathExtension.lowercased()) { name += ".crt" }
        let dest = dir.appendingPathComponent(name)
        guard !FileManager.default.fileExists(atPath: dest.path) else {
            throw SigningError("\(dest.path) already exists")
        }
        let pem = try certs.map { try CertificateCoding.pem($0) }.joined(separator: "\n") + "\n"
        guard FileManager.default.createFile(atPath: dest.path, contents: Data(pem.utf8)) else {
            throw SigningError("cannot write \(dest.path)")
        }
        return dest.path
    }

    public struct Entry: Sendable {
        public var type: String
        public var store: String
        public var file: String
        public var subjects: [String]
    }

    public func list() -> [Entry] {
        var out: [Entry] = []
        let fm = FileManager.default
        for type in TrustStoreReference.types {
            let tdir = root.appendingPathComponent(type)
            for store in ((try? fm.contentsOfDirectory(atPath: tdir.path)) ?? []).sorted() {
                let sdir = tdir.appendingPathComponent(store)
                for f in ((try? fm.contentsOfDirectory(atPath: sdir.path)) ?? []).sorted()
                where Self.extensions.contains((f as NSString).pathExtension.lowercased()) {
                    let data = fm.contents(atPath: sdir.appendingPathComponent(f).path) ?? Data()
                    let subjects = ((try? CertificateCoding.parseCertificates(data)) ?? []).map(CertificateCoding.subject)
                    out.append(Entry(type: type, store: store, file: f, subjects: subjects))
                }
            }
        }
        return out
    }
}
