import Foundation

/// OpenVEX documents (https://github.com/openvex/spec, v0.2.0; the v0.0.x shapes where
/// `vulnerability` and `products` are plain strings are read too): statements that a
/// vulnerability does or does not affect products. A `not_affected` or `fixed` statement
/// suppresses the matching finding of an image, with its justification.
public struct VEXDocument: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable, CaseIterable {
        case notAffected = "not_affected", fixed, affected, underInvestigation = "under_investigation"
        /// Whether a finding this statement applies to is suppressed.
        public var suppresses: Bool { self == .notAffected || self == .fixed }
    }

    public struct Product: Sendable, Hashable {
        /// A purl (`pkg:oci/app@sha256:…`, `pkg:deb/debian/libc6@…`) or a manifest digest.
        public var id: String
        /// Packages inside the product the statement is about (purls); empty: all of them.
        public var subcomponents: [String]
    }

    public struct Statement: Sendable, Hashable {
        public var vulnerability: String
        public var aliases: [String]
        public var products: [Product]
        public var status: Status
        public var justification: String?
        public var impactStatement: String?
        public var actionStatement: String?
        /// The statement's own timestamp, or the document's.
        public var timestamp: Date?
    }

    public var id: String?
    public var author: String?
    public var timestamp: Date?
    public var statements: [Statement]
}

public enum VEXLimits {
    /// Largest document read (a referrer's layer or an upload).
    public static let maxDocumentBytes = 1 << 20
    public static let maxStatements = 10_000
    public static let maxProductsPerStatement = 1_000
    public static let maxSubcomponentsPerProduct = 1_000
    public static let maxFieldLength = 4_096
}

public enum OpenVEX {
    /// The artifact type (and layer media type) of an OpenVEX document attached as a referrer.
    public static let mediaType = "application/openvex+json"

    /// The justifications OpenVEX defines for `not_affected`.
    public static let justifications: Set<String> = [
        "component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
        "vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist",
    ]

    /// Parses a document; anything malformed (size, depth, types, unknown status, a
    /// `not_affected` statement with neither justification nor impact statement) is an error
    /// naming where.
    public static func parse(_ data: Data, location: String = "document") throws -> VEXDocument {
        guard data.count <= VEXLimits.maxDocumentBytes else {
            throw ImportProblem(location: location, reason: "larger than \(VEXLimits.maxDocumentBytes) bytes")
        }
        let root = try JSONObject(parseJSON(data, location: location), location: location)
        if let context = try root.string("@context"), !context.hasPrefix("https://openvex.dev/ns") {
            throw ImportProblem(location: location, reason: "\"@context\" is not an OpenVEX context")
        }
        let documentTime = try date(root, "timestamp")
        guard root.dict["statements"] != nil else { throw ImportProblem(location: location, reason: "\"statements\" is missing") }
        let statements = try root.objects("statements")
        guard statements.count <= VEXLimits.maxStatements else {
            throw ImportProblem(location: location, reason: "more than \(VEXLimits.maxStatements) statements")
        }
        return VEXDocument(id: try root.string("@id", limit: VEXLimits.maxFieldLength), author: try root.string("author", limit: VEXLimits.maxFieldLength),
                           timestamp: documentTime, statements: try statements.map { try statement($0, documentTime: documentTime) })
    }

