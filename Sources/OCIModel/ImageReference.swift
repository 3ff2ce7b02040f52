/// An image reference `[host[:port]/]repository[:tag][@digest]`: the one parser the server (admission
/// reviews), the signing client and the CLI share.
///
/// As in the Docker/OCI reference grammar, the first path component is the registry host when it
/// contains a `.` or a `:`, is `localhost`, or is `registryHost` (the name this registry answers to);
/// otherwise it is part of the repository. The digest follows the first `@`; the tag follows the last
/// `:` after the last `/`. Repository, tag and digest are validated with the distribution-spec grammars.
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var host: String?
    public var repository: String
    public var tag: String?
    public var digest: Digest?

    /// The tag a reference without tag or digest means, as docker reads it.
    public var tagOrLatest: String { tag ?? "latest" }

    public init(parsing text: String, registryHost: String? = nil) throws(RegistryError) {
        func fail(_ why: String) -> RegistryError {
            RegistryError(.nameInvalid, "invalid image reference \"\(text.prefix(300))\": \(why) (expected [HOST[:PORT]/]REPOSITORY[:TAG][@DIGEST])")
        }
        guard !text.isEmpty, text.utf8.count <= 512 else { throw fail(text.isEmpty ? "empty" : "too long") }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            do {
                digest = try Digest(parsing: rest[rest.index(after: at)...])
            } catch {
                throw fail("the part after @ is not a digest such as sha256:<64 hex digits>")
            }
            rest = rest[..<at]
        }
        host = nil
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" || (registryHost.map { first == $0[...] } ?? false) {
                guard !first.isEmpty, first.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || ".-:[]".contains($0)) }),
                      Self.portIsValid(first) else {
                    throw fail("invalid registry host (HOST[:PORT], a port up to 65535)")
                }
                host = String(first)
                rest = rest[rest.index(after: slash)...]
            }
        }
        tag = nil
        if let colon = rest.lastIndex(of: ":") {
            let t = rest[rest.index(after: colon)...]
            guard Tag.isValid(t) else { throw fail("invalid tag (letters, digits, _ . -, at most 128, not starting with . or -)") }
            tag = String(t)
            rest = rest[..<colon]
        }
        guard RepositoryName.isValid(String(rest)) else {
            throw fail("invalid repository name (lowercase components such as payments/api)")
        }
        repository = String(rest)
    }

    /// A `:port` after the host (or after `]` of a bracketed IPv6 address) is a number up to 65535.
    static func portIsValid(_ host: Substring) -> Bool {
        let afterAddress = host.lastIndex(of: "]").map { host[host.index(after: $0)...] } ?? host
        guard let colon = afterAddress.firstIndex(of: ":") else { return !host.hasPrefix("[") || host.hasSuffix("]") }
        let port = afterAddress[afterAddress.index(after: colon)...]
        guard port.utf8.count <= 5, let n = Int(port), (0...65535).contains(n) else { return false }
        return true
    }

    public var description: String {
        (host.map { $0 + "/" } ?? "") + repository + (tag.map { ":" + $0 } ?? "") + (digest.map { "@" + $0.string } ?? "")
    }
}
