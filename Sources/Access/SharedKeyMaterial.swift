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

    /// Reads a key file: the base64 of 32 bytes on one line, or the 32 raw bytes. Only its owner
    /// may read it (see `SecretFile`). 32 bytes of printable text are refused: that is a typed
    /// passphrase, not 32 random bytes. The error never shows the file's contents.
    public static func read(path: String) throws -> KeyEncryptionKey {
        let contents = try SecretFile.read(path, what: "key-file", maxBytes: 4096)
        if contents.count == 32 {
            guard !contents.allSatisfy({ (0x20...0x7e).contains($0) }) else {
                throw KeyMaterialError("key-file \(path) holds 32 characters of text, not a key: write 32 random bytes base64-encoded (e.g. `openssl rand -base64 32`)")
            }
            return try KeyEncryptionKey(bytes: contents)
        }
        let text = String(decoding: contents, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Data(base64Encoded: text), bytes.count == 32 else {
            throw KeyMaterialError("key-file \(path) must hold a 32-byte key, base64 or raw (e.g. `openssl rand -base64 32`)")
        }
        return try KeyEncryptionKey(bytes: bytes)
    }

    /// Reads `path`, first creating it (mode 0600, its directory 0700) with a new random key when it
    /// does not exist: the default of the embedded store, whose data directory is the one node's.
    /// The new file is written and synced under a temporary name and then linked into place, so no
    /// process ever reads a half-written key file, and of two processes creating it at once one
    /// wins and both read its key.
    public static func readOrCreate(path: String) throws -> KeyEncryptionKey {
        let fm = FileManager.default
        if !fm.fileExists(atPath: path) {
            let directory = (path as NSString).deletingLastPathComponent
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let temporary = path + ".new-" + UUID().uuidString
            let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                throw KeyMaterialError("cannot create key-file \(path): \(String(cString: strerror(errno)))")
            }
            defer { unlink(temporary) }
            let contents = newFileContents()
            let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd)
            close(fd)
            guard written == contents.count, synced == 0 else { throw KeyMaterialError("cannot write key-file \(path)") }
            if link(temporary, path) != 0, errno != EEXIST {
                throw KeyMaterialError("cannot create key-file \(path): \(String(cString: strerror(errno)))")
            }
            let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd >= 0 { _ = fsync(dfd); close(dfd) }
        }
        return try read(path: path)
    }
}

/// Key material kept in the metadata store, sealed (AES-GCM) under the key-encryption key, so every
/// node over one store uses the same keys while the database never holds them in the clear. Each
/// blob is bound to its name and to the version it is stored as: one cannot be passed off as another,
/// nor an older blob put back under a newer version.
public struct SharedKeyMaterial: Sendable {
    public let store: any KeyMaterialStore
    let kek: KeyEncryptionKey
    /// 1: bound to the name only (written before the version was bound; still opens);
    /// 2: bound to the name and the version.
    static let nameBound: UInt8 = 1
    static let versionBound: UInt8 = 2

    public init(store: any KeyMaterialStore, kek: KeyEncryptionKey) {
        self.store = store
        self.kek = kek
    }

    static func context(_ name: String, version: Int64?) -> Data {
        guard let version else { return Data("berth-key-material:\(name)".utf8) }
        return Data("berth-key-material:\(name.utf8.count):\(name):\(version)".utf8)
    }

    /// Seals `plaintext` to be stored under `name` as `version` (the store's version after the write).
    func seal(_ name: String, _ plaintext: Data, version: Int64) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: kek.key, authenticating: Self.context(name, version: version))
        guard let combined = box.combined else { throw KeyMaterialError("cannot seal key material \(name)") }
        return Data([Self.versionBound]) + combined
    }

    func open(_ name: String, _ blob: Data, version: Int64) throws -> Data {
        let context: Data
        switch blob.first {
        case Self.versionBound: context = Self.context(name, version: version)
        case Self.nameBound: context = Self.context(name, version: nil)
        default: throw KeyMaterialError("key material '\(name)' in the metadata store has an unknown format")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: blob.dropFirst())
            return try AES.GCM.open(box, using: kek.key, authenticating: context)
        } catch {
            throw KeyMaterialError("""
                key material '\(name)' in the metadata store does not open with this key-file: \
                every node of a registry needs the same key-file (or the stored material is damaged \
                or not the one stored under this name and version)
                """)
        }
    }

    /// The material stored under `name` and its version, opened, or nil.
    public func load(_ name: String) async throws -> (version: Int64, plaintext: Data)? {
        guard let stored = try await store.keyMaterial(named: name) else { return nil }
        return (stored.version, try open(name, stored.blob, version: stored.version))
    }

    /// Compare-and-swap of the sealed `plaintext` (see `KeyMaterialStore.storeKeyMaterial`).
    public func store(_ name: String, _ plaintext: Data, expectedVersion: Int64) async throws -> Bool {
        try await store.storeKeyMaterial(named: name, try seal(name, plaintext, version: expectedVersion + 1), expectedVersion: expectedVersion)
    }

    /// The names of the material stored under names beginning with `prefix`, in byte order.
    public func names(prefix: String) async throws -> [String] {
        try await store.keyMaterialNames(prefix: prefix)
    }

    /// Removes the material under `name` for good (a rotated key's old period).
    @discardableResult
    public func remove(_ name: String) async throws -> Bool {
        try await store.deleteKeyMaterial(named: name)
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
