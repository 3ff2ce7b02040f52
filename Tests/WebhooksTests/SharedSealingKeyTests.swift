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
        #expect(!FileManager.default.fileExists(atPath: dir + "/a/webhook-secrets.key"), "the clear copy is removed once imported")
        let b = try await node("b")   // another node, no key file
        #expect(try a.unseal(sealedBefore) == "before")
        #expect(try b.unseal(sealedBefore) == "before")
        #expect(try b.unseal(try a.seal("shared")) == "shared")
    }

    /// A sealed secret or header value opens only for the webhook and field it was sealed for, so
    /// one copied in the database onto another webhook is refused; values sealed before still open.
    @Test func sealedValuesAreBoundToTheirWebhookAndField() throws {
        let store = try SQLiteMetadataStore(path: NSTemporaryDirectory() + "berth-hookbind-" + UUID().uuidString + ".sqlite")
        let service = WebhookService(store: store, events: store, sealingKey: .init(size: .bits256))
        let sealed = try service.seal("s3cret", webhook: "a", field: "secret")
        #expect(try service.unseal(sealed, webhook: "a", field: "secret") == "s3cret")
        #expect(throws: (any Error).self) { try service.unseal(sealed, webhook: "b", field: "secret") }
        #expect(throws: (any Error).self) { try service.unseal(sealed, webhook: "a", field: "header:x-token") }
        #expect(try service.unseal(try service.seal("older"), webhook: "a", field: "secret") == "older")
        let headers = try service.sealHeaders(["X-Token": "t0k"], webhook: "a")
        #expect(headers["X-Token"]?.hasPrefix("sealed:v2:") == true && headers["X-Token"]?.contains("t0k") == false)
        #expect(try service.unsealHeaders(headers, webhook: "a") == ["X-Token": "t0k"])
        #expect(throws: (any Error).self) { try service.unsealHeaders(headers, webhook: "b") }
        let old = ["X-Token": "sealed:v1:" + (try service.seal("t0k")).base64EncodedString(), "X-Plain": "p"]
        #expect(try service.unsealHeaders(old, webhook: "b") == ["X-Token": "t0k", "X-Plain": "p"])
    }
}
