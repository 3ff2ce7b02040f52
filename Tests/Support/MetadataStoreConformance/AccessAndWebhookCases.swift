import Foundation
import OCIModel
import RegistryStore
import Testing

func hook(_ name: String, enabled: Bool = true) -> WebhookRecord {
    WebhookRecord(name: name, uri: "https://hooks.example/\(name)", actions: ["push", "delete"], scope: "team/*:*",
                  headers: ["X-Team": "a"], sealedSecret: Data([1, 2, 3, 4]), enabled: enabled,
                  createdAt: Date(timeIntervalSince1970: 1_700_000_000))
}

func delivery(_ webhook: String, event: Int64?, attempt: Int = 1, status: Int? = 200, error: String? = nil) -> WebhookDelivery {
    WebhookDelivery(webhook: webhook, eventSequence: event, action: "push", attempt: attempt, statusCode: status, latencyMilliseconds: 12.5,
                    error: error, timestamp: Date(timeIntervalSince1970: 1_700_000_100), payload: "{\"event\":\(event ?? 0)}")
}

func audit(_ action: String, at: Date, detail: String? = nil) -> AuditRecord {
    AuditRecord(timestamp: at, actor: "alice", address: "192.0.2.7", action: action, target: "r", outcome: "denied", detail: detail)
}

