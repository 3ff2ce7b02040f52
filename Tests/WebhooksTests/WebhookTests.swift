@testable import SQLiteStore
import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryStore
import Testing
@testable import Webhooks

/// A receiver that records what it gets; its mode decides the answer.
final class Receiver: Sendable {
    enum Mode: Sendable { case ok, fail, slow }
    struct Hit: Sendable { let body: String; let signature: String?; let custom: String?; let event: String? }
    let mode = NIOLockedValueBox(Mode.ok)
    let hits = NIOLockedValueBox<[Hit]>([])

    func app() -> some ApplicationProtocol {
        let router = Router()
        router.post("/hook") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            switch self.mode.withLockedValue({ $0 }) {
            case .fail:
                return Response(status: .internalServerError)
            case .slow:
                try await Task.sleep(for: .seconds(6))
            case .ok:
                break
            }
            self.hits.withLockedValue {
                $0.append(Hit(body: String(buffer: body), signature: request.headers[HTTPField.Name(WebhookService.signatureHeader)!],
                              custom: request.headers[HTTPField.Name("X-Team")!], event: request.headers[HTTPField.Name("X-Berth-Event")!]))
            }
            return Response(status: .ok)
        }
        var logger = Logger(label: "receiver")
        logger.logLevel = .critical
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
    }
}

/// The test receivers listen on loopback, which only an explicit allow list opens.
let loopbackAllowed = try! OutboundPolicy(allow: "127.0.0.1/32")

/// Deliveries get a generous timeout by default, so a loaded machine cannot turn a slow answer into a
/// failed attempt and a duplicate; only the test of a slow receiver asks for a short one.
func setup(policy: OutboundPolicy = loopbackAllowed, deliveryTimeout: TimeAmount = .seconds(20)) throws -> (WebhookService, SQLiteMetadataStore) {
    let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
    let service = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys", policy: policy, maxAttempts: 3,
                                     deliveryTimeout: deliveryTimeout, backoffBase: 0.05)
    return (service, store)
}

func pushManifest(_ store: SQLiteMetadataStore, repo: String, tag: String?, seed: String, quarantine: Bool = false) async throws -> Digest {
    let bytes = Array("{\"seed\":\"\(seed)\"}".utf8)
    let record = ManifestRecord(digest: Digest.compute(bytes), mediaType: MediaType.ociManifest, size: Int64(bytes.count),
                                artifactType: nil, subject: nil, annotations: nil, createdAt: Date())
    try await EventOrigin.$current.withValue(EventOrigin(actor: "identity:ci", address: "10.0.0.1", requestID: "req-1",
                                                          host: "registry.test", method: "PUT", userAgent: "skopeo/1.9")) {
        var push = ManifestPush(repository: repo, record: record, bytes: bytes, tag: tag, blobs: [], children: [])
        push.record.quarantineState = quarantine ? .pending : nil
        _ = try await store.putManifest(push)
    }
    return record.digest
}

@Suite struct WebhookUnitTests {
    @Test func scopesAndActions() {
        #expect(WebhookService.matches(scope: "payments/*:*", repository: "payments/api", tag: "v1"))
        #expect(WebhookService.matches(scope: "payments/*:*", repository: "payments/api/deep", tag: nil))
        #expect(!WebhookService.matches(scope: "payments/*:*", repository: "billing/api", tag: "v1"))
        #expect(WebhookService.matches(scope: "app:release-*", repository: "app", tag: "release-1"))
        #expect(!WebhookService.matches(scope: "app:release-*", repository: "app", tag: "dev"))
        #expect(!WebhookService.matches(scope: "app:release-*", repository: "app", tag: nil))
        #expect(WebhookService.matches(scope: nil, repository: "x", tag: nil))
        #expect(WebhookService.glob("*", ""))
        #expect(WebhookService.glob("a*b*c", "axxbyyc"))
        #expect(!WebhookService.glob("a*b*c", "axxbyy"))
    }

