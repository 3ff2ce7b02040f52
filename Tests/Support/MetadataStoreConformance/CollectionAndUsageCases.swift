import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let collectionCases: [Case] = [
        Case("unreferencedLinks: links no manifest of their repository references, linked before the cutoff") { s in
            try await link(s, "r", "loose", "used")
            try await store(s, push("r", "m", blobs: [digest("used")]))
            try await link(s, "other", "used") // referenced in r, not in other
            await #expect(try s.unreferencedLinks(before: past, limit: 10).isEmpty)
            let expected = [("other", digest("used").string), ("r", digest("loose").string)].sorted { ($0.0, $0.1) < ($1.0, $1.1) }
            let found = try await s.unreferencedLinks(before: future, limit: 10)
            #expect(found.map(\.repository) == expected.map(\.0))
            #expect(found.map(\.digest) == expected.map(\.1))
            await #expect(try s.unreferencedLinks(before: future, limit: 1).map(\.digest) == [expected[0].1])
        },
        Case("removeUnreferencedLink: removes a link only while it is unreferenced and old enough") { s in
            try await link(s, "r", "loose", "used")
            try await store(s, push("r", "m", blobs: [digest("used")]))
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("used").string, before: future) == false)
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("loose").string, before: past) == false)
            #expect(try await s.removeUnreferencedLink(repository: "unknown", digest: digest("loose").string, before: future) == false)
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("loose")) == 5)
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("loose").string, before: future))
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("loose")) == nil)
            await #expect(try s.blobSize(digest("loose")) == 5) // the stored blob is a separate sweep
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("loose").string, before: future) == false)
            await #expect(try s.linkedBlobSize(repository: "r", digest: digest("used")) == 4)
        },
        Case("unreferencedBlobs/removeUnreferencedBlob/hasBlobRecord: only digests nothing references") { s in
            try await link(s, "r", "loose", inline: true)
            try await link(s, "r", "big")
            let m = push("r", "m", blobs: [digest("big")])
            try await store(s, m)
            await #expect(try s.unreferencedBlobs(before: future, limit: 10) == [])
            #expect(try await s.unlinkBlob(repository: "r", digest: digest("loose")))
            #expect(try await s.unlinkBlob(repository: "r", digest: digest("big")))
            // big is still named by a manifest; the manifest's own digest is referenced by the manifest
            await #expect(try s.unreferencedBlobs(before: future, limit: 10).map(describe) == ["\(digest("loose")) 5 inline"])
            await #expect(try s.unreferencedBlobs(before: past, limit: 10) == [])
            #expect(try await s.removeUnreferencedBlob(digest("big").string, before: future) == nil)
            #expect(try await s.removeUnreferencedBlob(m.record.digest.string, before: future) == nil)
            #expect(try await s.removeUnreferencedBlob(digest("loose").string, before: past) == nil)
            await #expect(try s.hasBlobRecord(digest("loose").string))
            let removed = try await s.removeUnreferencedBlob(digest("loose").string, before: future)
            #expect(removed.map(describe) == "\(digest("loose")) 5 inline")
            await #expect(try s.hasBlobRecord(digest("loose").string) == false)
            await #expect(try s.blobSize(digest("loose")) == nil)
            await #expect(try s.inlineContent(digest("loose")) == nil)
            #expect(try await s.removeUnreferencedBlob(digest("loose").string, before: future) == nil)
            await #expect(try s.hasBlobRecord(digest("big").string))
            await #expect(try s.hasBlobRecord(digest("unknown").string) == false)
        },
        Case("garbage collection keeps what a manifest in the recycle bin references") { s in
            let p = try await image(s, "r", "m", tag: "t")
            try await deleteManifests(s, "r", [p.record.digest], softDeleteUntil: future)
            #expect(try await s.unlinkBlob(repository: "r", digest: digest("layer-of-m")))
            await #expect(try s.unreferencedBlobs(before: future, limit: 10) == [])
            #expect(try await s.removeUnreferencedBlob(digest("layer-of-m").string, before: future) == nil)
            #expect(try await s.removeUnreferencedBlob(p.record.digest.string, before: future) == nil)
            let state = try await #require(try s.blobCollectionState(digest("layer-of-m").string))
            #expect(state.referenced)
            // once the entry expires, both are garbage
            _ = try await s.expireDeletedManifests(now: future.addingTimeInterval(1), limit: 10_000)
            await #expect(Set(try s.unreferencedBlobs(before: future, limit: 10).map(\.digest))
                        == [digest("layer-of-m").string, p.record.digest.string])
        },
        Case("blobCollectionState: size, linking repositories and whether a manifest is or names it") { s in
            await #expect(try s.blobCollectionState(digest("x").string) == nil)
            try await s.linkBlob(repository: "a", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "b", digest: digest("x"), size: 100, inline: nil)
            var state = try await #require(try s.blobCollectionState(digest("x").string))
            #expect(state.size == 100)
            #expect(Set(state.linkedRepositories) == ["a", "b"])
            #expect(state.referenced == false)
            let m = push("a", "m", blobs: [digest("x")])
            try await store(s, m)
            state = try await #require(try s.blobCollectionState(digest("x").string))
            #expect(state.referenced)
            let own = try await #require(try s.blobCollectionState(m.record.digest.string))
            #expect(own.referenced)
            #expect(own.linkedRepositories == [])
            #expect(own.size == m.record.size)
        },
    ]

    static let usageCases: [Case] = [
        Case("daily push totals: manifest pushes summed per UTC day, per repository when asked; other events and older ones left out") { s in
            let start = Date().addingTimeInterval(-60)
            let none = try await s.dailyPushTotals(since: start, repository: nil)
            #expect(none.isEmpty)
            let a1 = try await image(s, "a", "one", tag: "v1")
            let a2 = try await image(s, "a", "a-second-manifest")
            let b1 = try await image(s, "b", "b-manifest-of-another-size", tag: "v1")
            try await deleteManifests(s, "a", [a2.record.digest], softDeleteUntil: future)
            // the same numbers as reading every push event (a push made around midnight UTC may
            // fall on two days: compare day by day)
            let pushes = try await s.events(since: start, limit: 1000).filter { $0.action == .manifestPush }
            #expect(pushes.count == 3)
            func expected(_ repository: String?) -> [DailyPushTotal] {
                var days: [Int64: (Int, Int64)] = [:]
                for e in pushes where repository == nil || e.repository == repository {
                    let day = Int64((e.timestamp.timeIntervalSince1970 / 86_400).rounded(.down))
                    days[day, default: (0, 0)].0 += 1
                    days[day, default: (0, 0)].1 += e.size ?? 0
                }
                return days.sorted { $0.key < $1.key }.map {
                    DailyPushTotal(day: Date(timeIntervalSince1970: Double($0.key * 86_400)), pushes: $0.value.0, bytes: $0.value.1)
                }
            }
            let all = try await s.dailyPushTotals(since: start, repository: nil)
            #expect(all == expected(nil))
            #expect(all.map(\.pushes).reduce(0, +) == 3)
            #expect(all.map(\.bytes).reduce(0, +) == a1.record.size + a2.record.size + b1.record.size)
            let onlyA = try await s.dailyPushTotals(since: start, repository: "a")
            #expect(onlyA == expected("a"))
            #expect(onlyA.map(\.bytes).reduce(0, +) == a1.record.size + a2.record.size)
            let unknown = try await s.dailyPushTotals(since: start, repository: "a'; DROP TABLE events; --")
            #expect(unknown.isEmpty)
            let later = try await s.dailyPushTotals(since: Date().addingTimeInterval(3600), repository: nil)
            #expect(later.isEmpty)
            for total in all { #expect(total.day.timeIntervalSince1970.truncatingRemainder(dividingBy: 86_400) == 0) }
        },
        Case("usage: the registry and one repository; nil for an unknown repository") { s in
            await #expect(try s.usage(repository: nil).map(describe) == "nil: 0 bytes, 0 blobs, 0 manifests, 0 tags, 0 repositories, 0 deleted")
            await #expect(try s.usage(repository: "a") == nil)
            try await s.linkBlob(repository: "a", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "b", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "b", digest: digest("y"), size: 10, inline: nil)
            let m = push("a", "m", tag: "t", blobs: [digest("x")])
            try await store(s, m)
            let n = push("b", "n")
            try await store(s, n)
            try await deleteManifests(s, "b", [n.record.digest], softDeleteUntil: future)
            await #expect(try s.usage(repository: nil).map(describe)
                        == "nil: \(110 + m.record.size + n.record.size) bytes, 4 blobs, 1 manifests, 1 tags, 2 repositories, 1 deleted")
            await #expect(try s.usage(repository: "a").map(describe)
                        == "a: \(100 + m.record.size) bytes, 2 blobs, 1 manifests, 1 tags, nil repositories, 0 deleted")
            // a manifest in the recycle bin still uses storage
            await #expect(try s.usage(repository: "b").map(describe)
                        == "b: \(110 + n.record.size) bytes, 3 blobs, 0 manifests, 0 tags, nil repositories, 1 deleted")
        },
        Case("quotaUsage: a prefix with / covers what is below it, without / also itself; digests count once; LIKE escaped") { s in
            try await s.linkBlob(repository: "payments", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "payments/api", digest: digest("y"), size: 10, inline: nil)
            try await s.linkBlob(repository: "payments/api", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "payments-old", digest: digest("z"), size: 1000, inline: nil)
            try await s.linkBlob(repository: "paxments/api", digest: digest("w"), size: 7, inline: nil)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "payments", limitBytes: 1)) == 110)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "payments/", limitBytes: 1)) == 110)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "payments/api", limitBytes: 1)) == 110)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "pa_ments/", limitBytes: 1)) == 0)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "pa%", limitBytes: 1)) == 0)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "unknown", limitBytes: 1)) == 0)
            let m = push("payments", "m")
            try await store(s, m)
            await #expect(try s.quotaUsage(QuotaLimit(name: "q", prefix: "payments", limitBytes: 1)) == 110 + m.record.size)
        },
        Case("quotaExceeded: the quota a link would exceed, by the rule linking applies") { s in
            let q = QuotaLimit(name: "team", prefix: "team/", limitBytes: 100)
            try await s.linkBlob(repository: "team/a", digest: digest("x"), size: 60, inline: nil, quotas: [q])
            await #expect(try s.quotaExceeded([q], repository: "team/b", digest: digest("new").string, size: 41)
                        == QuotaExceeded(quota: "team", limit: 100, used: 60, needed: 41))
            await #expect(try s.quotaExceeded([q], repository: "team/b", digest: digest("new").string, size: 40) == nil)
            await #expect(try s.quotaExceeded([q], repository: "team/b", digest: digest("x").string, size: 60) == nil)
            await #expect(try s.quotaExceeded([q], repository: "other", digest: digest("new").string, size: 1000) == nil)
            await #expect(try s.quotaExceeded([], repository: "team/b", digest: digest("new").string, size: 1000) == nil)
            let tight = QuotaLimit(name: "tight", prefix: "team", limitBytes: 61)
            await #expect(try s.quotaExceeded([q, tight], repository: "team/b", digest: digest("new").string, size: 5)?.quota == "tight")
        },
        Case("linkBlob and mountBlob past a quota throw QuotaExceeded and link and append nothing") { s in
            let q = QuotaLimit(name: "team", prefix: "team/", limitBytes: 100)
            try await s.linkBlob(repository: "team/a", digest: digest("x"), size: 60, inline: nil, quotas: [q])
            try await s.linkBlob(repository: "other", digest: digest("y"), size: 50, inline: nil)
            let mark = try await s.latestEventSequence()
            await #expect(throws: QuotaExceeded(quota: "team", limit: 100, used: 60, needed: 50)) {
                try await s.linkBlob(repository: "team/b", digest: digest("y"), size: 50, inline: nil, quotas: [q])
            }
            await #expect(throws: QuotaExceeded(quota: "team", limit: 100, used: 60, needed: 50)) {
                try await s.mountBlob(repository: "team/b", from: "other", digest: digest("y"), quotas: [q])
            }
            await #expect(try s.linkedBlobSize(repository: "team/b", digest: digest("y")) == nil)
            await #expect(try s.repositoryExists("team/b") == false)
            await #expect(try events(s, after: mark).isEmpty)
            // what the quota already counts links freely
            #expect(try await s.mountBlob(repository: "team/b", from: "team/a", digest: digest("x"), quotas: [q]) == 60)
        },
    ]

    static let runCases: [Case] = [
        Case("recordRun: keeps the newest `keep` reports of the run's kind, other kinds untouched") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            var gc: [Int64] = []
            let purge = try await s.recordRun(kind: .purge, name: "p", dryRun: true, startedAt: t, finishedAt: t, report: "{}",
                                              event: nil, keep: 3)
            for _ in 0..<5 {
                gc.append(try await s.recordRun(kind: .gc, name: nil, dryRun: true, startedAt: t, finishedAt: t, report: "{}",
                                                event: nil, keep: 3))
            }
            await #expect(try s.runs(kind: .gc, name: nil, limit: 10).map(\.id) == gc.suffix(3).reversed())
            await #expect(try s.runs(kind: .purge, name: nil, limit: 10).map(\.id) == [purge])
            // a smaller number takes effect at the next report; less than one keeps that one
            let last = try await s.recordRun(kind: .gc, name: nil, dryRun: true, startedAt: t, finishedAt: t, report: "{}",
                                             event: nil, keep: 0)
            await #expect(try s.runs(kind: .gc, name: nil, limit: 10).map(\.id) == [last])
        },
        Case("recordRun/runs: increasing ids, newest first, filtered by kind and name, optional event") { s in
            let t0 = Date(timeIntervalSince1970: 1_700_000_000), t1 = Date(timeIntervalSince1970: 1_700_000_060)
            var mark = try await s.latestEventSequence()
            let id1 = try await s.recordRun(kind: .purge, name: "nightly", dryRun: true, startedAt: t0, finishedAt: t1,
                                            report: "{\"a\":1}", event: nil, keep: 1000)
            await #expect(try events(s, after: mark).isEmpty)
            mark = try await s.latestEventSequence()
            let id2 = try await s.recordRun(kind: .gc, name: nil, dryRun: false, startedAt: t0, finishedAt: t1, report: "{}",
                                            event: (action: EventAction.gcRun, detail: "freed 3"), keep: 1000)
            let id3 = try await s.recordRun(kind: .purge, name: "weekly", dryRun: false, startedAt: t0, finishedAt: t1, report: "{}",
                                            event: (action: EventAction.purgeRun, detail: "deleted 1"), keep: 1000)
            #expect(id1 < id2 && id2 < id3)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.gcRun, EventAction.purgeRun])
            #expect(e.map(\.repository) == ["", "weekly"])
            #expect(e.map(\.detail) == ["run \(id2): freed 3", "run \(id3): deleted 1"])
            await #expect(try s.runs(kind: nil, name: nil, limit: 10).map(\.id) == [id3, id2, id1])
            await #expect(try s.runs(kind: .purge, name: nil, limit: 10).map(\.id) == [id3, id1])
            await #expect(try s.runs(kind: .purge, name: "nightly", limit: 10).map(\.id) == [id1])
            await #expect(try s.runs(kind: nil, name: nil, limit: 1).map(\.id) == [id3])
            await #expect(try s.runs(kind: .retention, name: nil, limit: 10) == [])
            let r = try await #require(try s.runs(kind: .purge, name: "nightly", limit: 1).first)
            #expect(r.id == id1)
            #expect(r.kind == .purge)
            #expect(r.name == "nightly")
            #expect(r.dryRun)
            #expect(r.startedAt == t0)
            #expect(r.finishedAt == t1)
            #expect(r.report == "{\"a\":1}")
        },
        Case("purge schedules: create once per name, list by name, mark runs, delete once") { s in
            await #expect(try s.purgeSchedules() == [])
            let created = Date(timeIntervalSince1970: 1_700_000_000)
            let b = PurgeScheduleRecord(name: "b", cron: "0 3 * * *", filters: ["app:.*"], ago: "7d", untagged: true, keep: 3, createdAt: created)
            let a = PurgeScheduleRecord(name: "a", cron: "@daily", filters: [], ago: "1d", untagged: false, keep: 0, createdAt: created)
            #expect(try await s.createPurgeSchedule(b))
            #expect(try await s.createPurgeSchedule(a))
            var clash = a
            clash.cron = "@hourly"
            #expect(try await s.createPurgeSchedule(clash) == false)
            await #expect(try s.purgeSchedules() == [a, b])
            let ran = Date(timeIntervalSince1970: 1_700_000_500)
            try await s.markPurgeScheduleRun(name: "b", at: ran)
            try await s.markPurgeScheduleRun(name: "unknown", at: ran)
            await #expect(try s.purgeSchedules().last?.lastRunAt == ran)
            await #expect(try s.purgeSchedules().first?.lastRunAt == nil)
            #expect(try await s.deletePurgeSchedule(name: "a"))
            #expect(try await s.deletePurgeSchedule(name: "a") == false)
            await #expect(try s.purgeSchedules().map(\.name) == ["b"])
        },
    ]
}
