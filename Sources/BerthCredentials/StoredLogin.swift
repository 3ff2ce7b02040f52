import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failure of the client side of Berth's credentials (the stored login, the token endpoint, the
/// credential helpers): one line for a person, never a secret in it.
public struct CredentialError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}

// MARK: - stored login

/// `$XDG_CONFIG_HOME/berth/config.json` (default `~/.config/berth/config.json`): the current
/// registry and, per registry, the user name and a refresh token. Never a password. Written by
/// `berth login` and by `docker-credential-berth store`, read by both and by the CLI's commands.
public struct CLIConfig: Codable, Equatable, Sendable {
    public struct Login: Codable, Equatable, Sendable {
        public var username: String
        public var refreshToken: String

        public init(username: String, refreshToken: String) {
            self.username = username
            self.refreshToken = refreshToken
        }
    }

    /// The registry management commands talk to unless `--registry` / `BERTH_REGISTRY` say otherwise.
    public var registry: String?
    public var logins: [String: Login] = [:]

    public init(registry: String? = nil, logins: [String: Login] = [:]) {
        self.registry = registry
        self.logins = logins
    }

    public static func directory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("berth")
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return URL(fileURLWithPath: home).appendingPathComponent(".config").appendingPathComponent("berth")
    }

    public static var path: URL { directory().appendingPathComponent("config.json") }

    public static func load() throws -> CLIConfig {
        let path = Self.path
        guard let data = try readBounded(path.path) else { return CLIConfig() }
        do {
            return try JSONDecoder().decode(CLIConfig.self, from: data)
        } catch {
            throw CredentialError("\(path.path) is not a valid berth configuration file; remove it and run berth login again")
        }
    }

    /// The largest configuration file read: logins for a few hundred registries fit many times over.
    static let sizeLimit = 4 << 20

    /// The file's bytes, nil when it does not exist. Anything but a regular file (a FIFO would block
    /// the read), or a file over `sizeLimit`, is an error rather than a read without end.
    static func readBounded(_ path: String) throws -> Data? {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw CredentialError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw CredentialError("\(path) is not a regular file; remove it and run berth login again")
        }
        guard info.st_size <= sizeLimit else {
            throw CredentialError("\(path) is larger than \(sizeLimit >> 20) MiB, so it is not a berth configuration file; remove it and run berth login again")
        }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CredentialError("cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data.append(contentsOf: buffer[0..<n])
            guard data.count <= sizeLimit else {
                throw CredentialError("\(path) is larger than \(sizeLimit >> 20) MiB, so it is not a berth configuration file; remove it and run berth login again")
            }
        }
        return data
    }

    /// Writes the file with mode 0600 inside a directory with mode 0700, atomically (temp file + rename).
    public func save() throws {
        let dir = Self.directory()
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir.path)
        } catch {
            throw CredentialError("cannot create \(dir.path): \(error.localizedDescription)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(self)
        let final = dir.appendingPathComponent("config.json")
        let temp = dir.appendingPathComponent(".config.json.\(getpid()).tmp")
        let fd = open(temp.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CredentialError("cannot write \(temp.path): \(String(cString: strerror(errno)))") }
        var ok = fchmod(fd, 0o600) == 0
        data.withUnsafeBytes { raw in
            var offset = 0
            while ok, offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { ok = false } else { offset += n }
            }
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(temp.path, final.path) == 0 else {
            unlink(temp.path)
            throw CredentialError("cannot write \(final.path): \(String(cString: strerror(errno)))")
        }
    }

    /// The stored login whose registry is `host` (`host[:port]`, compared without case), with its URL.
    public func login(host: String) -> (url: String, login: Login)? {
        logins.keys.sorted().lazy.filter { serviceName($0).lowercased() == host.lowercased() }
            .compactMap { url in logins[url].map { (url, $0) } }.first
    }
}

/// Normalises what the user typed as a registry: `host:port` gets `https://` (or `http://` for
/// loopback addresses), a trailing slash is dropped.
public func normalizeRegistryURL(_ raw: String) throws -> String {
    var value = raw.trimmingCharacters(in: .whitespaces)
    while value.hasSuffix("/") { value.removeLast() }
    if !value.contains("://") {
        let host = value.split(separator: ":").first.map(String.init) ?? value
        let loopback = host == "localhost" || host.hasPrefix("127.") || value.hasPrefix("[::1]")
        value = (loopback ? "http://" : "https://") + value
    }
    guard let url = URL(string: value), let scheme = url.scheme, scheme == "http" || scheme == "https",
          url.host != nil, url.path.isEmpty || url.path == "/"
    else { throw CredentialError("\(raw.prefix(300)) is not a registry URL (expected e.g. https://registry.example.com or http://127.0.0.1:5000)") }
    return value
}

/// `host:port` (or `host`) of a registry URL: the token service name.
public func serviceName(_ registry: String) -> String {
    guard let url = URL(string: registry), let host = url.host else { return registry }
    let h = host.contains(":") ? "[\(host)]" : host
    return url.port.map { "\(h):\($0)" } ?? h
}
