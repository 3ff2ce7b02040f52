import Crypto
import Foundation
import RegistryStore
import SQLiteStore
import Testing
@testable import Access

/// Key material sealed under the key-encryption key and shared through the metadata store.
@Suite struct SharedKeyMaterialTests {
    func tempDir() throws -> String {
        let dir = NSTemporaryDirectory() + "berth-keys-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func sealedMaterialOpensOnlyWithItsKeyAndName() async throws {
        let dir = try tempDir()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        let shared = SharedKeyMaterial(store: store, kek: .generate())
        #expect(try await shared.store("a", Data("secret".utf8), expectedVersion: 0))
        let raw = try #require(try await store.keyMaterial(named: "a"))
        #expect(raw.blob.range(of: Data("secret".utf8)) == nil)   // the store never holds it in the clear
        #expect(try await shared.load("a")?.plaintext == Data("secret".utf8))
        // another key-encryption key: a clear error naming the key-file, no crash
        let other = SharedKeyMaterial(store: store, kek: .generate())
        let error = await #expect(throws: KeyMaterialError.self) { try await other.load("a") }
        #expect(error?.message.contains("key-file") == true)
        // a blob moved under another name does not open either
        #expect(try await store.storeKeyMaterial(named: "b", raw.blob, expectedVersion: 0))
        await #expect(throws: KeyMaterialError.self) { try await shared.load("b") }
        // an older blob put back under a newer version does not open
        #expect(try await shared.store("a", Data("newer".utf8), expectedVersion: 1))
        #expect(try await store.storeKeyMaterial(named: "a", raw.blob, expectedVersion: 2))
        await #expect(throws: KeyMaterialError.self) { try await shared.load("a") }
        // material sealed before the version was bound (format 1: the name only) still opens
        let kek = KeyEncryptionKey.generate()
        let old = try AES.GCM.seal(Data("old".utf8), using: kek.key, authenticating: Data("berth-key-material:c".utf8)).combined!
        #expect(try await store.storeKeyMaterial(named: "c", Data([1]) + old, expectedVersion: 0))
        #expect(try await SharedKeyMaterial(store: store, kek: kek).load("c")?.plaintext == Data("old".utf8))
    }

