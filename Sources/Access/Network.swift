#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import OCIModel

/// An IPv4 or IPv6 address as 16 bytes (IPv4 as an IPv4-mapped IPv6 address).
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public let isV4: Bool

    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            let raw = withUnsafeBytes(of: &v4) { Array($0) }
            bytes = Array(repeating: 0, count: 10) + [0xff, 0xff] + raw
            isV4 = true
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            let raw = withUnsafeBytes(of: &v6) { Array($0) }
            let mapped = raw[0..<10].allSatisfy { $0 == 0 } && raw[10] == 0xff && raw[11] == 0xff
            bytes = raw
            isV4 = mapped
        } else {
            return nil
        }
    }

    public var description: String {
        if isV4 { return bytes[12...].map(String.init).joined(separator: ".") }
        var addr = in6_addr()
        withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count)) != nil else { return "?" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// `10.0.0.0/8`, `192.168.1.7` (a /32), `fd00::/8`.
public struct CIDR: Hashable, Sendable, CustomStringConvertible, Codable {
    public let network: IPAddress
    public let prefixLength: Int   // in the 128-bit space

    public init(_ text: String) throws(RegistryError) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let address = IPAddress(first) else {
            throw RegistryError(.unsupported, "invalid IP address or CIDR range: \(text.prefix(60))", status: 400)
        }
        // The prefix counts in the notation used: `::ffff:10.0.0.0/104` is IPv6 notation.
        let v4Notation = address.isV4 && !first.contains(":")
        var length = v4Notation ? 32 : 128
        if parts.count == 2 {
            guard let n = Int(parts[1]), n >= 0, n <= length else {
                throw RegistryError(.unsupported, "invalid prefix length in \(text.prefix(60))", status: 400)
            }
            length = n
        }
        network = address
        prefixLength = v4Notation ? length + 96 : length
    }

    public func contains(_ address: IPAddress) -> Bool {
        var remaining = prefixLength
        for i in 0..<16 {
            if remaining <= 0 { return true }
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xff : ~(0xff >> UInt8(bits))
            if (network.bytes[i] & mask) != (address.bytes[i] & mask) { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String {
        network.isV4 && prefixLength >= 96 ? "\(network)/\(prefixLength - 96)" : "\(network)/\(prefixLength)"
    }

    public init(from decoder: any Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }

    /// Loopback and the private ranges of RFC 1918 / RFC 4193.
    public static let privateRanges: [CIDR] = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7"]
        .map { try! CIDR($0) }
}

/// Who may reach the registry over the network at all.
public struct NetworkPolicy: Sendable, Equatable, Codable {
    public enum DefaultAction: String, Sendable, Codable { case allow = "Allow", deny = "Deny" }

    /// When true every address is served (subject to authentication). When false only private
    /// ranges and the IP rules are.
    public var publicNetworkEnabled = true
    public var defaultAction: DefaultAction = .allow
    public var ipRules: [CIDR] = []
    /// Identities marked as trusted services pass the firewall after authenticating.
    public var allowTrustedServices = true
    /// `X-Forwarded-For` is believed only from these proxies.
    public var trustedProxies: [CIDR] = []

    public init() {}

    public enum Verdict: Equatable, Sendable {
        case allowed
        /// Blocked unless the caller authenticates as a trusted service.
        case blockedUnlessTrustedService
    }

    public func evaluate(_ address: IPAddress?) -> Verdict {
        if publicNetworkEnabled && defaultAction == .allow { return .allowed }
        guard let address else { return .blockedUnlessTrustedService }
        if ipRules.contains(where: { $0.contains(address) }) { return .allowed }
        if !publicNetworkEnabled && defaultAction == .allow && CIDR.privateRanges.contains(where: { $0.contains(address) }) {
            return .allowed
        }
        return .blockedUnlessTrustedService
    }

    /// The client address: the peer, or the right-most untrusted `X-Forwarded-For` entry when the
    /// peer is a trusted proxy.
    public func clientAddress(peer: IPAddress?, forwardedFor: String?) -> IPAddress? {
        guard var current = peer, let forwardedFor, trustedProxies.contains(where: { $0.contains(current) }) else { return peer }
        for hop in forwardedFor.split(separator: ",").reversed() {
            guard let addr = IPAddress(hop.trimmingCharacters(in: .whitespaces)) else { return current }
            current = addr
            if !trustedProxies.contains(where: { $0.contains(addr) }) { break }
        }
        return current
    }
}