    @Test func enablingADisabledWebhookStartsItAtTheEndOfTheLog() async throws {
        let (service, store) = try setup()
        _ = try await service.create(name: "h", uri: "http://127.0.0.1:1/hook", actions: ["push"], scope: nil, headers: [:], enabled: true)
        let start = try #require(try await store.eventConsumer(named: "webhook:h")?.cursor)
        _ = try await pushManifest(store, repo: "r", tag: "a", seed: "1")
        // enabling an enabled webhook does not skip what it has not delivered yet
        _ = try await service.update(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true)
        #expect(try await store.eventConsumer(named: "webhook:h")?.cursor == start)
        // its consumer tries the push (nobody listens on port 1) and records the failure
        _ = try await service.drain("h")
        let failed = try #require(try await store.eventConsumer(named: "webhook:h"))
        let latestAfterFailure = try await store.latestEventSequence()
        #expect(failed.attempts == 1 && failed.cursor < latestAfterFailure)
        _ = try await service.update(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: false)
        #expect(try await store.eventConsumer(named: "webhook:h")?.cursor == failed.cursor)
        #expect(try await service.get("h").pendingAttempts == 1)
        _ = try await pushManifest(store, repo: "r", tag: "b", seed: "2")
        // what happened while it was off is not replayed: its consumer (which delivers) moves to
        // the end of the log with its failure cleared
        _ = try await service.update(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true)
        #expect(try await service.get("h").pendingAttempts == 0)
        let restarted = try #require(try await store.eventConsumer(named: "webhook:h"))
        let latest = try await store.latestEventSequence()
        #expect(restarted.cursor == latest && restarted.attempts == 0 && restarted.nextAttemptAt == nil)
        await #expect(throws: WebhookError.self) {
            try await service.update(name: "absent", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true)
        }
    }

    @Test func signatureIsHMACSHA256OfTheBody() {
        // RFC 4231 test case 2
        let sig = WebhookService.signature(Data("what do ya want for nothing?".utf8), secret: "Jefe")
        #expect(sig == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func validation() async throws {
        let (service, _) = try setup()
        await #expect(throws: WebhookError.self) {
            try await service.create(name: "Bad Name", uri: "http://x", actions: ["push"], scope: nil, headers: [:], enabled: true)
        }
        await #expect(throws: WebhookError.self) {
            try await service.create(name: "ok", uri: "ftp://x", actions: ["push"], scope: nil, headers: [:], enabled: true)
        }
        await #expect(throws: WebhookError.self) {
            try await service.create(name: "ok", uri: "http://x", actions: ["explode"], scope: nil, headers: [:], enabled: true)
        }
        await #expect(throws: WebhookError.self) {
            try await service.create(name: "ok", uri: "http://x", actions: ["push"], scope: nil, headers: ["X": "a\r\nInjected: 1"], enabled: true)
        }
        _ = try await service.create(name: "ok", uri: "http://x", actions: ["push"], scope: nil, headers: [:], enabled: true)
        await #expect(throws: WebhookError.conflict("webhook ok exists")) {
            try await service.create(name: "ok", uri: "http://x", actions: ["push"], scope: nil, headers: [:], enabled: true)
        }
    }
}

@Suite(.serialized) struct WebhookDeliveryTests {
    @Test func deliversSignedPayloadsInOrderAndRetriesAcrossFailures() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            // Counts attempts exactly: a timed-out answer (CI under load) would be one more.
            let (service, store) = try setup(deliveryTimeout: .seconds(60))
            _ = try await pushManifest(store, repo: "payments/api", tag: "before", seed: "0")   // before the webhook: not sent
            let (_, secret) = try await service.create(name: "ci", uri: "http://127.0.0.1:\(port)/hook", actions: ["push", "delete"],
                                                       scope: "payments/*:*", headers: ["X-Team": "payments"], enabled: true)
            let d1 = try await pushManifest(store, repo: "payments/api", tag: "v1", seed: "1")
            _ = try await pushManifest(store, repo: "billing/api", tag: "v1", seed: "2")        // out of scope
            try await service.drain("ci")
            var hits = receiver.hits.withLockedValue { $0 }
            #expect(hits.count == 1)
            let first = try #require(hits.first)
            #expect(first.signature == WebhookService.signature(Data(first.body.utf8), secret: secret))
            #expect(first.custom == "payments" && first.event == "push")
            struct Payload: Decodable {
                struct Target: Decodable { let digest: String; let repository: String; let tag: String?; let mediaType: String; let size: Int64 }
                struct Req: Decodable { let id: String?; let host: String?; let method: String?; let useragent: String? }
                let id: String; let action: String; let target: Target; let request: Req; let timestamp: String
            }
            let p = try JSONDecoder().decode(Payload.self, from: Data(first.body.utf8))
            #expect(p.action == "push" && p.target.digest == d1.string && p.target.repository == "payments/api" && p.target.tag == "v1")
            #expect(p.target.mediaType == MediaType.ociManifest && p.request.host == "registry.test" && p.request.useragent == "skopeo/1.9")

