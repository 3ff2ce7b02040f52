import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let eventConsumerCases: [Case] = [
        Case("quarantineCounts: manifests by state; never-quarantined ones are not counted") { s in
            var a = push("r", "a")
            a.record.quarantineState = .pending
            var b = push("r", "b")
            b.record.quarantineState = .pending
            try await store(s, a)
            try await store(s, b)
            try await store(s, push("r", "plain"))
            _ = try await s.setQuarantine(repository: "r", digest: b.record.digest, state: .failed, reason: "scan")
            let counts = try await s.quarantineCounts()
            #expect(counts == [.pending: 1, .failed: 1])
        },
        Case("registerEventConsumer: starts at the beginning or the end of the log, once") { s in
            try await store(s, push("r", "m", tag: "t"))
            let latest = try await s.latestEventSequence()
            let head = try await s.registerEventConsumer(name: "head", start: .beginning)
            let tail = try await s.registerEventConsumer(name: "tail", start: .end)
            #expect(head.cursor == 0 && !head.paused && head.attempts == 0)
            #expect(tail.cursor == latest)
            // registering again changes nothing
            let again = try await s.registerEventConsumer(name: "head", start: .end)
            #expect(again.cursor == 0)
            let names = try await s.eventConsumers().map(\.name)
            #expect(names == ["head", "tail"])
            let missing = try await s.eventConsumer(named: "nobody")
            #expect(missing == nil)
        },
        Case("advanceEventConsumer: compare-and-swap on the cursor, clearing the failure state") { s in
            _ = try await s.registerEventConsumer(name: "c", start: .beginning)
            try await s.recordEventConsumerFailure(name: "c", error: "boom", attempts: 3, nextAttemptAt: Date().addingTimeInterval(60))
            let failed = try await s.eventConsumer(named: "c")
            #expect(failed?.attempts == 3 && failed?.lastError == "boom" && failed?.nextAttemptAt != nil && failed?.cursor == 0)
            let moved = try await s.advanceEventConsumer(name: "c", from: 0, to: 5)
            let stale = try await s.advanceEventConsumer(name: "c", from: 0, to: 9)
            #expect(moved && !stale)
            let after = try await s.eventConsumer(named: "c")
            #expect(after?.cursor == 5 && after?.attempts == 0 && after?.lastError == nil && after?.nextAttemptAt == nil)
        },
        Case("setEventConsumerPaused: pauses and resumes; unknown consumers are false") { s in
            _ = try await s.registerEventConsumer(name: "c", start: .beginning)
            let paused = try await s.setEventConsumerPaused(name: "c", paused: true)
            let pausedRecord = try await s.eventConsumer(named: "c")
            #expect(paused && pausedRecord?.paused == true)
            let resumed = try await s.setEventConsumerPaused(name: "c", paused: false)
            let resumedRecord = try await s.eventConsumer(named: "c")
            #expect(resumed && resumedRecord?.paused == false)
            let unknown = try await s.setEventConsumerPaused(name: "nobody", paused: true)
            #expect(!unknown)
        },
        Case("registerEventConsumer: a cursor taken over from elsewhere starts after the sequence given, once") { s in
            let taken = try await s.registerEventConsumer(name: "moved", start: .after(7))
            #expect(taken.cursor == 7)
            let again = try await s.registerEventConsumer(name: "moved", start: .after(9))
            #expect(again.cursor == 7)
        },
        Case("deleteEventConsumer: forgets the cursor; registering again starts afresh; unknown consumers are false") { s in
            _ = try await s.registerEventConsumer(name: "c", start: .after(5))
            let deleted = try await s.deleteEventConsumer(name: "c")
            let gone = try await s.eventConsumer(named: "c")
            #expect(deleted && gone == nil)
            let fresh = try await s.registerEventConsumer(name: "c", start: .beginning)
            #expect(fresh.cursor == 0)
            let unknown = try await s.deleteEventConsumer(name: "nobody")
            #expect(!unknown)
        },
        Case("advanceEventConsumer: two writers racing from one cursor, exactly one wins") { s in
            _ = try await s.registerEventConsumer(name: "c", start: .beginning)
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for to in [Int64(3), 4] { group.addTask { try await s.advanceEventConsumer(name: "c", from: 0, to: to) } }
                var n = 0
                for try await won in group where won { n += 1 }
                return n
            }
            #expect(wins == 1)
            let cursor = try await s.eventConsumer(named: "c")?.cursor
            #expect(cursor == 3 || cursor == 4)
        },
    ]
}
