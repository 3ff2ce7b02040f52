import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let eventLogCases: [Case] = [
        Case("event log: each mutation appends exactly its events; sequences strictly increase; pages agree") { s in
            var expected: [EventAction] = []
            func step(_ want: [EventAction], _ mutation: () async throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) async throws {
                let got = try await actions(s, of: mutation)
                #expect(got == want, sourceLocation: sourceLocation)
                expected += want
            }
            let p = push("r", "m", tag: "t", blobs: [digest("layer")])
            try await step([EventAction.blobPush]) { try await link(s, "r", "layer") }
            try await step([EventAction.blobPush]) { _ = try await s.mountBlob(repository: "r2", from: "r", digest: digest("layer")) }
            try await step([EventAction.manifestPush, EventAction.tagMove]) { try await store(s, p) }
            // pushed again: a mark of its tag's write (issue 13), no push or tag event
            try await step([EventAction.registerMark]) { try await store(s, p) }
            try await step([EventAction.tagDelete]) { _ = try await s.deleteTag(repository: "r", tag: "t") }
            try await step([EventAction.quarantine]) {
                _ = try await s.setQuarantine(repository: "r", digest: p.record.digest, state: .passed, reason: nil)
            }
            // a setting change is announced (by name) so other processes drop their cached copy
            try await step([EventAction.setting]) { try await s.setSetting(SettingKey<String>("k"), "v") }
            try await step([EventAction.lock]) { try await s.setLock(LockRecord(repository: "r", writeEnabled: false)) }
            try await step([EventAction.manifestDelete]) {
                try await deleteManifests(s, "r", [p.record.digest], softDeleteUntil: future)
            }
            try await step([EventAction.restore]) {
                try await restore(s, "r", p.record.digest)
            }
            try await step([EventAction.manifestDelete]) { try await deleteManifests(s, "r", [p.record.digest], softDeleteUntil: past) }
            try await step([EventAction.softDeleteExpire]) { _ = try await s.expireDeletedManifests(now: Date(), limit: 10_000) }
            try await step([EventAction.blobDelete]) { _ = try await s.unlinkBlob(repository: "r2", digest: digest("layer")) }
            // garbage collection's removal of a link is announced too (other nodes' caches drop it);
            // a link it keeps (referenced, or too young) appends nothing
            try await step([EventAction.blobPush]) { try await link(s, "gc", "stray") }
            try await step([]) { _ = try await s.removeUnreferencedLink(repository: "gc", digest: digest("stray").string, before: past) }
            try await step([EventAction.blobDelete]) {
                _ = try await s.removeUnreferencedLink(repository: "gc", digest: digest("stray").string, before: future)
            }
            try await step([EventAction.blobPush]) { try await link(s, "gc", "stray") }
            try await step([EventAction.blobDelete]) {
                _ = try await s.removeUntouchedLink(repository: "gc", digest: digest("stray").string, before: future, touchedSince: future)
            }
            try await step([EventAction.gcRun]) {
                try await s.recordRun(kind: .gc, name: nil, dryRun: false, startedAt: past, finishedAt: past, report: "{}",
                                      event: (action: EventAction.gcRun, detail: "x"), keep: 1000)
            }
            // state outside the registry's content is not in its event log
            try await step([]) {
                try await s.recordRun(kind: .gc, name: nil, dryRun: true, startedAt: past, finishedAt: past, report: "{}", event: nil, keep: 1000)
                _ = try await s.storeAccessState(Data("d".utf8), expectedVersion: 0, audit: audit("x", at: past))
                try await s.appendAudit([audit("y", at: past)])
                _ = try await s.createWebhook(hook("h"), consumer: "webhook:h")
                try await s.recordDelivery(delivery("h", event: nil), keep: 1000)
                _ = try await s.createPurgeSchedule(PurgeScheduleRecord(name: "p", cron: "@daily", filters: [], ago: "1d",
                                                                        untagged: true, keep: 0, createdAt: past))
            }
            let all = try await s.events(after: 0, limit: 1000)
            #expect(all.map(\.action) == expected)
            #expect(zip(all, all.dropFirst()).allSatisfy { $0.sequence < $1.sequence })
            #expect(all.allSatisfy { $0.sequence > 0 })
            await #expect(try s.latestEventSequence() == all.last?.sequence)
            var paged: [Event] = []
            var cursor: Int64 = 0
            while true {
                let page = try await s.events(after: cursor, limit: 3)
                guard let last = page.last, paged.count <= all.count else { break }
                #expect(page.count <= 3)
                paged += page
                cursor = last.sequence
            }
            #expect(paged == all)
            await #expect(try s.events(after: all.last?.sequence ?? 0, limit: 10) == [])
        },
        Case("event log: refused or failed mutations append nothing") { s in
            let p = try await image(s, "r", "m", tag: "t")
            try await link(s, "other", "y")
            let quota = QuotaLimit(name: "q", prefix: "r", limitBytes: 1)
            let mark = try await s.latestEventSequence()
            #expect(try await s.putManifest(push("r", "n", blobs: [digest("absent")])) == .missing([digest("absent")]))
            var tooBig = push("r", "n")
            tooBig.quotas = [quota]
            await #expect(throws: QuotaExceeded.self) { try await s.putManifest(tooBig) }
            await #expect(throws: QuotaExceeded.self) {
                try await s.linkBlob(repository: "r", digest: digest("z"), size: 10, inline: nil, quotas: [quota])
            }
            await #expect(throws: QuotaExceeded.self) {
                try await s.mountBlob(repository: "r", from: "other", digest: digest("y"), quotas: [quota])
            }
            #expect(try await s.mountBlob(repository: "r", from: "unknown", digest: digest("y")) == nil)
            #expect(try await s.unlinkBlob(repository: "r", digest: digest("absent")) == false)
            #expect(try await s.deleteTag(repository: "r", tag: "absent") == false)
            #expect(try await s.setQuarantine(repository: "r", digest: digest("absent"), state: .failed, reason: nil) == false)
            _ = try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.deleteManifests = [LifecycleDeletion(repository: "r", digest: p.record.digest.string, mediaType: nil, reason: "requested")]
                c.denied = "locked"
                return c
            }
            await #expect(throws: PlanFailed.self) {
                try await s.applyLifecycle(repository: "r", softDeleteUntil: nil) { _ in throw PlanFailed() }
            }
            await #expect(throws: RestoreError.planStale) {
                try await s.applyRestore(repository: "r", plan: RestorePlan(entries: [Int64.max], comesBack: [:], digest: p.record.digest.string,
                                                                            tagMoves: [], tagHistoryLimit: tagHistoryLimit))
            }
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("layer-of-m").string, before: future) == false)
            #expect(try await s.removeUnreferencedBlob(p.record.digest.string, before: future) == nil)
            await #expect(try s.latestEventSequence() == mark)
            await #expect(try events(s, after: mark).isEmpty)
        },
        Case("events(since:): events at or after a time, in sequence order, limited") { s in
            for n in ["a", "b", "c"] { try await store(s, push("r", n)) }
            let all = try await s.events(after: 0, limit: 10)
            #expect(all.count == 3)
            await #expect(try s.events(since: past, limit: 10) == all)
            await #expect(try s.events(since: past, limit: 2) == Array(all.prefix(2)))
            await #expect(try s.events(since: future, limit: 10) == [])
            let second = all[1]
            let from = try await s.events(since: second.timestamp, limit: 10)
            #expect(from.contains(second))
            #expect(from.contains(all[2]))
            #expect(from.allSatisfy { $0.timestamp >= second.timestamp })
            #expect(zip(from, from.dropFirst()).allSatisfy { $0.sequence < $1.sequence })
        },
    ]

    static let concurrencyCases: [Case] = [
        Case("race: concurrent writers get distinct, increasing event sequences and lose no event") { s in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for w in 0..<4 {
                    group.addTask {
                        for i in 0..<10 { try await link(s, "w\(w)", "blob-\(w)-\(i)") }
                    }
                }
                try await group.waitForAll()
            }
            let all = try await s.events(after: 0, limit: 1000)
            #expect(all.count == 40)
            #expect(Set(all.map(\.sequence)).count == 40)
            #expect(zip(all, all.dropFirst()).allSatisfy { $0.sequence < $1.sequence })
            for w in 0..<4 {
                // each writer's events are in its own order
                #expect(all.filter { $0.repository == "w\(w)" }.map(\.digest) == (0..<10).map { digest("blob-\(w)-\($0)").string })
            }
        },
        Case("race: two writers of one tag planned from the same state: one applies, the other is told where the tag went") { s in
            for round in 0..<10 {
                let tag = "t\(round)"
                let a = push("r", "a\(round)", tag: tag), b = push("r", "b\(round)", tag: tag)
                let mark = try await s.latestEventSequence()
                async let x = s.putManifest(a)
                async let y = s.putManifest(b)
                let (ra, rb) = try await (x, y)
                let final = try await #require(try s.tagTarget(repository: "r", tag: tag))
                #expect(final == a.record.digest || final == b.record.digest)
                let (winner, loser) = final == a.record.digest ? (ra, rb) : (rb, ra)
                let lost = final == a.record.digest ? b : a
                #expect(winner == .stored(previousTagTarget: nil))
                #expect(loser == .tagConflict(current: final))
                // the loser wrote nothing, not even its manifest
                await #expect(try s.manifest(repository: "r", digest: lost.record.digest) == nil)
                let e = try await events(s, after: mark)
                #expect(e.map(\.action) == [EventAction.manifestPush, EventAction.tagMove])
                #expect(e.allSatisfy { $0.digest == final.string })
                // planned again from the new state, it applies
                var again = lost
                again.expectedTagTarget = final
                #expect(try await s.putManifest(again) == .stored(previousTagTarget: final))
            }
        },
        Case("race: garbage collection of a blob while a manifest naming it is pushed never leaves the manifest without it") { s in
            for round in 0..<20 {
                let layer = digest("race-layer-\(round)")
                try await s.linkBlob(repository: "r", digest: layer, size: 10, inline: nil)
                let p = push("r", "race-\(round)", blobs: [layer])
                async let pushed = s.putManifest(p)
                async let unlinked = s.removeUnreferencedLink(repository: "r", digest: layer.string, before: future)
                async let swept = s.removeUnreferencedBlob(layer.string, before: future)
                let (result, removedLink, removedBlob) = try await (pushed, unlinked, swept)
                let manifest = try await s.manifest(repository: "r", digest: p.record.digest)
                switch result {
                case .stored:
                    #expect(removedLink == false)
                    #expect(removedBlob == nil)
                    #expect(manifest != nil)
                    await #expect(try s.linkedBlobSize(repository: "r", digest: layer) == 10)
                    await #expect(try s.hasBlobRecord(layer.string))
                    // and a later sweep keeps it
                    #expect(try await s.removeUnreferencedLink(repository: "r", digest: layer.string, before: future) == false)
                    #expect(try await s.removeUnreferencedBlob(layer.string, before: future) == nil)
                case .missing(let missing):
                    #expect(missing == [layer])
                    #expect(removedLink)
                    #expect(manifest == nil)
                case .tagConflict:
                    Issue.record("a push without a tag has no tag precondition")
                }
            }
        },
    ]
}