    @Test func keyFilesAreReadRawOrBase64AndOnlyWhenTheOwnersAlone() throws {
        let dir = try tempDir()
        let bytes = Data((0..<32).map { UInt8($0) })
        let fm = FileManager.default
        fm.createFile(atPath: dir + "/raw", contents: bytes, attributes: [.posixPermissions: 0o600])
        fm.createFile(atPath: dir + "/b64", contents: Data((bytes.base64EncodedString() + "\n").utf8), attributes: [.posixPermissions: 0o600])
        let material = Data("m".utf8)
        let sealed = try SharedKeyMaterial(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), kek: try KeyEncryptionKey.read(path: dir + "/raw"))
            .seal("n", material, version: 1)
        let opener = SharedKeyMaterial(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), kek: try KeyEncryptionKey.read(path: dir + "/b64"))
        #expect(try opener.open("n", sealed, version: 1) == material)   // the same key, read from either form
        fm.createFile(atPath: dir + "/open", contents: bytes, attributes: [.posixPermissions: 0o644])
        #expect(throws: KeyMaterialError.self) { try KeyEncryptionKey.read(path: dir + "/open") }
        fm.createFile(atPath: dir + "/short", contents: Data("c2hvcnQ=".utf8), attributes: [.posixPermissions: 0o600])
        #expect(throws: KeyMaterialError.self) { try KeyEncryptionKey.read(path: dir + "/short") }
        #expect(throws: KeyMaterialError.self) { try KeyEncryptionKey.read(path: dir + "/absent") }
        // a link is followed (Kubernetes mounts secrets as links): the file it names is what is checked
        try fm.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir + "/b64")
        #expect(try opener.open("n", SharedKeyMaterial(store: opener.store, kek: try KeyEncryptionKey.read(path: dir + "/link")).seal("n", material, version: 1), version: 1) == material)
        try fm.createSymbolicLink(atPath: dir + "/open-link", withDestinationPath: dir + "/open")
        #expect { try KeyEncryptionKey.read(path: dir + "/open-link") } throws: { "\($0)".contains("mode 644") }
        // not a regular file; 32 characters of typed text
        try fm.createDirectory(atPath: dir + "/a-directory", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        #expect { try KeyEncryptionKey.read(path: dir + "/a-directory") } throws: { "\($0)".contains("not a regular file") }
        fm.createFile(atPath: dir + "/typed", contents: Data(String(repeating: "correct horse ", count: 3).prefix(32).utf8), attributes: [.posixPermissions: 0o600])
        #expect { try KeyEncryptionKey.read(path: dir + "/typed") } throws: { "\($0)".contains("32 characters of text") }
        // the embedded default: created once (owner only), then the same key
        let first = try KeyEncryptionKey.readOrCreate(path: dir + "/keys/k")
        #expect((try fm.attributesOfItem(atPath: dir + "/keys/k")[.posixPermissions] as? Int) == 0o600)
        let again = try KeyEncryptionKey.readOrCreate(path: dir + "/keys/k")
        #expect(try fm.contentsOfDirectory(atPath: dir + "/keys") == ["k"], "no temporary file is left behind")
        #expect(try SharedKeyMaterial(store: opener.store, kek: again).open("n", SharedKeyMaterial(store: opener.store, kek: first).seal("n", material, version: 1), version: 1) == material)
    }

    /// Processes creating the default key file at once all end up with the one key that was written.
    @Test func concurrentCreatorsOfTheDefaultKeyFileAgree() async throws {
        let dir = try tempDir()
        let keys = try await withThrowingTaskGroup(of: Data.self) { group in
            for _ in 0..<8 {
                group.addTask { try KeyEncryptionKey.readOrCreate(path: dir + "/keys/k").key.withUnsafeBytes { Data($0) } }
            }
            return try await group.reduce(into: [Data]()) { $0.append($1) }
        }
        #expect(keys.count == 8 && Set(keys).count == 1)
    }

    /// Two nodes over one database file, each with its own key directory and the same key file.
    @Test func aTokenIssuedByOneNodeVerifiesOnTheOther() async throws {
        let dir = try tempDir()
        let kek = KeyEncryptionKey.generate()
        let storeA = try SQLiteMetadataStore(path: dir + "/m.sqlite"), storeB = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        async let first = AccessControl.open(store: storeA, keyDirectory: dir + "/a", keyEncryptionKey: kek)
        async let second = AccessControl.open(store: storeB, keyDirectory: dir + "/b", keyEncryptionKey: kek)
        let (a, b) = try await (first, second)
        #expect(a.tokens.currentKeyID == b.tokens.currentKeyID)   // started together, they agreed on one key
        let token = try await a.tokens.issue(subject: "alice", subjectID: nil, audience: "reg", type: "access", generation: 0, access: nil).token
        #expect(await b.tokens.verify(token, audience: "reg", type: "access")?.sub.value == "alice")
        // a rotation on one node: its new tokens verify on the other, the old ones still do
        let kid = try await a.tokens.rotate()
        let rotated = try await a.tokens.issue(subject: "bob", subjectID: nil, audience: "reg", type: "access", generation: 0, access: nil).token
        #expect(await b.tokens.verify(rotated, audience: "reg", type: "access")?.sub.value == "bob")
        #expect(await b.tokens.verify(token, audience: "reg", type: "access")?.sub.value == "alice")
        #expect(b.tokens.currentKeyID == kid)
        // a node with another key-encryption key cannot use the keys: it refuses to start
        await #expect(throws: KeyMaterialError.self) {
            _ = try await AccessControl.open(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), keyDirectory: dir + "/c",
                                             keyEncryptionKey: .generate())
        }
    }

    /// An installation from before the keys were shared: its key directory is imported at first start.
    @Test func keysOfAnOlderInstallationAreImported() async throws {
        let dir = try tempDir()
        try FileManager.default.createDirectory(atPath: dir + "/keys", withIntermediateDirectories: true)
        let key = P256.Signing.PrivateKey()
        try key.pemRepresentation.write(toFile: dir + "/keys/oldkid.pem", atomically: true, encoding: .utf8)
        try Data(#"{"current":"oldkid","retired":[]}"#.utf8).write(to: URL(fileURLWithPath: dir + "/keys/keys.json"))
        try "not a signing key".write(toFile: dir + "/keys/tls.pem", atomically: true, encoding: .utf8)
        let kek = KeyEncryptionKey.generate()
        let a = try await AccessControl.open(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), keyDirectory: dir + "/keys", keyEncryptionKey: kek)
        #expect(a.tokens.currentKeyID == "oldkid")
        // imported, the private key is no longer kept in the clear beside the sealed copy
        #expect(!FileManager.default.fileExists(atPath: dir + "/keys/oldkid.pem"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/keys/keys.json"))
        #expect(FileManager.default.fileExists(atPath: dir + "/keys/tls.pem"), "a file keys.json did not name is left alone")
        let token = try await a.tokens.issue(subject: "alice", subjectID: nil, audience: "reg", type: "access", generation: 0, access: nil).token
        // a node without the files verifies it: the imported key is the shared one
        let b = try await AccessControl.open(store: try SQLiteMetadataStore(path: dir + "/m.sqlite"), keyDirectory: dir + "/other", keyEncryptionKey: kek)
        #expect(await b.tokens.verify(token, audience: "reg", type: "access")?.sub.value == "alice")
    }
}
