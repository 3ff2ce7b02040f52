import Crypto

/// The SHA-256 of bytes in memory, as lowercase hex (files that import OCIModel cannot name
/// swift-crypto's types: both have a `Digest`).
func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
    SHA256.hash(data: bytes).hexString
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    bytes.withUnsafeBytes { sha256Hex($0) }
}
