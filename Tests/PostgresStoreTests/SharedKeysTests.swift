import Access
import Foundation
import PostgresStore
import Testing
@testable import Webhooks

/// Two nodes over one PostgreSQL database, each with its own key directory and the same key file.
@Suite struct PostgresSharedKeysTests {
    @Test func tokensAndWebhookSecretsOfOneNodeWorkOnTheOther() async throws {
        try await TestDatabase.withSchema { configuration in
            let first = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            let second = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            do {
                let dir = NSTemporaryDirectory() + "berth-pgkeys-" + UUID().uuidString
                let kek = KeyEncryptionKey.generate()
                async let openA = AccessControl.open(store: first, keyDirectory: dir + "/a", keyEncryptionKey: kek)
                async let openB = AccessControl.open(store: second, keyDirectory: dir + "/b", keyEncryptionKey: kek)
                let (a, b) = try await (openA, openB)
                let token = try await a.tokens.issue(subject: "alice", subjectID: nil, audience: "reg", type: "access",
                                                     generation: 0, access: nil).token
                #expect(await b.tokens.verify(token, audience: "reg", type: "access")?.sub.value == "alice")
                let keyA = try await WebhookService.sharedSealingKey(SharedKeyMaterial(store: first, kek: kek))
                let keyB = try await WebhookService.sharedSealingKey(SharedKeyMaterial(store: second, kek: kek))
                let hooksA = WebhookService(store: first, events: first, sealingKey: keyA)
                let hooksB = WebhookService(store: second, events: second, sealingKey: keyB)
                #expect(try hooksB.unseal(try hooksA.seal("secret")) == "secret")
                await first.close()
                await second.close()
            } catch {
                await first.close()
                await second.close()
                throw error
            }
        }
    }
}
