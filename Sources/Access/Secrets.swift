import Crypto
import Foundation
import HummingbirdBcrypt
import OCIModel

/// Generation, hashing and constant-time checking of secrets. Generated secrets (token and admin
/// passwords) carry 256 bits of entropy and are stored as SHA-256; passwords a person may have
/// chosen (identities) are stored with bcrypt.
public enum Secrets {
    public static func generate() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        return Data(bytes).base64URLEncodedString()
    }

    public static func hashGenerated(_ secret: String) -> String {
        Digest.compute(Data(secret.utf8)).string
    }

    public static func hashPassword(_ password: String, cost: UInt8 = 10) -> String {
        Bcrypt.hash(password, cost: cost)
    }

    /// Checks a secret against a stored hash of either kind, in constant time for SHA-256.
    public static func verify(_ secret: String, hash: String) -> Bool {
        if hash.hasPrefix("sha256:") {
            return constantTimeEquals(Array(hashGenerated(secret).utf8), Array(hash.utf8))
        }
        return Bcrypt.verify(secret, hash: hash)
    }

    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
