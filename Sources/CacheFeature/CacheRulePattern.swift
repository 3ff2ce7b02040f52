import OCIModel

/// The grammar of a cache rule and the mapping of a repository of this registry to the upstream
/// one it caches: `--source-repo upstream.example:5000/library/*` with `--target-repo mirror/*` maps
/// `mirror/redis` to `library/redis` at `upstream.example:5000`; an exact source
/// (`upstream.example/library/redis`) goes with an exact target (`mirror/redis`).
public struct CacheRulePattern: Sendable, Equatable {
    /// `host[:port]` of the upstream, lower-cased.
    public let registry: String
    /// The upstream repository, or its prefix (with the trailing slash) when `wildcard`.
    public let sourcePath: String
    /// The repository here, or its prefix (with the trailing slash) when `wildcard`.
    public let targetPath: String
    public let wildcard: Bool

    public init(source: String, target: String) throws(CacheError) {
        let sourceWild = source.hasSuffix("/*"), targetWild = target.hasSuffix("/*")
        guard sourceWild == targetWild else {
            throw .invalid("source and target must both end in /* (a prefix) or both name one repository")
        }
        wildcard = sourceWild
        let sourceBody = sourceWild ? String(source.dropLast(2)) : source
        let targetBody = targetWild ? String(target.dropLast(2)) : target
        guard source.utf8.count <= 512, let slash = sourceBody.firstIndex(of: "/") else {
            throw .invalid("source must be UPSTREAM_HOST[:PORT]/REPOSITORY or UPSTREAM_HOST[:PORT]/PREFIX/* (e.g. registry.example/library/*)")
        }
        let host = sourceBody[..<slash].lowercased()
        let path = String(sourceBody[sourceBody.index(after: slash)...])
        guard Self.hostIsValid(host) else {
            throw .invalid("source's upstream host must be HOST[:PORT] (letters, digits, '.', '-'; a port up to 65535)")
        }
        guard RepositoryName.isValid(path) else {
            throw .invalid("source's repository part '\(path.prefix(120))' is not a repository name (lowercase components such as library/redis)")
        }
        guard RepositoryName.isValid(targetBody) else {
            throw .invalid("target must be a repository name or PREFIX/* of this registry (e.g. mirror/*), not '\(target.prefix(120))'")
        }
        registry = host
        sourcePath = wildcard ? path + "/" : path
        targetPath = wildcard ? targetBody + "/" : targetBody
    }

    /// The source and target as written (`host/library/*`, `mirror/*`).
    public var source: String { registry + "/" + (wildcard ? sourcePath + "*" : sourcePath) }
    public var target: String { wildcard ? targetPath + "*" : targetPath }

    /// The upstream repository that `repository` caches, nil when the rule does not match it.
    /// The mapped name is checked again: a prefix and a suffix each valid can still make a name
    /// too long.
    public func upstreamRepository(for repository: String) -> String? {
        let mapped: String
        if wildcard {
            guard repository.hasPrefix(targetPath), repository.utf8.count > targetPath.utf8.count else { return nil }
            mapped = sourcePath + repository.dropFirst(targetPath.count)
        } else {
            guard repository == targetPath else { return nil }
            mapped = sourcePath
        }
        return RepositoryName.isValid(mapped) ? mapped : nil
    }

    static func hostIsValid(_ host: String) -> Bool {
        var name = Substring(host), port: Substring?
        if let colon = host.lastIndex(of: ":") {
            name = host[..<colon]
            port = host[host.index(after: colon)...]
        }
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy(\.isASCII), port.allSatisfy(\.isNumber),
                  let n = Int(port), n > 0, n <= 65535 else { return false }
        }
        return !name.isEmpty && name.count <= 253 && name.first != "-" && name.first != "."
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
    }
}

/// Errors of the cache rules and credential sets, in the management API's envelope at the HTTP edge.
public enum CacheError: Error, Equatable, Sendable {
    case invalid(String)
    case notFound(String)
    case conflict(String)
}
