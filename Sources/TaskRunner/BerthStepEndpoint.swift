import Foundation

/// Where a task's `berth` steps reach this server: its own listener, never `--public-url` (behind
/// a TLS-terminating proxy the public URL's host is the proxy, and the local listener may be
/// plain HTTP, so a URL made of the one's host and the other's scheme sent the run's token in
/// the clear to the proxy). The child gets it as `BERTH_REGISTRY`, with `BERTH_CONNECT_ADDRESS`
/// and `BERTH_CA_FILE` when the listener serves TLS (see `TokenEndpoint.localListenerClient`).
public struct BerthStepEndpoint: Sendable, Equatable {
    /// `BERTH_REGISTRY`: `http://address:port`, or with TLS `https://NAME:port` where NAME is a
    /// name the server's certificate holds (so the child verifies the certificate as it is).
    public var url: String
    /// `BERTH_CONNECT_ADDRESS`: where the URL's host is reached (the listener), when the URL names
    /// the certificate's host rather than the listener's address.
    public var connectAddress: String?
    /// `BERTH_CA_FILE`: the server's certificate file, trusted by the child besides the system's roots.
    public var caFile: String?

    public init(url: String, connectAddress: String? = nil, caFile: String? = nil) {
        self.url = url; self.connectAddress = connectAddress; self.caFile = caFile
    }

    /// The listener's endpoint: a wildcard listen address is reached on loopback; with TLS the
    /// URL names the listener's address when the certificate holds it, else the certificate's
    /// first host name (a wildcard name `*.example.com` as `berth-local.example.com`) reached at
    /// the listener's address. A certificate that names no host cannot be verified: refused
    /// (the server runs no `berth` steps then, and says why).
    public static func forListener(host: String, port: Int, tls: (certificateFile: String, names: [String])?)
        -> Result<BerthStepEndpoint, TaskRunError> {
        let address = ["", "0.0.0.0", "::", "[::]", "*"].contains(host) ? "127.0.0.1" : host
        func authority(_ host: String) -> String {
            (host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host) + ":\(port)"
        }
        guard let tls else { return .success(BerthStepEndpoint(url: "http://" + authority(address))) }
        let bare = address.hasPrefix("[") && address.hasSuffix("]") ? String(address.dropFirst().dropLast()) : address
        let names = tls.names.map { $0.lowercased() }
        if names.contains(bare.lowercased()) {
            return .success(BerthStepEndpoint(url: "https://" + authority(bare), caFile: tls.certificateFile))
        }
        let hostNames = names.filter { !isIPAddress($0) && !$0.isEmpty }
        let name = hostNames.first { !$0.hasPrefix("*.") }
            ?? hostNames.first { $0.hasPrefix("*.") && $0.count > 2 }.map { "berth-local" + $0.dropFirst() }
        guard let name else {
            return .failure(TaskRunError("the TLS certificate names neither the listen address \(bare) nor a host name, so a berth step could not verify it"))
        }
        return .success(BerthStepEndpoint(url: "https://" + authority(name), connectAddress: bare, caFile: tls.certificateFile))
    }

    static func isIPAddress(_ s: String) -> Bool {
        s.contains(":") || (!s.isEmpty && s.allSatisfy { $0 == "." || $0.isNumber })
    }
}

/// The `berth` steps' endpoint as it is now, shared by every copy of the runner's configuration
/// and replaced while the server runs (SIGHUP reloads the TLS certificate, and a step's URL
/// names a host the certificate holds: the names read at start would be stale).
public final class BerthStepTarget: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (endpoint: BerthStepEndpoint?, unavailable: String)

    public init(endpoint: BerthStepEndpoint?, unavailable: String) { value = (endpoint, unavailable) }

    public var current: (endpoint: BerthStepEndpoint?, unavailable: String) {
        lock.lock(); defer { lock.unlock() }
        return value
    }

    public func set(endpoint: BerthStepEndpoint?, unavailable: String) {
        lock.lock(); defer { lock.unlock() }
        value = (endpoint, unavailable)
    }
}
