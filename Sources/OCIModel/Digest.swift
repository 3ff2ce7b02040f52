import Foundation
import Crypto

/// A content digest as the OCI image-spec defines it: `algorithm ":" encoded`.
/// Berth accepts the two registered algorithms, sha256 and sha512, with lower-case hex.
public struct Digest: Hashable, Sendable, CustomStringConvertible, Comparable {
    public enum Algorithm: String, Sendable, CaseIterable {
        case sha256
        case sha512

        public var hexLength: Int { self == .sha256 ? 64 : 128 }
    }

    public let algorithm: Algorithm
    public let hex: String

    public var description: String { "\(algorithm.rawValue):\(hex)" }
    public var string: String { description }

    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.string < rhs.string }

    public enum ParseError: Error, Equatable, Sendable {
        /// Not of the `alg:hex` form at all, or the hex part has the wrong shape.
        case invalid(String)
        /// Well formed but the algorithm is not one Berth supports.
        case unsupported(String)
    }

    /// Parses and validates a digest string. Hostile input (huge strings, odd characters,
    /// upper-case hex, path separators) is rejected without allocation beyond the input.
    public init(parsing raw: some StringProtocol) throws(ParseError) {
        let s = String(raw)
        guard s.utf8.count <= 256, let colon = s.utf8.firstIndex(of: UInt8(ascii: ":")) else {
            throw .invalid(String(s.prefix(80)))
        }
        let algPart = String(s[s.startIndex..<colon])
        let hexPart = String(s[s.index(after: colon)...])
        // algorithm grammar: [a-z0-9]+ ([+._-] [a-z0-9]+)*
        guard !algPart.isEmpty, algPart.utf8.allSatisfy({ Digest.isAlgorithmByte($0) }),
              !hexPart.isEmpty, hexPart.utf8.allSatisfy({ Digest.isEncodedByte($0) })
        else { throw .invalid(String(s.prefix(80))) }
        guard let algorithm = Algorithm(rawValue: algPart) else { throw .unsupported(algPart) }
        guard hexPart.utf8.count == algorithm.hexLength,
              hexPart.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) })
        else { throw .invalid(String(s.prefix(80))) }
        self.algorithm = algorithm
        self.hex = hexPart
    }

    public init(algorithm: Algorithm, hex: String) {
        self.algorithm = algorithm
        self.hex = hex
    }

    /// Digest of a complete in-memory buffer (manifests only; blobs are hashed while streaming).
    public static func compute<D: DataProtocol>(_ data: D, algorithm: Algorithm = .sha256) -> Digest {
        var hasher = DigestHasher(algorithm)
        hasher.update(data)
        return hasher.finalize()
    }

    private static func isAlgorithmByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b == 0x2b || b == 0x2e || b == 0x5f || b == 0x2d
    }

    private static func isEncodedByte(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39)
            || b == 0x3d || b == 0x5f || b == 0x2d
    }
}

/// Incremental hasher for either supported algorithm.
public struct DigestHasher: Sendable {
    private enum State: Sendable {
        case sha256(SHA256)
        case sha512(SHA512)
    }

    private var state: State
    public let algorithm: Digest.Algorithm

    public init(_ algorithm: Digest.Algorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .sha256: state = .sha256(SHA256())
        case .sha512: state = .sha512(SHA512())
        }
    }

    public mutating func update<D: DataProtocol>(_ data: D) {
        switch state {
        case .sha256(var h):
            h.update(data: data)
            state = .sha256(h)
        case .sha512(var h):
            h.update(data: data)
            state = .sha512(h)
        }
    }

    public mutating func update(bufferPointer: UnsafeRawBufferPointer) {
        switch state {
        case .sha256(var h):
            h.update(bufferPointer: bufferPointer)
            state = .sha256(h)
        case .sha512(var h):
            h.update(bufferPointer: bufferPointer)
            state = .sha512(h)
        }
    }

    public func finalize() -> Digest {
        switch state {
        case .sha256(let h): Digest(algorithm: .sha256, hex: Hex.encode(h.finalize()))
        case .sha512(let h): Digest(algorithm: .sha512, hex: Hex.encode(h.finalize()))
        }
    }
}
