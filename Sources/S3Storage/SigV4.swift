import Crypto
import Foundation
import enum OCIModel.Hex

/// An S3 access key pair. Its description never shows the secret.
public struct S3Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public let accessKey: String
    let secretKey: String

    public init(accessKey: String, secretKey: String) {
        self.accessKey = accessKey
        self.secretKey = secretKey
    }

    public var description: String { "S3Credentials(accessKey: \(accessKey), secretKey: <redacted>)" }
    public var debugDescription: String { description }
}

/// AWS Signature Version 4 for S3 (the `s3` service), written from the specification:
/// a canonical request, the string to sign over its hash, and a signing key derived from the
/// secret by HMAC-SHA256 over date, region, service and `aws4_request`.
///
/// Bodies the blob store sends are in memory and signed with their SHA-256, which the store checks.
/// Only `S3Client.putObject(_:stream:length:)` (unused by the blob store) and presigned GETs use
/// `UNSIGNED-PAYLOAD`, where the signature covers method, path, query and headers but not the bytes.
public struct SigV4Signer: Sendable {
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public let credentials: S3Credentials
    public let region: String
    public let service: String

    public init(credentials: S3Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    // MARK: encoding

    /// RFC 3986 percent-encoding as SigV4 wants it: unreserved characters (A-Z a-z 0-9 - . _ ~) stay,
    /// every other UTF-8 byte becomes %XX with upper-case hex; '/' stays only when `keepSlash`.
    public static func uriEncode(_ s: String, keepSlash: Bool) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in s.utf8 {
            let unreserved = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == 0x2D || b == 0x2E || b == 0x5F || b == 0x7E
            if unreserved || (keepSlash && b == 0x2F) {
                out.unicodeScalars.append(Unicode.Scalar(b))
            } else {
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(b & 0x0F)]))
            }
        }
        return out
    }

    /// The canonical query string: names and values encoded, sorted by encoded name and then by
    /// encoded value (so repeated names have one order), joined with '&'. A name without a value
    /// is `name=`.
    public static func canonicalQuery(_ items: [(String, String)]) -> String {
        // Encoded strings are ASCII, so String ordering is byte ordering.
        let encoded: [(name: String, value: String)] = items.map { item in
            (uriEncode(item.0, keepSlash: false), uriEncode(item.1, keepSlash: false))
        }
        let sorted = encoded.sorted { a, b in a.name == b.name ? a.value < b.value : a.name < b.name }
        return sorted.map { $0.name + "=" + $0.value }.joined(separator: "&")
    }

    /// Header values are trimmed and runs of spaces inside them become one space.
    static func canonicalHeaderValue(_ v: String) -> String {
        v.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    /// The canonical request. `path` is the absolute path as sent on the wire, already encoded
    /// (`encodedPath`); S3 does not normalise or double-encode it.
    public static func canonicalRequest(method: String, encodedPath: String, query: [(String, String)],
                                        headers: [(String, String)], payloadHash: String) -> (request: String, signedHeaders: String) {
        let lowered = headers.map { ($0.0.lowercased(), canonicalHeaderValue($0.1)) }
        var merged: [String: [String]] = [:]
        for (name, value) in lowered { merged[name, default: []].append(value) }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signed = names.joined(separator: ";")
        let request = [method, encodedPath, canonicalQuery(query), canonicalHeaders, signed, payloadHash]
            .joined(separator: "\n")
        return (request, signed)
    }

    // MARK: signing

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    func scope(_ day: Substring) -> String { "\(day)/\(region)/\(service)/aws4_request" }

    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        let hash = SHA256.hash(data: Data(canonicalRequest.utf8)).hexString
        return ["AWS4-HMAC-SHA256", amzDate, scope(amzDate.prefix(8)), hash].joined(separator: "\n")
    }

    public func signingKey(day: Substring) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(s.utf8), using: key)))
        }
        let kDate = hmac(SymmetricKey(data: Data(("AWS4" + credentials.secretKey).utf8)), String(day))
        return hmac(hmac(hmac(kDate, region), service), "aws4_request")
    }

    public func signature(stringToSign: String, amzDate: String) -> String {
        let key = signingKey(day: amzDate.prefix(8))
        return Data(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key)).hexString
    }

    /// Signs a request for the `Authorization` header. `headers` must include `host`; the
    /// `x-amz-date` and `x-amz-content-sha256` headers are added. Returns every header to send.
    public func signHeaders(method: String, encodedPath: String, query: [(String, String)], headers: [(String, String)],
                            payloadHash: String, date: Date = Date()) -> [(String, String)] {
        let stamp = Self.amzDate(date)
        var all = headers
        all.append(("x-amz-date", stamp))
        all.append(("x-amz-content-sha256", payloadHash))
        let (request, signed) = Self.canonicalRequest(method: method, encodedPath: encodedPath, query: query,
                                                      headers: all, payloadHash: payloadHash)
        let sig = signature(stringToSign: stringToSign(canonicalRequest: request, amzDate: stamp), amzDate: stamp)
        all.append(("Authorization",
                    "AWS4-HMAC-SHA256 Credential=\(credentials.accessKey)/\(scope(stamp.prefix(8))),SignedHeaders=\(signed),Signature=\(sig)"))
        return all
    }

    /// Query parameters that presign a request (only `host` signed, payload unsigned), for a URL
    /// valid `expires` seconds from `date`. Append them, encoded, to the request's own query.
    public func presignQuery(method: String, host: String, encodedPath: String, query: [(String, String)] = [],
                             expires: Int, date: Date = Date()) -> [(String, String)] {
        let stamp = Self.amzDate(date)
        var items = query
        items.append(("X-Amz-Algorithm", "AWS4-HMAC-SHA256"))
        items.append(("X-Amz-Credential", "\(credentials.accessKey)/\(scope(stamp.prefix(8)))"))
        items.append(("X-Amz-Date", stamp))
        items.append(("X-Amz-Expires", String(expires)))
        items.append(("X-Amz-SignedHeaders", "host"))
        let (request, _) = Self.canonicalRequest(method: method, encodedPath: encodedPath, query: items,
                                                 headers: [("host", host)], payloadHash: Self.unsignedPayload)
        items.append(("X-Amz-Signature", signature(stringToSign: stringToSign(canonicalRequest: request, amzDate: stamp), amzDate: stamp)))
        return items
    }
}

extension Sequence where Element == UInt8 {
    var hexString: String { Hex.encode(self) }
}

extension SHA256.Digest {
    var hexString: String { Array(self).hexString }
}
