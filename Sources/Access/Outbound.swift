#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import AsyncHTTPClient
import Foundation
import NIOCore
import OCIModel

/// A destination Berth refused to contact.
public struct OutboundRefused: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where Berth may send requests of its own (webhook deliveries, OIDC discovery and JWKS): by
/// default only to public addresses. Loopback, link-local, private, shared (CGNAT), unspecified,
/// multicast and reserved ranges are refused, as is Berth's own listener, unless the operator
/// allows an address range or a host name explicitly (`BERTH_OUTBOUND_ALLOW`). The check is made
/// on every address the host name resolves to, and the connection goes to the address checked,
/// so a name that resolves differently a moment later (DNS rebinding) cannot slip through.
public struct OutboundPolicy: Sendable, Equatable {
    /// Ranges that are allowed even though they are in `refusedRanges`.
    public private(set) var allowedRanges: [CIDR] = []
    /// Host names (lower case) whose every address is allowed.
    public private(set) var allowedHosts: [String] = []
    /// Berth's own listeners (`host`, `port`): never contacted, whatever the allow list says.
    public var ownEndpoints: [Endpoint] = []

    public struct Endpoint: Sendable, Equatable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = OutboundPolicy.normalize(host)
            self.port = port
        }
    }

    public static let refusedRanges: [CIDR] = [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
        // IPv6: unspecified, loopback and the deprecated IPv4-compatible addresses; unique local,
        // link-local, site-local, multicast. IPv4-mapped addresses are checked as IPv4.
        "::/96", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    ].map { try! CIDR($0) }

    static let loopback: [CIDR] = ["127.0.0.0/8", "::1/128"].map { try! CIDR($0) }

    public init() {}

    /// `10.1.2.0/24, 127.0.0.1, hooks.internal`: address ranges and host names.
    public init(allow list: String) throws(RegistryError) {
        for raw in list.split(separator: ",") {
            let entry = raw.trimmingCharacters(in: .whitespaces)
            guard !entry.isEmpty else { continue }
            if entry.contains("/") || entry.contains(":") || IPAddress(entry) != nil {
                allowedRanges.append(try CIDR(entry))   // its own error names what is wrong
            } else {
                let host = Self.normalize(entry)
                guard host.count <= 253, host.first != "-",
                      host.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e }),
                      !host.isEmpty
                else {
                    throw RegistryError(.unsupported, "outbound allow list: '\(entry.prefix(60))' is neither an address range nor a host name",
                                        status: 400)
                }
                allowedHosts.append(host)
            }
        }
    }

    static func normalize(_ host: String) -> String {
        var h = host.lowercased()
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        while h.hasSuffix(".") { h.removeLast() }
        return h
    }

    /// Whether the address may be contacted (the host name allow list aside).
    public func permits(_ address: IPAddress) -> Bool {
        allowedRanges.contains { $0.contains(address) } || !Self.refusedRanges.contains { $0.contains(address) }
    }

    func isOwn(host: String, address: IPAddress, port: Int) -> Bool {
        ownEndpoints.contains { own in
            guard own.port == port else { return false }
            if own.host == host { return true }
            guard let ownAddress = IPAddress(own.host) else { return false }
            if ownAddress == address { return true }
            // A listener on every address (0.0.0.0, ::) is reachable on the loopback addresses.
            let unspecified = ownAddress.isV4 ? ownAddress.bytes[12...].allSatisfy { $0 == 0 } : ownAddress.bytes.allSatisfy { $0 == 0 }
            return unspecified && Self.loopback.contains { $0.contains(address) }
        }
    }

    /// An URL checked for a request: its host, port and the address to connect to.
    public struct Destination: Sendable, Equatable {
        public var scheme: String
        public var host: String
        public var port: Int
        public var address: IPAddress
    }

    /// The scheme, host and port of an http(s) URL (host lower case, without IPv6 brackets).
    public static func origin(of url: String) -> (scheme: String, host: String, port: Int)? {
        guard let u = URL(string: url), let scheme = u.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = u.host, !host.isEmpty else { return nil }
        return (scheme, normalize(host), u.port ?? (scheme == "https" ? 443 : 80))
    }

    /// Resolves the URL's host and checks every address it has. Returns the address to connect
    /// to, or throws `OutboundRefused` naming the reason.
    public func check(_ url: String) async throws(OutboundRefused) -> Destination {
        guard let (scheme, host, port) = Self.origin(of: url) else { throw OutboundRefused("the URL must be an http(s) URL with a host") }
        let addresses: [IPAddress]
        do {
            addresses = try await Self.resolve(host)
        } catch {
            throw OutboundRefused("cannot resolve \(host.prefix(100)): \(error.message)")
        }
        guard let first = addresses.first else { throw OutboundRefused("cannot resolve \(host.prefix(100))") }
        for address in addresses where isOwn(host: host, address: address, port: port) {
            throw OutboundRefused("\(host.prefix(100)) is this registry's own address (\(address), port \(port))")
        }
        if !allowedHosts.contains(host) {
            for address in addresses where !permits(address) {
                throw OutboundRefused("\(host.prefix(100)) resolves to \(address), a loopback, private, link-local or otherwise "
                                      + "non-public address; allow it explicitly with BERTH_OUTBOUND_ALLOW / --outbound-allow")
            }
        }
        return Destination(scheme: scheme, host: host, port: port, address: first)
    }

    /// Checks at configuration time (creating a webhook or a federated credential). A literal
    /// address or a name that resolves to a refused address is refused; a name that does not
    /// resolve (yet) is accepted, since every request is checked again when it is made.
    public func checkTarget(_ url: String) async throws(OutboundRefused) {
        do {
            _ = try await check(url)
        } catch {
            if error.message.hasPrefix("cannot resolve") { return }
            throw error
        }
    }

    /// All addresses of a host (a literal address, in any notation `getaddrinfo` accepts such as
    /// `2130706433`, resolves to itself). Runs off the concurrency pool and event loops.
    static func resolve(_ host: String) async throws(OutboundRefused) -> [IPAddress] {
        let result: Result<[IPAddress], OutboundRefused> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                var hints = addrinfo()
                hints.ai_family = AF_UNSPEC
                #if canImport(Glibc)
                hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
                #else
                hints.ai_socktype = SOCK_STREAM
                #endif
                var list: UnsafeMutablePointer<addrinfo>?
                let status = getaddrinfo(host, nil, &hints, &list)
                guard status == 0 else {
                    continuation.resume(returning: .failure(OutboundRefused(String(cString: gai_strerror(status)))))
                    return
                }
                defer { freeaddrinfo(list) }
                var addresses: [IPAddress] = []
                var node = list
                while let info = node?.pointee {
                    var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                    if info.ai_family == AF_INET, let sa = info.ai_addr {
                        var sin = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                        _ = inet_ntop(AF_INET, &sin.sin_addr, &buffer, socklen_t(buffer.count))
                    } else if info.ai_family == AF_INET6, let sa = info.ai_addr {
                        var sin6 = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                        _ = inet_ntop(AF_INET6, &sin6.sin6_addr, &buffer, socklen_t(buffer.count))
                    }
                    let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                    if let address = IPAddress(text), !addresses.contains(address) { addresses.append(address) }
                    node = info.ai_next
                }
                continuation.resume(returning: .success(addresses))
            }
        }
        return try result.get()
    }

    /// Sends a request to the checked address of its URL (the Host header and TLS server name stay
    /// those of the URL), never following redirects. The body of the answer is read up to
    /// `bodyLimit` bytes (nil when it was longer or broke off).
    public func send(_ request: HTTPClientRequest, timeout: TimeAmount, bodyLimit: Int) async throws -> (status: Int, body: ByteBuffer?) {
        let answer = try await exchange(request, timeout: timeout, bodyLimit: bodyLimit)
        return (answer.status, answer.body)
    }

    /// `send`, answering the response's header fields too (for conditional requests: `ETag`, `Last-Modified`).
    public func exchange(_ request: HTTPClientRequest, timeout: TimeAmount, bodyLimit: Int) async throws
        -> (status: Int, headers: [(name: String, value: String)], body: ByteBuffer?) {
        let destination = try await check(request.url)
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        // The client looks the override up by the URL's host as written.
        if let written = URL(string: request.url)?.host, IPAddress(Self.normalize(written)) == nil {
            configuration.dnsOverride = [written: destination.address.description]
        }
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            let response = try await client.execute(request, timeout: timeout)
            let body = try? await response.body.collect(upTo: bodyLimit)
            try await client.shutdown()
            return (Int(response.status.code), response.headers.map { (name: $0.name, value: $0.value) }, body)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}
