import Access
import Crypto
import Foundation
import OCIModel

/// Client networks mapped to regions (`--client-network CIDR=REGION`, issue 13 item 4): the
/// region a client's address belongs to is that of the longest prefix that contains it.
public struct ClientNetworks: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var network: CIDR
        public var region: String
    }

    public let entries: [Entry]

    public init(_ entries: [Entry] = []) {
        // Longest prefix first: the first match is the most specific.
        self.entries = entries.sorted { $0.network.prefixLength > $1.network.prefixLength }
    }

    /// Parses `CIDR=REGION` items (a list, or one string separated by commas or spaces). Throws a
    /// message naming the bad item; the same network twice is refused.
    public static func parse(_ items: [String]) throws(ReplicationError) -> ClientNetworks {
        var out: [Entry] = []
        for raw in items.flatMap({ $0.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\n" }) }) {
            let item = String(raw)
            guard let eq = item.firstIndex(of: "="), eq != item.startIndex, item.index(after: eq) != item.endIndex else {
                throw .invalid("a client network is CIDR=REGION (e.g. 10.20.0.0/16=southeastasia), got '\(item.prefix(80))'")
            }
            let cidrText = String(item[..<eq]), region = String(item[item.index(after: eq)...])
            let network: CIDR
            do { network = try CIDR(cidrText) } catch {
                throw .invalid("client network '\(item.prefix(80))': \(error.message)")
            }
            do { try ReplicationService.validate(region: region) } catch {
                throw .invalid("client network '\(item.prefix(80))': the region is 1-64 characters of a-z, 0-9 and '-'")
            }
            if out.contains(where: { $0.network == network }) {
                throw .invalid("client network \(network) is mapped twice")
            }
            out.append(Entry(network: network, region: region))
        }
        return ClientNetworks(out)
    }

    /// The region of the most specific network containing `address`, nil when none does.
    public func region(for address: IPAddress) -> String? {
        entries.first { $0.network.contains(address) }?.region
    }
}

/// A signed data-endpoint URL (issue 13 item 4): what region A hands a client it sends to region
/// B's data endpoint with `307`. The query names the signing region, its key, the expiry (Unix
/// seconds) and an Ed25519 signature over the method, repository, digest, expiry, region and
/// key id; it carries no bearer token. B verifies it with A's public key, which it fetched from A
/// over the replication credential: no secret is shared between regions.
///
/// Bound to the client (`berth-client=1`, when the signing region's `bind-client` is on): the
/// signature also covers the client's address as A saw it, which never appears in the URL; B
/// verifies it with the address it sees, so a URL that leaks works for no other address. Adding
/// or removing the parameter breaks the signature (the payloads differ). Both regions must see
/// the same address: one network path, and proxies both trust (`trusted-proxies`).
public struct DataEndpointSignature: Sendable, Equatable {
    public static let regionParameter = "berth-region"
    public static let keyParameter = "berth-key"
    public static let expiresParameter = "berth-expires"
    public static let signatureParameter = "berth-signature"
    /// Present (`1`) when the signature covers the client's address.
    public static let clientParameter = "berth-client"
    /// The longest a signed URL may live (a signer that asks for more is refused by the verifier).
    public static let maxLifetime: TimeInterval = 300
    /// Clock difference between regions tolerated on the expiry.
    public static let skew: TimeInterval = 30

    public var region: String
    public var keyId: String
    public var expires: Int64
    public var signature: Data
    /// Whether the signature covers the client's address.
    public var clientBound = false

    static func payload(method: String, repository: String, digest: String, expires: Int64, region: String, keyId: String,
                        client: String? = nil) -> Data {
        // Lengths first: no field can run into the next. A bound payload has its own prefix and
        // one more field, so it never equals an unbound one.
        let fields = [method, repository, digest, String(expires), region, keyId] + (client.map { [$0] } ?? [])
        let prefix = client == nil ? "berth-data-endpoint-v1" : "berth-data-endpoint-v1-client"
        return Data((prefix + fields.map { "\n\($0.utf8.count):\($0)" }.joined()).utf8)
    }

    /// The query of a signed GET of `digest` in `repository`, valid until `expires`; with
    /// `client`, bound to that address (its canonical text, `IPAddress.description`).
    public static func sign(repository: String, digest: String, expires: Int64, region: String,
                            key: Curve25519.Signing.PrivateKey, client: String? = nil) throws -> String {
        let kid = keyId(key.publicKey)
        let sig = try key.signature(for: payload(method: "GET", repository: repository, digest: digest, expires: expires,
                                                 region: region, keyId: kid, client: client))
        let bound = client == nil ? "" : "&\(clientParameter)=1"
        return "\(regionParameter)=\(region)&\(keyParameter)=\(kid)&\(expiresParameter)=\(expires)\(bound)&\(signatureParameter)=\(base64url(sig))"
    }