    static func statement(_ o: JSONObject, documentTime: Date?) throws -> VEXDocument.Statement {
        let name: String, aliases: [String]
        if let s = o.dict["vulnerability"] as? String {
            name = s; aliases = []
        } else if let v = try o.object("vulnerability") {
            guard let n = try v.string("name", limit: VEXLimits.maxFieldLength), !n.isEmpty else {
                throw ImportProblem(location: v.location, reason: "\"name\" is missing")
            }
            name = n
            aliases = try v.strings("aliases")
        } else {
            throw ImportProblem(location: o.location, reason: "\"vulnerability\" is missing")
        }
        guard name.utf8.count <= VEXLimits.maxFieldLength else { throw ImportProblem(location: o.location, reason: "\"vulnerability\" is too long") }

        guard let rawProducts = o.dict["products"] as? [Any], !rawProducts.isEmpty else {
            throw ImportProblem(location: o.location, reason: "\"products\" must be a non-empty array")
        }
        guard rawProducts.count <= VEXLimits.maxProductsPerStatement else {
            throw ImportProblem(location: o.location, reason: "more than \(VEXLimits.maxProductsPerStatement) products")
        }
        var products: [VEXDocument.Product] = []
        for (k, raw) in rawProducts.enumerated() {
            let at = "\(o.location)/products[\(k)]"
            if let s = raw as? String {
                products.append(.init(id: try short(s, at), subcomponents: []))
                continue
            }
            let p = try JSONObject(raw, location: at)
            let id = try p.string("@id", limit: VEXLimits.maxFieldLength) ?? ""
            guard !id.isEmpty else { throw ImportProblem(location: at, reason: "\"@id\" is missing") }
            let subs = try p.objects("subcomponents")
            guard subs.count <= VEXLimits.maxSubcomponentsPerProduct else {
                throw ImportProblem(location: at, reason: "more than \(VEXLimits.maxSubcomponentsPerProduct) subcomponents")
            }
            products.append(.init(id: id, subcomponents: try subs.map {
                guard let s = try $0.string("@id", limit: VEXLimits.maxFieldLength), !s.isEmpty else {
                    throw ImportProblem(location: $0.location, reason: "\"@id\" is missing")
                }
                return s
            }))
        }

        let rawStatus = try o.requiredString("status")
        guard let status = VEXDocument.Status(rawValue: rawStatus) else {
            throw ImportProblem(location: o.location, reason: "\"status\" must be one of \(VEXDocument.Status.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let justification = try o.string("justification", limit: VEXLimits.maxFieldLength)
        if let justification, !justifications.contains(justification) {
            throw ImportProblem(location: o.location, reason: "\"justification\" is not one OpenVEX defines")
        }
        let impact = try o.string("impact_statement", limit: VEXLimits.maxFieldLength)
        if status == .notAffected, justification == nil, (impact ?? "").isEmpty {
            throw ImportProblem(location: o.location, reason: "a not_affected statement needs a justification or an impact_statement")
        }
        return VEXDocument.Statement(vulnerability: name, aliases: aliases, products: products, status: status,
                                     justification: justification, impactStatement: impact,
                                     actionStatement: try o.string("action_statement", limit: VEXLimits.maxFieldLength),
                                     timestamp: try date(o, "timestamp") ?? documentTime)
    }

    static func short(_ s: String, _ at: String) throws -> String {
        guard !s.isEmpty, s.utf8.count <= VEXLimits.maxFieldLength else { throw ImportProblem(location: at, reason: "empty or too long") }
        return s
    }

    static func date(_ o: JSONObject, _ key: String) throws -> Date? {
        guard let s = try o.string(key, limit: 64) else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: s) { return d }
        throw ImportProblem(location: o.location, reason: "\"\(key)\" is not an RFC 3339 time")
    }
}

/// A finding as VEX statements are matched against it.
public struct VEXSubject: Sendable, Hashable {
    /// The image manifest's digest ("sha256:…").
    public var manifest: String
    public var vulnerability: String
    public var aliases: [String]
    /// The package as the inventory names it, its source package, and its installed version.
    public var package: String
    public var sourcePackage: String?
    public var installedVersion: String
    /// Digests of manifests that hold the image (an index of it): a statement naming one of them
    /// as its product applies too.
    public var holders: [String]
    public init(manifest: String, vulnerability: String, aliases: [String], package: String, sourcePackage: String?, installedVersion: String,
                holders: [String] = []) {
        self.manifest = manifest; self.vulnerability = vulnerability; self.aliases = aliases; self.package = package
        self.sourcePackage = sourcePackage; self.installedVersion = installedVersion; self.holders = holders
    }
}

/// The statement that decides a finding, when any does.
public struct VEXDecision: Sendable, Hashable {
    public var statement: VEXDocument.Statement
    /// Where the statement came from (a referrer's digest, an upload's id).
    public var source: String
    public var suppressed: Bool { statement.status.suppresses }
}

/// Statements of several documents, matched against findings: a statement applies when it
/// names the finding's vulnerability (or an alias of either) and a product that is the image
/// (its digest, or a `pkg:oci/…@sha256:…` purl of it; with subcomponents, one of them must be
/// the finding's package) or the finding's package (a purl: type ignored, name equal to the
/// package or its source package, the version, when given, equal to the installed one). Of the
/// statements that apply the latest (by timestamp, then order) decides.
///
/// Statements are indexed by vulnerability name and alias when added, and their products' purls
/// parsed once (review, M4: every finding re-parsed every statement's purls), so deciding a
/// finding reads only the statements that name it.
public struct VEXIndex: Sendable {
    struct Prepared: Sendable {
        var statement: VEXDocument.Statement
        var source: String
        var order: Int
        var products: [PreparedProduct]
    }
    struct PreparedProduct: Sendable {
        var id: String
        /// The product as a package URL (nil: not a purl).
        var purl: PackageURLParts?
        var subcomponents: [PackageURLParts?]
    }
    var statements: [Prepared] = []
    /// Statement positions by vulnerability name and alias.
    var byName: [String: [Int]] = [:]

