import Crypto
import Foundation
import RegistryStore

/// A key material problem: a key file that cannot be used, or stored material that does not open.
public struct KeyMaterialError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The key-encryption key (KEK): 32 random bytes from the `key-file`, never stored in the database.
/// Every node of a registry uses the same one; it seals the key material the nodes share.
public struct KeyEncryptionKey: Sendable {
    let key: SymmetricKey

    /// The default key file's name in the key directory (`<data>/keys`) of the embedded store.
    public static let defaultFile = "key-encryption.key"

    /// Bytes of the key (32).
    public init(bytes: Data) throws {
        guard bytes.count == 32 else { throw KeyMaterialError("a key-encryption key is 32 bytes, not \(bytes.count)") }
        key = SymmetricKey(data: bytes)
    }

    public static func generate() -> KeyEncryptionKey {
        KeyEncryptionKey(key: SymmetricKey(size: .bits256))
    }

    private init(key: SymmetricKey) { self.key = key }

    /// The contents of a new key file: a new random key, base64, on one line.
    public static func newFileContents() -> Data {
        Data((SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString() + "\n").utf8)
    }

    /// Reads a key file: 32 raw bytes, or their base64 on one line. Only its owner may read it. The
    /// error never shows the file's contents.
    public static func read(path: String) throws -> KeyEncryptionKey {
        let fm = FileManager.default
        guard let attributes = try? fm.attributesOfItem(atPath: path), let contents = fm.contents(atPath: path) else {
            throw KeyMaterialError("cannot read key-file \(path)")
        }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw KeyMaterialError("key-file \(path) may be read by others (mode \(String(mode, radix: 8))): chmod 600 it")
        }
        if contents.count == 32 { return try KeyEncryptionKey(bytes: contents) }
        let text = String(decoding: contents.prefix(256), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard contents.count < 256, let bytes = Data(base64Encoded: text), bytes.count == 32 else {
            throw KeyMaterialError("key-file \(path) must hold a 32-byte key, raw or base64 (e.g. `openssl rand -base64 32`)")
        }
        return try KeyEncryptionKey(bytes: bytes)
    }

    /// Reads `path`, first creating it (mode 0600, its directory 0700) with a new random key when it
    /// does not exist: the default of the embedded store, whose data directory is the one node's.
    public static func readOrCreate(path: String) throws -> KeyEncryptionKey {
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) {
            let directory = (path as NSString).deletingLastPathComponent
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            // Created exclusively: of two processes creating it at once, one writes it and the other reads it.
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            if fd >= 0 {
                let contents = newFileContents()
                let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                let synced = fsync(fd)
                close(fd)
                guard written == contents.count, synced == 0 else {
                    try? fm.removeItem(atPath: path)
                    throw KeyMaterialError("cannot write key-file \(path)")
                }
            } else if errno != EEXIST {
                throw KeyMaterialError("cannot create key-file \(path): \(String(cString: strerror(errno)))")
            }
        }
        return try read(path: path)
    }
}

/// Key material kept in the metadata store, sealed (AES-GCM) under the key-encryption key, so every
/// node over one store uses the same keys while the database never holds them in the clear. Each
/// blob is bound to its name: one cannot be passed off as another.
public struct SharedKeyMaterial: Sendable {
    public let store: any KeyMaterialStore
    let kek: KeyEncryptionKey
    static let format: UInt8 = 1

    public init(store: any KeyMaterialStore, kek: KeyEncryptionKey) {
        self.store = store
        self.kek = kek
    }

    func seal(_ name: String, _ plaintext: Data) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: kek.key, authenticating: Data("berth-key-material:\(name)".utf8))
        guard let combined = box.combined else { throw KeyMaterialError("cannot seal key material \(name)") }
        return Data([Self.format]) + combined
    }

    func open(_ name: String, _ blob: Data) throws -> Data {
        guard blob.first == Self.format else {
            throw KeyMaterialError("key material '\(name)' in the metadata store has an unknown format")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: blob.dropFirst())
            return try AES.GCM.open(box, using: kek.key, authenticating: Data("berth-key-material:\(name)".utf8))
        } catch {
            throw KeyMaterialError("""
                key material '\(name)' in the metadata store does not open with this key-file: \
                every node of a registry needs the same key-file (or the stored material is damaged)
                """)
        }
    }

    /// The material stored under `name` and its version, opened, or nil.
    public func load(_ name: String) async throws -> (version: Int64, plaintext: Data)? {
        guard let stored = try await store.keyMaterial(named: name) else { return nil }
        return (stored.version, try open(name, stored.blob))
    }

    /// Compare-and-swap of the sealed `plaintext` (see `KeyMaterialStore.storeKeyMaterial`).
    public func store(_ name: String, _ plaintext: Data, expectedVersion: Int64) async throws -> Bool {
        try await store.storeKeyMaterial(named: name, try seal(name, plaintext), expectedVersion: expectedVersion)
    }

    /// The material under `name`; when there is none, the one `create` makes is stored first. Of
    /// several processes creating it at once, one stores its own and all answer that one.
    public func loadOrCreate(_ name: String, create: () throws -> Data) async throws -> (version: Int64, plaintext: Data) {
        if let stored = try await load(name) { return stored }
        let fresh = try create()
        if try await store(name, fresh, expectedVersion: 0) { return (1, fresh) }
        guard let stored = try await load(name) else {
            throw KeyMaterialError("key material '\(name)' was neither stored nor found")
        }
        return stored
    }
}
