#if canImport(CCryptoBoringSSL)
import CCryptoBoringSSL
#endif
import Foundation
import OCIModel

/// A SHA-256 whose state between blocks can be saved and restored, so an upload's digest can be
/// continued on another node from the state after its last committed part instead of reading the
/// parts back. swift-crypto's `SHA256` cannot export its state; on Linux it is BoringSSL's, whose
/// `SHA256_CTX` is a plain C struct, reached here through swift-crypto's vendored module (a target
/// that depends on the `Crypto` product may import it; no flags needed). Where that module is not
/// built (Apple platforms, where swift-crypto uses CryptoKit) `isAvailable` is false and uploads
/// fall back to reading their bytes back.
///
/// A saved state (`export`) covers an exact number of bytes; `init(restoring:covering:)` refuses a
/// state that is malformed or covers another number, so a state that does not match the upload is
/// never trusted.
struct ResumableSHA256: Sendable {
    #if canImport(CCryptoBoringSSL)
    private var ctx = SHA256_CTX()
    static let isAvailable = true
    #else
    static let isAvailable = false
    #endif

    /// Bytes hashed so far.
    private(set) var count: Int64 = 0

    /// What a saved state may not be.
    enum StateError: Error, Equatable {
        case unavailable
        case malformed
        case coversOther(Int64)
    }

    init() throws(StateError) {
        #if canImport(CCryptoBoringSSL)
        CCryptoBoringSSL_SHA256_Init(&ctx)
        #else
        throw .unavailable
        #endif
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        #if canImport(CCryptoBoringSSL)
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        CCryptoBoringSSL_SHA256_Update(&ctx, base, bytes.count)
        count += Int64(bytes.count)
        #endif
    }

    mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest of everything hashed; the hasher is left as it was.
    func finalize() -> Digest {
        #if canImport(CCryptoBoringSSL)
        var copy = ctx
        var out = [UInt8](repeating: 0, count: 32)
        _ = out.withUnsafeMutableBufferPointer { CCryptoBoringSSL_SHA256_Final($0.baseAddress!, &copy) }
        return Digest(algorithm: .sha256, hex: Hex.encode(out))
        #else
        preconditionFailure("ResumableSHA256 is unavailable")
        #endif
    }

    /// Format 1: version (1), h[0..<8] (big-endian u32), count (big-endian u64), num (u8), then the
    /// `num` bytes of the unfinished block (num = count % 64).
    func export() -> [UInt8] {
        #if canImport(CCryptoBoringSSL)
        var out: [UInt8] = [1]
        withUnsafeBytes(of: ctx.h) { raw in
            for word in raw.bindMemory(to: UInt32.self) { out += withUnsafeBytes(of: word.bigEndian, Array.init) }
        }
        out += withUnsafeBytes(of: UInt64(count).bigEndian, Array.init)
        let num = Int(ctx.num)
        out.append(UInt8(num))
        withUnsafeBytes(of: ctx.data) { out += $0.prefix(num) }
        return out
        #else
        return []
        #endif
    }

    /// Restores a state `export` made, refused unless it is well formed and covers exactly `size` bytes.
    init(restoring saved: [UInt8], covering size: Int64) throws(StateError) {
        #if canImport(CCryptoBoringSSL)
        guard saved.count >= 42, saved[0] == 1 else { throw .malformed }
        let num = Int(saved[41])
        guard num < 64, saved.count == 42 + num else { throw .malformed }
        var total: UInt64 = 0
        for byte in saved[33..<41] { total = total << 8 | UInt64(byte) }
        guard total <= UInt64(Int64.max) / 8, Int(total % 64) == num else { throw .malformed }
        guard Int64(total) == size else { throw .coversOther(Int64(total)) }
        var words: [UInt32] = []
        for i in 0..<8 {
            words.append(saved[1 + 4 * i..<5 + 4 * i].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        }
        var c = SHA256_CTX()
        CCryptoBoringSSL_SHA256_Init(&c)
        withUnsafeMutableBytes(of: &c.h) { raw in
            let h = raw.bindMemory(to: UInt32.self)
            for i in 0..<8 { h[i] = words[i] }
        }
        let bits = total << 3
        c.Nl = UInt32(truncatingIfNeeded: bits)
        c.Nh = UInt32(truncatingIfNeeded: bits >> 32)
        c.num = UInt32(num)
        withUnsafeMutableBytes(of: &c.data) { raw in
            for i in 0..<num { raw[i] = saved[42 + i] }
        }
        ctx = c
        count = Int64(total)
        #else
        throw .unavailable
        #endif
    }
}