    public init() {}

    public mutating func add(_ document: VEXDocument, source: String) {
        for s in document.statements {
            let k = statements.count
            statements.append(Prepared(statement: s, source: source, order: k, products: s.products.map {
                PreparedProduct(id: $0.id, purl: PackageURLParts($0.id), subcomponents: $0.subcomponents.map { PackageURLParts($0) })
            }))
            for name in Set([s.vulnerability] + s.aliases) { byName[name, default: []].append(k) }
        }
    }

    public var isEmpty: Bool { statements.isEmpty }
    public var count: Int { statements.count }

    public func decision(for subject: VEXSubject) -> VEXDecision? {
        var candidates = Set<Int>()
        for name in Set([subject.vulnerability] + subject.aliases) {
            for k in byName[name] ?? [] { candidates.insert(k) }
        }
        var best: Prepared?
        for k in candidates.sorted() {
            let entry = statements[k]
            guard entry.products.contains(where: { Self.applies($0, to: subject) }) else { continue }
            if let b = best {
                let bt = b.statement.timestamp ?? .distantPast, st = entry.statement.timestamp ?? .distantPast
                if st < bt { continue }
            }
            best = entry
        }
        return best.map { VEXDecision(statement: $0.statement, source: $0.source) }
    }

    /// Whether the finding is suppressed (`not_affected` or `fixed` decides it).
    public func suppresses(_ subject: VEXSubject) -> Bool { decision(for: subject)?.suppressed ?? false }

    static func applies(_ product: PreparedProduct, to subject: VEXSubject) -> Bool {
        if isImage(product, subject) {
            return product.subcomponents.isEmpty || product.subcomponents.contains { isPackage($0, subject) }
        }
        return isPackage(product.purl, subject)
    }

    /// "sha256:…" itself, or `pkg:oci/NAME@sha256%3A…` (the digest percent-encoded, or not), of
    /// the finding's image or of one that holds it (an index).
    static func isImage(_ product: PreparedProduct, _ subject: VEXSubject) -> Bool {
        if product.id == subject.manifest || subject.holders.contains(product.id) { return true }
        guard let purl = product.purl, purl.type == "oci", let v = purl.version else { return false }
        return v == subject.manifest || subject.holders.contains(v)
    }

    static func isPackage(_ purl: PackageURLParts?, _ subject: VEXSubject) -> Bool {
        guard let purl, purl.type != "oci" else { return false }
        guard purl.name == subject.package || purl.name == subject.sourcePackage else { return false }
        guard let v = purl.version else { return true }
        // rpm purls carry the epoch as a qualifier: "1:3.0.7-24.el9" is "3.0.7-24.el9?epoch=1".
        if let e = purl.qualifiers["epoch"] { return "\(e):\(v)" == subject.installedVersion }
        return v == subject.installedVersion
    }
}

/// The parts of a package URL this file needs, percent-decoded.
struct PackageURLParts: Sendable {
    var type: String
    var name: String
    var version: String?
    var qualifiers: [String: String]

    init?(_ s: String) {
        guard s.hasPrefix("pkg:") else { return nil }
        var rest = Substring(s.dropFirst(4))
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var qualifiers: [String: String] = [:]
        if let q = rest.firstIndex(of: "?") {
            for pair in rest[rest.index(after: q)...].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { qualifiers[kv[0].lowercased()] = String(kv[1]).removingPercentEncoding ?? String(kv[1]) }
            }
            rest = rest[..<q]
        }
        var version: String?
        if let at = rest.lastIndex(of: "@"), rest[..<at].contains("/") {
            version = String(rest[rest.index(after: at)...]).removingPercentEncoding
            rest = rest[..<at]
        }
        let parts = rest.split(separator: "/", omittingEmptySubsequences: true)
        guard parts.count >= 2, let last = parts.last, let name = String(last).removingPercentEncoding else { return nil }
        type = parts[0].lowercased()
        self.name = name
        self.version = version
        self.qualifiers = qualifiers
    }
}
