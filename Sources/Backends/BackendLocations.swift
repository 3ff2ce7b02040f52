import Foundation

/// The `metadata` and `storage` settings of `berth serve`: one URL-like text naming a backend.
/// Parsed with `URLComponents`; every error names what is wrong but never quotes the text back
/// (a PostgreSQL URL may hold a password).
public struct BackendLocationError: Error, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// `sqlite` | `sqlite:///PATH` | `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]`.
public enum MetadataLocation: Equatable, Sendable {
    /// The SQLite file at `path`, or `metadata.sqlite` under the data directory when nil.
    case sqlite(path: String?)
    /// A PostgreSQL database; `url` is the text as given (checked by the PostgreSQL backend).
    case postgres(url: String, hasPassword: Bool)

    static let usage = "use sqlite, sqlite:///PATH or postgres://USER@HOST:PORT/DATABASE?sslmode=disable|require"

    public static func parse(_ text: String) throws(BackendLocationError) -> MetadataLocation {
        if text == "sqlite" { return .sqlite(path: nil) }
        guard let c = URLComponents(string: text), let scheme = c.scheme?.lowercased() else {
            throw BackendLocationError("metadata is not sqlite or a URL: " + usage)
        }
        switch scheme {
        case "sqlite":
            return .sqlite(path: try localPath(c, scheme: "sqlite"))
        case "postgres", "postgresql":
            guard let host = c.host, !host.isEmpty else { throw BackendLocationError("the metadata URL names no host") }
            _ = try queryItems(c, known: ["sslmode"], what: "the metadata URL")
            return .postgres(url: text, hasPassword: c.password != nil)
        default:
            throw BackendLocationError("unknown metadata scheme '\(scheme)': " + usage)
        }
    }
}

/// `filesystem` | `file:///PATH` | `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION`.
public enum StorageLocation: Equatable, Sendable {
    /// Content-addressed files under `root`, or `storage/` under the data directory when nil.
    case filesystem(root: String?)
    /// An S3-compatible bucket; endpoint and region are nil when the URL leaves them out.
    case s3(bucket: String, prefix: String, endpoint: String?, region: String?)

    static let usage = "use filesystem, file:///PATH or s3://BUCKET[/PREFIX]?endpoint=http(s)://HOST[:PORT]&region=REGION"

    public static func parse(_ text: String) throws(BackendLocationError) -> StorageLocation {
        if text == "filesystem" { return .filesystem(root: nil) }
        guard let c = URLComponents(string: text), let scheme = c.scheme?.lowercased() else {
            throw BackendLocationError("storage is not filesystem or a URL: " + usage)
        }
        switch scheme {
        case "file":
            return .filesystem(root: try localPath(c, scheme: "file"))
        case "s3":
            guard c.user == nil, c.password == nil else {
                throw BackendLocationError("the storage URL must not hold access keys: give them in BERTH_S3_ACCESS_KEY and BERTH_S3_SECRET_KEY, or in s3-credentials-file")
            }
            guard let bucket = c.host, !bucket.isEmpty else { throw BackendLocationError("the storage URL names no bucket: s3://BUCKET?endpoint=…") }
            guard c.percentEncodedHost == bucket, !bucket.hasPrefix("[") else {
                throw BackendLocationError("the storage URL's bucket must be a plain bucket name (lowercase letters, digits, '.', '-')")
            }
            guard c.port == nil else { throw BackendLocationError("the storage URL's bucket takes no port: put the endpoint in ?endpoint=") }
            guard c.fragment == nil else { throw BackendLocationError("the storage URL takes no fragment") }
            var prefix = c.path
            while prefix.hasPrefix("/") { prefix.removeFirst() }
            while prefix.hasSuffix("/") { prefix.removeLast() }
            let items = try queryItems(c, known: ["endpoint", "region"], what: "the storage URL")
            var endpoint = items["endpoint"]
            if let e = endpoint {
                endpoint = try checkedEndpoint(e)
            }
            return .s3(bucket: bucket, prefix: prefix, endpoint: endpoint, region: items["region"])
        default:
            throw BackendLocationError("unknown storage scheme '\(scheme)': " + usage)
        }
    }

    /// An http(s) origin: scheme, host and optional port, nothing else.
    static func checkedEndpoint(_ text: String) throws(BackendLocationError) -> String {
        guard let e = URLComponents(string: text), let scheme = e.scheme?.lowercased(), ["http", "https"].contains(scheme),
              let host = e.host, !host.isEmpty
        else { throw BackendLocationError("the storage URL's endpoint must be http(s)://HOST[:PORT]") }
        guard e.user == nil, e.password == nil, e.query == nil, e.fragment == nil, e.path.isEmpty || e.path == "/" else {
            throw BackendLocationError("the storage URL's endpoint must be only http(s)://HOST[:PORT] (no credentials, path or query)")
        }
        if let port = e.port, !(1...65535).contains(port) {
            throw BackendLocationError("the storage URL's endpoint port is out of range")
        }
        return e.path == "/" ? String(text.dropLast()) : text
    }
}

/// The absolute path of a `sqlite:///PATH` or `file:///PATH` URL (no host, query or fragment).
private func localPath(_ c: URLComponents, scheme: String) throws(BackendLocationError) -> String {
    guard c.host == nil || c.host == "", c.user == nil, c.password == nil, c.port == nil else {
        throw BackendLocationError("a \(scheme): URL names a local path, not a host: \(scheme):///ABSOLUTE/PATH")
    }
    guard c.query == nil, c.fragment == nil else { throw BackendLocationError("a \(scheme): URL takes no query or fragment") }
    let path = c.path
    guard path.hasPrefix("/"), path.count > 1, !path.contains("\0") else {
        throw BackendLocationError("a \(scheme): URL needs an absolute path: \(scheme):///ABSOLUTE/PATH")
    }
    return path
}

/// The query as name → value: every name known, none twice, no value empty.
private func queryItems(_ c: URLComponents, known: [String], what: String) throws(BackendLocationError) -> [String: String] {
    var result: [String: String] = [:]
    for item in c.queryItems ?? [] {
        guard known.contains(item.name) else {
            throw BackendLocationError("\(what) has an unknown query key '\(item.name)' (known: \(known.joined(separator: ", ")))")
        }
        guard result[item.name] == nil else { throw BackendLocationError("\(what) gives the query key '\(item.name)' twice") }
        guard let value = item.value, !value.isEmpty else { throw BackendLocationError("\(what)'s query key '\(item.name)' has no value") }
        result[item.name] = value
    }
    return result
}
