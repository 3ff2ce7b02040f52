import OCIModel

/// An image reference as docker writes it: `[registry/]repository[:tag][@digest]`.
///
/// A reference without a registry names Docker Hub; one without tag or digest means `latest`
/// (`tag` is then nil and `tagOrLatest` says so). The repository follows the OCI grammar
/// (lower case); the registry is `host[:port]` and is recognised, as docker does, by a `.` or a
/// `:` in the first component, or by being `localhost`.
public struct ImageReference: Hashable, Sendable, CustomStringConvertible {
    public var registry: String?
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    public var tagOrLatest: String { tag ?? "latest" }

    public var description: String {
        var s = registry.map { "\($0)/" } ?? ""
        s += repository
        if let tag { s += ":\(tag)" }
        if let digest { s += "@\(digest.string)" }
        return s
    }

    /// Parses a reference; the error is a reason to show after "line N: ".
    public init(parsing raw: String) throws(ImageReferenceError) {
        guard !raw.isEmpty, raw.utf8.count <= 512 else { throw ImageReferenceError(raw, "an image reference is 1 to 512 characters") }
        var rest = Substring(raw)
        if let at = rest.firstIndex(of: "@") {
            do {
                digest = try Digest(parsing: String(rest[rest.index(after: at)...]))
            } catch {
                throw ImageReferenceError(raw, "the digest is not algorithm:hex")
            }
            rest = rest[..<at]
        }
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let t = rest[rest.index(after: colon)...]
            guard Tag.isValid(t) else { throw ImageReferenceError(raw, "the tag \(quoted(t)) is not a valid tag") }
            tag = String(t)
            rest = rest[..<colon]
        }
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" {
                guard Self.isHost(first) else { throw ImageReferenceError(raw, "the registry \(quoted(first)) is not host[:port]") }
                registry = String(first)
                rest = rest[rest.index(after: slash)...]
            }
        }
        guard RepositoryName.isValid(String(rest)) else {
            throw ImageReferenceError(raw, "the repository \(quoted(rest)) is not a valid name (lower case letters, digits, separators)")
        }
        repository = String(rest)
    }

    private static func isHost(_ s: Substring) -> Bool {
        let parts = s.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let host = parts.first, !host.isEmpty, host.utf8.count <= 253,
              host.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e || $0 == 0x2d })
        else { return false }
        if parts.count == 2 {
            guard let port = Int(parts[1]), (1...65535).contains(port), parts[1].utf8.count <= 5 else { return false }
        }
        return true
    }
}

public struct ImageReferenceError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reference: String
    public let reason: String
    init(_ reference: some StringProtocol, _ reason: String) {
        self.reference = String(reference)
        self.reason = reason
    }
    public var description: String { "invalid image reference \(quoted(reference)): \(reason)" }
}