            // the receiver fails: the event is retried with backoff, and the next one waits its turn
            receiver.mode.withLockedValue { $0 = .fail }
            _ = try await pushManifest(store, repo: "payments/api", tag: "v2", seed: "3")
            _ = try await pushManifest(store, repo: "payments/api", tag: "v3", seed: "4")
            try await service.drain("ci")
            #expect(try await store.eventConsumer(named: "webhook:ci")?.attempts == 1)
            // it comes back: both arrive, in order
            receiver.mode.withLockedValue { $0 = .ok }
            // as the runner would once the backoff has passed (a clock, not a sleep: load cannot make it early)
            try await service.drain("ci", now: Date().addingTimeInterval(3600))
            hits = receiver.hits.withLockedValue { $0 }
            let tags = try hits.map { try JSONDecoder().decode(Payload.self, from: Data($0.body.utf8)).target.tag }
            #expect(tags == ["v1", "v2", "v3"])
            let log = try await service.deliveries(name: "ci", limit: 10)
            #expect(log.contains { $0.statusCode == 500 && $0.attempt == 1 })
            #expect(log.filter { $0.statusCode == 200 }.count == 3)
            #expect(log.allSatisfy { $0.latencyMilliseconds >= 0 })
        }
    }

    @Test func aReceiverThatNeverRecoversIsSkippedAfterMaxAttemptsAndSlowOnesTimeOut() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let (service, store) = try setup(deliveryTimeout: .seconds(1))
            _ = try await service.create(name: "slow", uri: "http://127.0.0.1:\(port)/hook", actions: ["push"], scope: nil,
                                         headers: [:], enabled: true)
            receiver.mode.withLockedValue { $0 = .slow }
            _ = try await pushManifest(store, repo: "r", tag: "t", seed: "a")
            let started = ContinuousClock.now
            for _ in 0..<3 {
                try await service.drain("slow", now: Date().addingTimeInterval(3600))
            }
            // each attempt is cut at the 1 s timeout: uncut, three attempts take at least 18 s; the
            // bound leaves room for a loaded 2-core machine (the former 8 s against 3 x 3 s did not)
            #expect(ContinuousClock.now - started < .seconds(15))
            let log = try await service.deliveries(name: "slow", limit: 10)
            #expect(log.count == 3 && log.allSatisfy { $0.error != nil })
            let consumer = try #require(try await store.eventConsumer(named: "webhook:slow"))
            let latest = try await store.latestEventSequence()
            #expect(consumer.cursor == latest && consumer.attempts == 0)   // given up, moved on
        }
    }

    @Test func pingAndCursorSurvivesRestart() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            do {
                let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
                let service = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys", policy: loopbackAllowed)
                _ = try await service.create(name: "p", uri: "http://127.0.0.1:\(port)/hook", actions: ["push"], scope: nil,
                                             headers: [:], enabled: true)
                let ping = try await service.ping(name: "p")
                #expect(ping.statusCode == 200 && ping.action == "ping")
                _ = try await pushManifest(store, repo: "r", tag: "t1", seed: "x")   // not yet delivered when we "crash"
            }
            let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
            let service = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys", policy: loopbackAllowed)
            try await service.drain("p")
            let events = receiver.hits.withLockedValue { $0.map(\.event) }
            #expect(events == ["ping", "push"])
        }
    }

    @Test func quarantineEventsReachQuarantineWebhooks() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let (service, store) = try setup()
            _ = try await service.create(name: "gate", uri: "http://127.0.0.1:\(port)/hook", actions: ["quarantine"], scope: nil,
                                         headers: [:], enabled: true)
            let digest = try await pushManifest(store, repo: "payments/api", tag: "v1", seed: "q", quarantine: true)
            _ = try await store.applyQuarantine(QuarantineUpdate(repository: "payments/api", digest: digest, state: .passed,
                                                                 reason: "scan clean", followers: []))
            try await service.drain("gate")
            let hits = receiver.hits.withLockedValue { $0 }
            #expect(hits.map(\.event) == ["quarantine", "quarantine"])
            #expect(hits.allSatisfy { $0.body.contains(digest.string) })
        }
    }

    /// A build task's runs reach a webhook subscribed to `task.run.*` actions: each status change
    /// it asked for, in order, with the task and the run's id; the ones it did not ask for are not sent.
    @Test func taskRunEventsReachTaskRunWebhooks() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let (service, store) = try setup()
            _ = try await service.create(name: "builds", uri: "http://127.0.0.1:\(port)/hook",
                                         actions: ["task.run.queued", "task.run.started", "task.run.failed"], scope: nil,
                                         headers: [:], enabled: true)
            #expect(try await store.createTask(TaskRecord(name: "app-ci", taskFile: "", context: nil, schedule: nil, values: [:],
                                                          timeoutSeconds: 600, repositories: [], createdBy: "identity:owner",
                                                          createdAt: Date(), updatedAt: Date())))
            try await EventOrigin.$current.withValue(EventOrigin(actor: "identity:owner", address: "10.0.0.1")) {
                let first = try #require(try await store.queueTaskRun(task: "app-ci", trigger: "manual", uploadedContext: nil))
                var started = try #require(try await store.startNextTaskRun(node: "n1"))
                #expect(started.id == first.id)
                started.status = .failed
                started.finishedAt = Date()
                started.reason = "step test failed: exit code 1"
                #expect(try await store.updateTaskRun(started, expected: .running))
                var second = try #require(try await store.queueTaskRun(task: "app-ci", trigger: "manual", uploadedContext: nil))
                second.status = .cancelled                                        // not subscribed
                second.finishedAt = Date()
                #expect(try await store.updateTaskRun(second, expected: .queued))
            }
            try await service.drain("builds")
            let hits = receiver.hits.withLockedValue { $0 }
            #expect(hits.map(\.event) == ["task.run.queued", "task.run.started", "task.run.failed", "task.run.queued"])
            let payloads = try hits.map { try #require(try JSONSerialization.jsonObject(with: Data($0.body.utf8)) as? [String: Any]) }
            #expect(payloads.map { $0["action"] as? String } == hits.map(\.event))
            let runs = payloads.map { $0["run"] as? [String: String] }
            #expect(runs == [["task": "app-ci", "id": "cb1"], ["task": "app-ci", "id": "cb1"], ["task": "app-ci", "id": "cb1"],
                             ["task": "app-ci", "id": "cb2"]])
            #expect(hits.allSatisfy { $0.signature?.hasPrefix("sha256=") == true })
        }
    }

    @Test func scanEventsReachScanWebhooksWithCountsAndNewIDs() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let (service, store) = try setup()
            _ = try await service.create(name: "vulns", uri: "http://127.0.0.1:\(port)/hook", actions: ["scan"], scope: "payments/*:*",
                                         headers: [:], enabled: true)
            let digest = try await pushManifest(store, repo: "payments/api", tag: "v1", seed: "s")
            let other = try await pushManifest(store, repo: "billing/api", tag: "v1", seed: "b")
            let detail = ScanEventDetail(counts: ["Critical": 1, "High": 2, "Low": 4], new: ["CVE-2099-1", "CVE-2099-2"], tags: ["v1"])
            let json = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
            try await EventOrigin.$current.withValue(EventOrigin(actor: "scanner", address: "-")) {
                try await store.appendScanEvent(repository: "payments/api", digest: digest, tag: "v1", detail: json)
                try await store.appendScanEvent(repository: "billing/api", digest: other, tag: "v1", detail: json)   // out of scope
            }
            try await service.drain("vulns")
            let hits = receiver.hits.withLockedValue { $0 }
            #expect(hits.map(\.event) == ["scan"])
            let body = try #require(hits.first?.body)
            let payload = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
            #expect(payload["action"] as? String == "scan")
            let target = payload["target"] as? [String: Any]
            #expect(target?["repository"] as? String == "payments/api" && target?["digest"] as? String == digest.string && target?["tag"] as? String == "v1")
            let scan = payload["scan"] as? [String: Any]
            #expect(scan?["counts"] as? [String: Int] == ["Critical": 1, "High": 2, "Low": 4])
            #expect(scan?["new"] as? [String] == ["CVE-2099-1", "CVE-2099-2"] && scan?["tags"] as? [String] == ["v1"])
        }
    }

    /// A registry upgraded in place: the webhook's own cursor (kept in the webhooks table before
    /// webhooks ran on the event-consumer runner) is where its consumer starts: nothing sent
    /// again, nothing skipped. The database is made as such a registry left it (the schema before
    /// the cursor columns were dropped, no consumer record), then opened by this build.
    @Test func anUpgradedWebhookTakesOverItsOldCursor() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let path = dir + "/m.sqlite"
            do {
                let old = try SQLiteMetadataStore(path: path, migratingUpTo: "v8-event-consumers")
                let service = try WebhookService(store: old, events: old, keyDirectory: dir + "/keys", policy: loopbackAllowed)
                let sealed = try service.seal("old-secret")
                _ = try await pushManifest(old, repo: "r", tag: "sent-before", seed: "1")
                // What the old dispatcher left: its cursor past the first push, no consumer record.
                let sent = try await old.latestEventSequence()
                try await old.pool.write { db in
                    try db.execute(sql: """
                        INSERT INTO webhooks(name, uri, actions, scope, headers, sealed_secret, enabled, created_at, cursor, attempts)
                        VALUES ('old', ?, '["push"]', NULL, '{}', ?, 1, 0, ?, 2)
                        """, arguments: ["http://127.0.0.1:\(port)/hook", sealed, sent])
                }
                #expect(try await old.eventConsumer(named: "webhook:old") == nil)
            }
            let store = try SQLiteMetadataStore(path: path)
            #expect(try await store.eventConsumer(named: "webhook:old")?.cursor == (try store.latestEventSequence()))
            let service = try WebhookService(store: store, events: store, keyDirectory: dir + "/keys", policy: loopbackAllowed)
            _ = try await pushManifest(store, repo: "r", tag: "not-yet-sent", seed: "2")
            try await service.drain("old")
            let tags = receiver.hits.withLockedValue { $0.map { $0.body } }.map { $0.contains("not-yet-sent") }
            #expect(tags == [true])
            #expect(try await store.eventConsumer(named: "webhook:old")?.cursor == (try store.latestEventSequence()))
        }
    }

    /// An upgrade where a webhook's consumer exists already: it ends at the further of its own
    /// cursor and the webhook's legacy one, never behind what the webhook had sent.
    @Test func anUpgradeKeepsTheFurtherOfAnExistingConsumersCursorAndTheWebhooksOwn() async throws {
        let dir = NSTemporaryDirectory() + "berth-hooks-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/m.sqlite"
        var mark: Int64 = 0
        do {
            let old = try SQLiteMetadataStore(path: path, migratingUpTo: "v8-event-consumers")
            _ = try await pushManifest(old, repo: "r", tag: "one", seed: "1")
            let first = try await old.latestEventSequence()
            _ = try await pushManifest(old, repo: "r", tag: "two", seed: "2")
            let last = try await old.latestEventSequence()
            mark = last
            try await old.pool.write { db in
                for (name, legacy, consumer) in [("behind", last, first), ("ahead", first, last)] {
                    try db.execute(sql: """
                        INSERT INTO webhooks(name, uri, actions, scope, headers, sealed_secret, enabled, created_at, cursor, attempts)
                        VALUES (?, 'http://127.0.0.1:9/hook', '["push"]', NULL, '{}', 'x', 1, 0, ?, 0)
                        """, arguments: [name, legacy])
                    try db.execute(sql: "INSERT INTO event_consumers(name, cursor, updated_at) VALUES (?, ?, 0)",
                                   arguments: ["webhook:" + name, consumer])
                }
            }
        }
        let store = try SQLiteMetadataStore(path: path)
        #expect(try await store.eventConsumer(named: "webhook:behind")?.cursor == mark)
        #expect(try await store.eventConsumer(named: "webhook:ahead")?.cursor == mark)
    }

    /// Disabled, a webhook's consumer waits; enabled again it starts at the end of the log (what
    /// happened while it was off is not replayed); an operator's pause of its consumer holds it.
    @Test func disabledWebhooksWaitAndReEnabledOnesStartAtTheEnd() async throws {
        let receiver = Receiver()
        try await receiver.app().test(.live) { client in
            let port = try #require(client.port)
            let (service, store) = try setup()
            _ = try await service.create(name: "h", uri: "http://127.0.0.1:\(port)/hook", actions: ["push"], scope: nil,
                                         headers: [:], enabled: true)
            _ = try await pushManifest(store, repo: "r", tag: "one", seed: "1")
            try await service.drain("h")
            _ = try await service.update(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: false)
            _ = try await pushManifest(store, repo: "r", tag: "while-off", seed: "2")
            try await service.drain("h")
            #expect(receiver.hits.withLockedValue { $0.count } == 1)
            _ = try await service.update(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true)
            _ = try await store.setEventConsumerPaused(name: "webhook:h", paused: true)
            _ = try await pushManifest(store, repo: "r", tag: "three", seed: "3")
            try await service.drain("h")
            #expect(receiver.hits.withLockedValue { $0.count } == 1)
            #expect(try await service.backlog().first { $0.name == "h" }?.events ?? 0 > 0)
            _ = try await store.setEventConsumerPaused(name: "webhook:h", paused: false)
            try await service.drain("h")
            let bodies = receiver.hits.withLockedValue { $0.map(\.body) }
            #expect(bodies.count == 2 && bodies[1].contains("three") && !bodies.contains { $0.contains("while-off") })
            #expect(try await service.backlog().first { $0.name == "h" }?.events == 0)
            // deleted, its cursor goes too; a new webhook of that name starts afresh at the end
            try await service.delete(name: "h")
            #expect(try await store.eventConsumer(named: "webhook:h") == nil)
        }
    }
}