    /// The first 16 hex digits of the SHA-256 of the raw public key.
    public static func keyId(_ key: Curve25519.Signing.PublicKey) -> String {
        SHA256.hash(data: key.rawRepresentation).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// The signature's fields from a query (`name → every value`); each exactly once and well
    /// formed, else the reason.
    public static func parse(_ query: [String: [String]]) throws(DataEndpointRefusal) -> DataEndpointSignature {
        func one(_ name: String) throws(DataEndpointRefusal) -> String {
            guard let values = query[name], values.count == 1, let v = values.first, !v.isEmpty, v.utf8.count <= 256 else {
                throw .malformed("the signed URL needs exactly one \(name)")
            }
            return v
        }
        let region = try one(regionParameter), kid = try one(keyParameter)
        guard let expires = Int64(try one(expiresParameter)) else { throw .malformed("\(expiresParameter) is not a time") }
        guard let sig = unbase64url(try one(signatureParameter)), sig.count == 64 else { throw .malformed("the signature is not an Ed25519 signature") }
        guard kid.utf8.count == 16, kid.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else {
            throw .malformed("\(keyParameter) is not a key id")
        }
        do { try ReplicationService.validate(region: region) } catch { throw .malformed("\(regionParameter) is not a region") }
        var bound = false
        if let values = query[clientParameter], !values.isEmpty {   // (absent: no values)
            guard values == ["1"] else { throw .malformed("\(clientParameter) must be given once, as 1") }
            bound = true
        }
        return DataEndpointSignature(region: region, keyId: kid, expires: expires, signature: sig, clientBound: bound)
    }

    /// Whether the signature holds for this read at `now` under `key` (the signing region's key
    /// named by `keyId`), from `client` (the address this region sees; needed when bound).
    public func verify(method: String, repository: String, digest: String, key: Curve25519.Signing.PublicKey,
                       now: Date, client: String? = nil) throws(DataEndpointRefusal) {
        let t = now.timeIntervalSince1970
        guard Double(expires) >= t - Self.skew else { throw .expired }
        guard Double(expires) <= t + Self.maxLifetime + Self.skew else { throw .malformed("the signed URL lives longer than allowed") }
        guard Self.keyId(key) == keyId else { throw .unknownKey }
        if clientBound {
            guard let client else { throw .otherClient }
            let data = Self.payload(method: method, repository: repository, digest: digest, expires: expires, region: region,
                                    keyId: keyId, client: client)
            guard key.isValidSignature(signature, for: data) else { throw .otherClient }
            return
        }
        let data = Self.payload(method: method, repository: repository, digest: digest, expires: expires, region: region, keyId: keyId)
        guard key.isValidSignature(signature, for: data) else { throw .badSignature }
    }

    static func base64url(_ data: some DataProtocol) -> String {
        Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func unbase64url(_ text: String) -> Data? {
        guard text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d || $0 == 0x5f })
        else { return nil }
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while s.utf8.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s)
    }
}

/// Why a signed data-endpoint read is refused (never a blob).
public enum DataEndpointRefusal: Error, Equatable, Sendable {
    case malformed(String)
    case expired
    case unknownRegion(String)
    case unknownKey
    case badSignature
    /// A URL bound to a client, presented from another address (or one this region cannot tell).
    case otherClient

    public var message: String {
        switch self {
        case .malformed(let m): "signed URL refused: \(m)"
        case .expired: "signed URL refused: it expired"
        case .unknownRegion(let r): "signed URL refused: \(r) is not a replica of this region"
        case .unknownKey: "signed URL refused: the signing region's key is unknown"
        case .badSignature: "signed URL refused: the signature does not hold for this repository, digest and time"
        case .otherClient: "signed URL refused: it was issued to another client address (or does not hold for this repository, digest and time)"
        }
    }

    /// 401 for what a fresh URL from the login server fixes (expired), 403 for the rest.
    public var status: Int { self == .expired ? 401 : 403 }
}

/// The health of a peer as this node's end-to-end checks see it (issue 13 item 5): unknown until
/// the first answer; `failuresToFail` failed checks in a row (an error, a timeout, or a peer that
/// reports itself unhealthy) make it unhealthy, `successesToRecover` good ones in a row healthy
/// again. Only a healthy peer is routed to.
public struct PeerHealth: Sendable, Equatable {
    public enum State: String, Sendable { case unknown, healthy, unhealthy }

    public struct Snapshot: Sendable, Equatable {
        public var state: State
        public var since: Date?
        public var lastError: String?
        public var lagEvents: Int64?
    }

    public let failuresToFail: Int
    public let successesToRecover: Int
    public private(set) var state: State = .unknown
    public private(set) var since: Date?
    public private(set) var lastError: String?
    public private(set) var lagEvents: Int64?
    private var failures = 0
    private var successes = 0

    public init(failuresToFail: Int = 2, successesToRecover: Int = 2) {
        self.failuresToFail = max(1, failuresToFail)
        self.successesToRecover = max(1, successesToRecover)
    }

    /// One check's outcome: nil error for a good answer. Returns whether the state changed.
    @discardableResult
    public mutating func record(error: String?, lagEvents: Int64? = nil, at now: Date) -> Bool {
        let before = state
        if let error {
            lastError = error
            successes = 0
            failures += 1
            if state != .unhealthy, failures >= failuresToFail || state == .unknown { state = .unhealthy }
        } else {
            self.lagEvents = lagEvents
            failures = 0
            successes += 1
            // The first good answer of a peer never seen makes it healthy: routing starts at once.
            if state == .unknown || (state == .unhealthy && successes >= successesToRecover) {
                state = .healthy
                lastError = nil
            }
        }
        if state != before { since = now }
        return state != before
    }

    public var snapshot: Snapshot { Snapshot(state: state, since: since, lastError: lastError, lagEvents: lagEvents) }
}
