import Foundation

/// Where the PostgreSQL metadata backend connects, read from a `postgres://` URL:
///
///     postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|require]
///
/// The password may instead come from elsewhere (a file the operator names): pass it as `password`.
/// TLS is required unless the host is a loopback address or the URL says `sslmode=disable`. The
/// configuration's `description` is the redacted URL: printing or logging it never shows the password.
public struct PostgresConfiguration: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable, Equatable {
        /// Plain TCP.
        case disable
        /// TLS with the server's certificate verified against the system's trust roots and the host name.
        case require
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    /// The schema the tables live in (the `search_path` of every connection); nil: the role's default.
    public var schema: String?
    /// Connections the store keeps open at most.
    public var maximumConnections: Int = 16

    public init(host: String, port: Int = 5432, username: String, password: String?, database: String, tls: TLSMode,
                schema: String? = nil) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.schema = schema
    }

    /// Reads a `postgres://` (or `postgresql://`) URL. A `password` given here wins over one in the URL.
    public init(url: String, password: String? = nil) throws {
        guard let c = URLComponents(string: url), let scheme = c.scheme, ["postgres", "postgresql"].contains(scheme.lowercased()) else {
            throw PostgresStoreError("the PostgreSQL URL must look like postgres://USER:PASSWORD@HOST:PORT/DATABASE")
        }
        guard let host = c.host, !host.isEmpty else { throw PostgresStoreError("the PostgreSQL URL names no host") }
        guard let user = c.user, !user.isEmpty else { throw PostgresStoreError("the PostgreSQL URL names no user") }
        let port = c.port ?? 5432
        guard (1...65535).contains(port) else { throw PostgresStoreError("the PostgreSQL URL's port is out of range") }
        var database = c.path
        if database.hasPrefix("/") { database.removeFirst() }
        guard !database.contains("/") else { throw PostgresStoreError("the PostgreSQL URL's path must be one database name") }
        let loopback = ["127.0.0.1", "::1", "[::1]", "localhost"].contains(host.lowercased()) || host.hasPrefix("127.")
        var tls: TLSMode = loopback ? .disable : .require
        for item in c.queryItems ?? [] {
            switch item.name {
            case "sslmode":
                guard let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                    throw PostgresStoreError("the PostgreSQL URL's sslmode must be disable or require")
                }
                tls = mode
            default:
                throw PostgresStoreError("the PostgreSQL URL has an unknown parameter '\(item.name)' (known: sslmode)")
            }
        }
        self.init(host: host.hasPrefix("[") ? String(host.dropFirst().dropLast()) : host, port: port, username: user,
                  password: password ?? c.password, database: database.isEmpty ? user : database, tls: tls)
    }

    /// The URL without its password.
    public var description: String {
        var c = URLComponents()
        c.scheme = "postgres"
        c.user = username
        if password != nil { c.password = "***" }
        c.host = host.contains(":") ? "[\(host)]" : host
        c.port = port
        c.path = "/" + database
        var text = c.string ?? "postgres://\(username)@\(host):\(port)/\(database)"
        text += "?sslmode=\(tls.rawValue)"
        if let schema { text += " (schema \(schema))" }
        return text
    }

    /// Removes the password of any `scheme://user:password@` URL in `text` (for error messages that
    /// may quote a setting back).
    public static func redact(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text.range(of: "@", range: scheme.upperBound..<text.endIndex) else {
            return text
        }
        let userinfo = text[scheme.upperBound..<at.lowerBound]
        guard let colon = userinfo.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at.lowerBound...])
    }
}

/// A failure of the PostgreSQL metadata backend, in words an operator can act on. It never carries
/// a password or a bound value.
public struct PostgresStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// The server's SQLSTATE, when the server answered with an error.
    public var sqlState: String?

    public init(_ message: String, sqlState: String? = nil) {
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }
}
