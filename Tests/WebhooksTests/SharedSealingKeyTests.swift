import Access
import Foundation
import SQLiteStore
import Testing
@testable import Webhooks

/// The webhook sealing key is shared through the metadata store.
@Suite struct SharedSealingKeyTests {
    @Test func aSecretSealedByOneNodeOpensOnTheOtherAndOldKeysAreImported() async throws {
        let dir = NSTemporaryDirectory() + "berth-hookkeys-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // before the key was shared: a key file of its own, and a secret sealed with it
        let legacyStore = try SQLiteMetadataStore(path: dir + "/legacy.sqlite")
        let legacy = try WebhookService(store: legacyStore, events: legacyStore, keyDirectory: dir + "/a")
        let sealedBefore = try legacy.seal("before")

        let kek = KeyEncryptionKey.generate()
        func node(_ keys: String) async throws -> WebhookService {
            let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
            let key = try await WebhookService.sharedSealingKey(SharedKeyMaterial(store: store, kek: kek), importing: dir + "/" + keys)
            return WebhookService(store: store, events: store, sealingKey: key)
        }
        let a = try await node("a")   // first start: imports its key file
        let b = try await node("b")   // another node, no key file
        #expect(try a.unseal(sealedBefore) == "before")
        #expect(try b.unseal(sealedBefore) == "before")
        #expect(try b.unseal(try a.seal("shared")) == "shared")
    }
}
