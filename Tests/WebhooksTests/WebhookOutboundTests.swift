import SQLiteStore
import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import RegistryStore
import Testing
@testable import Webhooks

/// Where webhooks may go (SSRF), and what they reveal of their custom headers.
@Suite(.serialized) struct WebhookOutboundTests {
    @Test(arguments: ["http://127.0.0.1/hook", "http://localhost:8080/", "http://169.254.169.254/latest/meta-data/",
                      "http://2130706433/", "http://0.0.0.0/", "http://10.0.0.8/", "http://192.168.1.1/", "http://100.64.0.1/",
                      "http://[::1]/", "http://[::ffff:169.254.169.254]/", "http://[fd00::1]/"])
    func nonPublicTargetsAreRefusedWhenCreatedOrUpdated(uri: String) async throws {
        let (service, store) = try setup(policy: OutboundPolicy())
        await #expect {
            try await service.create(name: "meta", uri: uri, actions: ["push"], scope: nil, headers: [:], enabled: true)
        } throws: { error in
            guard case WebhookError.invalid(let message) = error else { return false }
            return message.hasPrefix("uri refused:")
        }
        #expect(try await store.webhooks().isEmpty)
        _ = try await service.create(name: "ok", uri: "https://93.184.216.34/hook", actions: ["push"], scope: nil, headers: [:],
                                     enabled: true)
        await #expect(throws: WebhookError.self) {
            try await service.update(name: "ok", uri: uri, actions: nil, scope: nil, headers: nil, enabled: nil)
        }
        #expect(try await store.webhook(named: "ok")?.uri == "https://93.184.216.34/hook")
    }

    @Test func theTargetIsCheckedAgainAtDeliveryTime() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
            let allowed = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys", policy: loopbackAllowed)
            _ = try await allowed.create(name: "p", uri: "http://127.0.0.1:\(port)/hook", actions: ["push"], scope: nil,
                                         headers: [:], enabled: true)
            // The same webhook, sent by a registry whose policy no longer allows loopback.
            let strict = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys")
            let delivery = try await strict.ping(name: "p")
            #expect(delivery.statusCode == nil && delivery.error?.hasPrefix("refused:") == true)
            #expect(receiver.hits.withLockedValue { $0 }.isEmpty)
        }
    }

    @Test func redirectsAreNotFollowed() async throws {
        let hits = NIOLockedValueBox<[String]>([])
        let router = Router()
        router.post("/hook") { _, _ -> Response in
            hits.withLockedValue { $0.append("/hook") }
            return Response(status: .found, headers: [.location: "/elsewhere"])
        }
        router.post("/elsewhere") { _, _ -> Response in
            hits.withLockedValue { $0.append("/elsewhere") }
            return Response(status: .ok)
        }
        router.get("/elsewhere") { _, _ -> Response in
            hits.withLockedValue { $0.append("/elsewhere") }
            return Response(status: .ok)
        }
        var logger = Logger(label: "receiver")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let (service, _) = try setup()
            _ = try await service.create(name: "r", uri: "http://127.0.0.1:\(port)/hook", actions: ["push"], scope: nil,
                                         headers: [:], enabled: true)
            let delivery = try await service.ping(name: "r")
            #expect(delivery.statusCode == 302 && delivery.error == "HTTP 302")
            #expect(hits.withLockedValue { $0 } == ["/hook"])
        }
    }

    @Test func customHeadersAreSealedAtRestRedactedWhenShownAndSentInTheClear() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
            let service = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys", policy: loopbackAllowed)
            let value = "Bearer s3cr3t-webhook-credential"
            let (created, _) = try await service.create(name: "h", uri: "http://127.0.0.1:\(port)/hook", actions: ["push"],
                                                        scope: nil, headers: ["X-Team": value], enabled: true)
            #expect(created.headers == ["X-Team": "***"])
            #expect(try await service.get("h").headers == ["X-Team": "***"])
            #expect(try await service.list().map(\.headers) == [["X-Team": "***"]])
            let stored = try #require(try await store.webhook(named: "h")?.headers["X-Team"])
            #expect(!stored.contains("s3cr3t"))
            for file in ["/m.sqlite", "/m.sqlite-wal"] {
                let bytes = FileManager.default.contents(atPath: dir + file) ?? Data()
                #expect(bytes.range(of: Data("s3cr3t".utf8)) == nil)
            }
            _ = try await service.ping(name: "h")
            #expect(receiver.hits.withLockedValue { $0 }.map(\.custom) == [value])
            // Replaced headers are sealed too.
            let updated = try await service.update(name: "h", uri: nil, actions: nil, scope: nil, headers: ["X-Team": "other-s3cr3t"],
                                                   enabled: nil)
            #expect(updated.headers == ["X-Team": "***"])
            #expect(try await store.webhook(named: "h")?.headers["X-Team"]?.contains("s3cr3t") == false)
            _ = try await service.ping(name: "h")
            #expect(receiver.hits.withLockedValue { $0 }.map(\.custom) == [value, "other-s3cr3t"])
        }
    }

    @Test func theSealingKeyIsTheOwnersAlone() throws {
        let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        _ = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys")
        let attributes = { (path: String) in (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
        #expect(try attributes(dir + "/keys") == 0o700)
        #expect(try attributes(dir + "/keys/webhook-secrets.key") == 0o600)
    }
}