extension MetadataStoreConformance {
    static let accessCases: [Case] = [
        Case("access state: nil before the first write, then compare-and-swap on the version") { s in
            await #expect(try s.loadAccessState()?.version == nil)
            let one = Data("one".utf8), two = Data("two".utf8)
            #expect(try await s.storeAccessState(one, expectedVersion: 1, audit: nil) == false)
            await #expect(try s.loadAccessState()?.version == nil)
            #expect(try await s.storeAccessState(one, expectedVersion: 0, audit: audit("identity.create", at: past)))
            var state = try await #require(try s.loadAccessState())
            #expect(state.version == 1)
            #expect(state.document == one)
            // a writer that read nothing (version 0) lost: nothing changes, its audit record is not kept
            #expect(try await s.storeAccessState(two, expectedVersion: 0, audit: audit("lost.write", at: past)) == false)
            state = try await #require(try s.loadAccessState())
            #expect(state.version == 1)
            #expect(state.document == one)
            await #expect(try s.audit(since: past, limit: 10).map(\.action) == ["identity.create"])
            #expect(try await s.storeAccessState(two, expectedVersion: 1, audit: nil))
            state = try await #require(try s.loadAccessState())
            #expect(state.version == 2)
            #expect(state.document == two)
            // the access state is not part of the registry's event log
            await #expect(try s.latestEventSequence() == 0)
        },
        Case("accessStateVersion: nil before the first write, then the stored version (what another process compares)") { s in
            let none = try await s.accessStateVersion()
            #expect(none == nil)
            let first = try await s.storeAccessState(Data("one".utf8), expectedVersion: 0, audit: nil)
            let one = try await s.accessStateVersion()
            let second = try await s.storeAccessState(Data("two".utf8), expectedVersion: 1, audit: nil)
            let two = try await s.accessStateVersion()
            #expect(first && second && one == 1 && two == 2)
        },
        Case("appendAudit/audit: append order, since filter, limit, fields") { s in
            try await s.appendAudit([])
            await #expect(try s.audit(since: past, limit: 10) == [])
            let t0 = Date(timeIntervalSince1970: 1_700_000_000)
            try await s.appendAudit([audit("a", at: t0), audit("b", at: t0.addingTimeInterval(10), detail: "why")])
            try await s.appendAudit([audit("c", at: t0.addingTimeInterval(20))])
            let all = try await s.audit(since: past, limit: 10)
            #expect(all.map(\.action) == ["a", "b", "c"])
            #expect(zip(all, all.dropFirst()).allSatisfy { $0.sequence < $1.sequence })
            #expect(all[1].timestamp == t0.addingTimeInterval(10))
            #expect(all[1].detail == "why")
            #expect(all[0].detail == nil)
            #expect(all[1].actor == "alice")
            #expect(all[1].address == "192.0.2.7")
            #expect(all[1].target == "r")
            #expect(all[1].outcome == "denied")
            await #expect(try s.audit(since: t0.addingTimeInterval(10), limit: 10).map(\.action) == ["b", "c"])
            await #expect(try s.audit(since: past, limit: 2).map(\.action) == ["a", "b"])
            await #expect(try s.audit(since: future, limit: 10) == [])
        },
        Case("race: concurrent compare-and-swaps on one version: exactly one wins") { s in
            #expect(try await s.storeAccessState(Data("base".utf8), expectedVersion: 0, audit: nil))
            let won = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for i in 0..<8 {
                    group.addTask { (i, try await s.storeAccessState(Data("writer \(i)".utf8), expectedVersion: 1, audit: nil)) }
                }
                var won: [Int] = []
                for try await (i, ok) in group where ok { won.append(i) }
                return won
            }
            #expect(won.count == 1)
            let state = try await #require(try s.loadAccessState())
            #expect(state.version == 2)
            #expect(state.document == Data("writer \(won.first ?? -1)".utf8))
        },
    ]

    static let webhookCases: [Case] = [
        Case("createWebhook: its consumer starts at the end of the log, names are unique, listed by name") { s in
            await #expect(try s.latestEventSequence() == 0)
            try await store(s, push("r", "m", tag: "t"))
            let end = try await s.latestEventSequence()
            #expect(end > 0)
            #expect(try await s.createWebhook(hook("c"), consumer: "webhook:c"))
            await #expect(try s.webhook(named: "c") == hook("c"))
            await #expect(try s.eventConsumer(named: "webhook:c")?.cursor == end)
            var clash = hook("c")
            clash.uri = "https://elsewhere.example/"
            #expect(try await s.createWebhook(clash, consumer: "webhook:c") == false)
            await #expect(try s.webhook(named: "c")?.uri == "https://hooks.example/c")
            // a consumer left from before under that name moves to the end, failure and pause cleared:
            // a new webhook under a reused name does not start paused
            _ = try await s.registerEventConsumer(name: "webhook:a", start: .beginning)
            try await s.recordEventConsumerFailure(name: "webhook:a", error: "old", attempts: 4, nextAttemptAt: Date(timeIntervalSince1970: 1_800_000_000))
            #expect(try await s.setEventConsumerPaused(name: "webhook:a", paused: true))
            #expect(try await s.createWebhook(hook("a"), consumer: "webhook:a"))
            let a = try await #require(try s.eventConsumer(named: "webhook:a"))
            #expect(a.cursor == end && !a.paused && a.attempts == 0 && a.lastError == nil)
            #expect(try await s.createWebhook(hook("b", enabled: false), consumer: "webhook:b"))
            await #expect(try s.webhooks().map(\.name) == ["a", "b", "c"])
            await #expect(try s.webhooks().map(\.enabled) == [true, false, true])
            await #expect(try s.webhook(named: "unknown") == nil)
            await #expect(try s.latestEventSequence() == end) // webhooks are not registry events
        },
        Case("updateWebhook: changes what is given, leaves the rest; scope .some(nil) clears it; unknown is false") { s in
            #expect(try await s.updateWebhook(name: "unknown", uri: "https://x.example", actions: nil, scope: nil, headers: nil,
                                              enabled: nil, restartConsumerIfReenabled: nil) == false)
            await #expect(try s.webhook(named: "unknown") == nil)
            #expect(try await s.createWebhook(hook("h"), consumer: "webhook:h"))
            #expect(try await s.updateWebhook(name: "h", uri: "https://new.example/h", actions: ["delete"], scope: nil,
                                              headers: ["X-New": "1"], enabled: nil, restartConsumerIfReenabled: nil))
            var w = try await #require(try s.webhook(named: "h"))
            #expect(w.uri == "https://new.example/h")
            #expect(w.actions == ["delete"])
            #expect(w.scope == "team/*:*")
            #expect(w.headers == ["X-New": "1"])
            #expect(w.enabled)
            #expect(w.sealedSecret == Data([1, 2, 3, 4]))
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: .some("other/*:v*"), headers: nil, enabled: nil, restartConsumerIfReenabled: nil))
            await #expect(try s.webhook(named: "h")?.scope == "other/*:v*")
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: .some(nil), headers: nil, enabled: false, restartConsumerIfReenabled: nil))
            w = try await #require(try s.webhook(named: "h"))
            #expect(w.scope == nil)
            #expect(w.enabled == false)
            #expect(w.uri == "https://new.example/h")
        },
        Case("updateWebhook: restartConsumerIfReenabled moves the consumer to the end and clears its failure only when the store sees the call re-enable; otherwise the consumer stays") { s in
            #expect(try await s.createWebhook(hook("h"), consumer: "webhook:h"))
            let start = try await #require(try s.eventConsumer(named: "webhook:h")).cursor
            try await store(s, push("r", "one"))
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true, restartConsumerIfReenabled: nil))
            await #expect(try s.eventConsumer(named: "webhook:h")?.cursor == start)
            let retryAt = Date(timeIntervalSince1970: 1_800_000_000)
            try await s.recordEventConsumerFailure(name: "webhook:h", error: "unavailable", attempts: 1, nextAttemptAt: retryAt)
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: false, restartConsumerIfReenabled: nil))
            await #expect(try s.eventConsumer(named: "webhook:h")?.cursor == start)
            try await store(s, push("r", "two"))
            // enabling alone does not move the consumer: the store does what it is told
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true, restartConsumerIfReenabled: nil))
            await #expect(try s.eventConsumer(named: "webhook:h")?.cursor == start)
            await #expect(try s.eventConsumer(named: "webhook:h")?.attempts == 1)
            // the store itself decides whether the call re-enables: a webhook already enabled (the
            // caller's earlier read may have been stale), or a call that does not enable, moves nothing
            for enabled in [true, nil, false] as [Bool?] {
                #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: enabled,
                                                  restartConsumerIfReenabled: "webhook:h"))
                await #expect(try s.eventConsumer(named: "webhook:h")?.cursor == start)
            }
            await #expect(try s.webhook(named: "h")?.enabled == false)
            let end = try await s.latestEventSequence()
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true,
                                              restartConsumerIfReenabled: "webhook:h"))
            let c = try await #require(try s.eventConsumer(named: "webhook:h"))
            #expect(c.cursor == end)
            #expect(c.attempts == 0)
            #expect(c.nextAttemptAt == nil)
            // a consumer that does not exist is registered there
            #expect(try await s.deleteEventConsumer(name: "webhook:h"))
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: false,
                                              restartConsumerIfReenabled: nil))
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true,
                                              restartConsumerIfReenabled: "webhook:h"))
            await #expect(try s.eventConsumer(named: "webhook:h")?.cursor == end)
        },
        Case("updateWebhook: enabling again moves the webhook's consumer to the end in the same step, forward only, keeping its pause") { s in
            #expect(try await s.createWebhook(hook("h", enabled: false), consumer: "webhook:h"))
            let consumer = try await #require(try s.eventConsumer(named: "webhook:h"))
            try await store(s, push("r", "while-off"))
            try await s.recordEventConsumerFailure(name: "webhook:h", error: "down", attempts: 2, nextAttemptAt: Date(timeIntervalSince1970: 1_800_000_000))
            #expect(try await s.setEventConsumerPaused(name: "webhook:h", paused: true))
            let mark = try await s.latestEventSequence()
            #expect(mark > consumer.cursor)
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true,
                                              restartConsumerIfReenabled: "webhook:h"))
            var moved = try await #require(try s.eventConsumer(named: "webhook:h"))
            #expect(moved.cursor == mark)
            #expect(moved.attempts == 0 && moved.nextAttemptAt == nil && moved.lastError == nil)
            #expect(moved.paused)
            await #expect(try s.webhook(named: "h")?.enabled == true)
            // a consumer that caught up while the webhook was off stays where it is
            try await store(s, push("r", "after"))
            let ahead = try await s.latestEventSequence()
            #expect(try await s.advanceEventConsumer(name: "webhook:h", from: mark, to: ahead))
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: false, restartConsumerIfReenabled: nil))
            await #expect(try s.eventConsumer(named: "webhook:h")?.cursor == ahead)
            #expect(try await s.updateWebhook(name: "h", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true,
                                              restartConsumerIfReenabled: "webhook:h"))
            moved = try await #require(try s.eventConsumer(named: "webhook:h"))
            #expect(moved.cursor == ahead)
            // an unknown webhook moves no consumer
            #expect(try await s.updateWebhook(name: "unknown", uri: nil, actions: nil, scope: nil, headers: nil, enabled: true,
                                              restartConsumerIfReenabled: "webhook:unknown") == false)
            await #expect(try s.eventConsumer(named: "webhook:unknown") == nil)
        },
        Case("deleteWebhook: removes the webhook and its deliveries, once") { s in
            #expect(try await s.createWebhook(hook("h"), consumer: "webhook:h"))
            #expect(try await s.createWebhook(hook("keep"), consumer: "webhook:keep"))
            try await s.recordDelivery(delivery("h", event: nil), keep: 1000)
            try await s.recordDelivery(delivery("keep", event: nil), keep: 1000)
            #expect(try await s.deleteWebhook(name: "h"))
            await #expect(try s.webhook(named: "h") == nil)
            await #expect(try s.deliveries(webhook: "h", limit: 10) == [])
            await #expect(try s.deliveries(webhook: "keep", limit: 10).count == 1)
            #expect(try await s.deleteWebhook(name: "h") == false)
            await #expect(try s.webhooks().map(\.name) == ["keep"])
        },
        Case("recordDelivery: keeps the newest `keep` attempts of the delivery's webhook, others untouched") { s in
            #expect(try await s.createWebhook(hook("h"), consumer: "webhook:h"))
            #expect(try await s.createWebhook(hook("other"), consumer: "webhook:other"))
            let other = try await s.recordDelivery(delivery("other", event: nil), keep: 2)
            var ids: [Int64] = []
            for _ in 0..<5 { ids.append(try await s.recordDelivery(delivery("h", event: nil), keep: 2)) }
            await #expect(try s.deliveries(webhook: "h", limit: 10).map(\.id) == ids.suffix(2).reversed())
            await #expect(try s.deliveries(webhook: "other", limit: 10).map(\.id) == [other])
        },
        Case("recordDelivery: records each attempt, listed newest first per webhook; not a registry event") { s in
            #expect(try await s.createWebhook(hook("h"), consumer: "webhook:h"))
            for n in ["a", "b", "c"] { try await store(s, push("r", n)) }
            let seqs = try await s.events(after: 0, limit: 10).map(\.sequence)
            #expect(seqs.count == 3)
            let mark = try await s.latestEventSequence()
            let consumer = try await s.eventConsumer(named: "webhook:h")
            let id1 = try await s.recordDelivery(delivery("h", event: seqs[0], status: 503, error: "unavailable"), keep: 1000)
            let id2 = try await s.recordDelivery(delivery("h", event: seqs[0], attempt: 2), keep: 1000)
            let id3 = try await s.recordDelivery(delivery("h", event: seqs[2]), keep: 1000)
            let id4 = try await s.recordDelivery(delivery("h", event: seqs[1]), keep: 1000)
            let id5 = try await s.recordDelivery(delivery("h", event: nil), keep: 1000)      // a ping
            #expect(id1 < id2 && id2 < id3 && id3 < id4 && id4 < id5)
            let history = try await s.deliveries(webhook: "h", limit: 10)
            #expect(history.count == 5)
            #expect(history.first?.id == id5)
            #expect(history.last?.id == id1)
            let failed = try #require(history.last)
            var expected = delivery("h", event: seqs[0], status: 503, error: "unavailable")
            expected.id = id1
            #expect(failed == expected)
            await #expect(try s.deliveries(webhook: "h", limit: 2).map(\.id) == [id5, id4])
            await #expect(try s.deliveries(webhook: "unknown", limit: 10) == [])
            await #expect(try events(s, after: mark).isEmpty)
            // the consumer, which owns the cursor and the retry state, is not touched
            await #expect(try s.eventConsumer(named: "webhook:h") == consumer)
        },
        Case("latestEventSequence: 0 for an empty log, then the newest event's sequence") { s in
            await #expect(try s.latestEventSequence() == 0)
            try await link(s, "r", "a", "b")
            let e = try await s.events(after: 0, limit: 10)
            #expect(e.count == 2)
            await #expect(try s.latestEventSequence() == e.last?.sequence)
        },
    ]
}
