import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let pullTimeCases: [Case] = [
        Case("pull times: a batch keeps the latest time per manifest and per tag; an older batch never moves one back; no event") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            let v1 = try await image(s, "team/app", "one", tag: "v1")
            let other = try await image(s, "team/app", "two", tag: "v2")
            let mark = try await s.latestEventSequence()
            let none = try await s.pullTimes(repository: "team/app")
            #expect(none == PullTimes())
            try await s.recordPulls([
                PullRecord(repository: "team/app", digest: v1.record.digest, tag: "v1", at: t),
                PullRecord(repository: "team/app", digest: v1.record.digest, tag: "v1", at: t.addingTimeInterval(5)),
                PullRecord(repository: "team/app", digest: v1.record.digest, tag: nil, at: t.addingTimeInterval(7)),
                PullRecord(repository: "team/app", digest: v1.record.digest, tag: "v1", at: t.addingTimeInterval(2)),
            ])
            var times = try await s.pullTimes(repository: "team/app")
            #expect(times.manifests == [v1.record.digest.string: t.addingTimeInterval(7)])
            #expect(times.tags == ["v1": t.addingTimeInterval(5)])
            // an older batch (another node's, written late) changes nothing; a newer one moves it
            try await s.recordPulls([PullRecord(repository: "team/app", digest: v1.record.digest, tag: "v1", at: t)])
            try await s.recordPulls([PullRecord(repository: "team/app", digest: other.record.digest, tag: nil, at: t.addingTimeInterval(9))])
            times = try await s.pullTimes(repository: "team/app")
            #expect(times.manifests == [v1.record.digest.string: t.addingTimeInterval(7), other.record.digest.string: t.addingTimeInterval(9)])
            #expect(times.tags == ["v1": t.addingTimeInterval(5)])
            try await s.recordPulls([PullRecord(repository: "team/app", digest: v1.record.digest, tag: "v1", at: t.addingTimeInterval(60))])
            times = try await s.pullTimes(repository: "team/app")
            #expect(times.manifests[v1.record.digest.string] == t.addingTimeInterval(60) && times.tags["v1"] == t.addingTimeInterval(60))
            try await s.recordPulls([])
            await #expect(try s.latestEventSequence() == mark)
        },
        Case("pull times: pulls of an unknown repository, manifest or tag are ignored, the rest of the batch is written") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            let p = try await image(s, "r", "one", tag: "v1")
            try await s.recordPulls([
                PullRecord(repository: "nowhere", digest: p.record.digest, tag: "v1", at: t),
                PullRecord(repository: "r", digest: digest("absent"), tag: nil, at: t),
                PullRecord(repository: "r", digest: p.record.digest, tag: "no-such-tag", at: t),
                PullRecord(repository: "r'; DROP TABLE manifests; --", digest: p.record.digest, tag: "v1'--", at: t),
                PullRecord(repository: "r", digest: p.record.digest, tag: "v1", at: t.addingTimeInterval(1)),
            ])
            let times = try await s.pullTimes(repository: "r")
            #expect(times.manifests == [p.record.digest.string: t.addingTimeInterval(1)])
            #expect(times.tags == ["v1": t.addingTimeInterval(1)])
            let unknown = try await s.pullTimes(repository: "nowhere")
            #expect(unknown == PullTimes())
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) != nil)
        },
        Case("pull times: a batch of many pulls over many manifests and tags is written in one call") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            var pulls: [PullRecord] = []
            var expected: [String: Date] = [:]
            for i in 0..<60 {
                let p = try await image(s, "bulk", "m\(i)", tag: "t\(i)")
                expected[p.record.digest.string] = t.addingTimeInterval(Double(i + 20))
                for j in 0..<20 {
                    pulls.append(PullRecord(repository: "bulk", digest: p.record.digest, tag: "t\(i)", at: t.addingTimeInterval(Double(i + j + 1))))
                }
            }
            // and many that match nothing
            for i in 0..<1500 {
                pulls.append(PullRecord(repository: "bulk-\(i % 7)", digest: digest("x\(i)"), tag: "t\(i)", at: t))
            }
            pulls.shuffle()
            try await s.recordPulls(pulls)
            let times = try await s.pullTimes(repository: "bulk")
            #expect(times.manifests == expected)
            #expect(times.tags.count == 60 && times.tags["t59"] == t.addingTimeInterval(79))
        },
        Case("pull times: deleting a tag drops its time, deleting a manifest drops its own and its tags'; a re-push starts unpulled") { s in
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            let p = try await image(s, "r", "one", tag: "v1")
            _ = try await store(s, push("r", "one", tag: "v2", blobs: [digest("layer-of-one")]))
            let q = try await image(s, "r", "two", tag: "keep")
            try await s.recordPulls([
                PullRecord(repository: "r", digest: p.record.digest, tag: "v1", at: t),
                PullRecord(repository: "r", digest: p.record.digest, tag: "v2", at: t),
                PullRecord(repository: "r", digest: q.record.digest, tag: "keep", at: t),
            ])
            #expect(try await s.deleteTag(repository: "r", tag: "v1"))
            var times = try await s.pullTimes(repository: "r")
            #expect(times.tags == ["v2": t, "keep": t])
            #expect(times.manifests.count == 2)
            try await deleteManifests(s, "r", [p.record.digest])
            times = try await s.pullTimes(repository: "r")
            #expect(times.manifests == [q.record.digest.string: t])
            #expect(times.tags == ["keep": t])
            // pushed again: not pulled since
            try await image(s, "r", "one", tag: "v1")
            times = try await s.pullTimes(repository: "r")
            #expect(times.manifests[p.record.digest.string] == nil && times.tags["v1"] == nil)
            // the recycle bin too: a soft-deleted manifest has no pull time
            try await deleteManifests(s, "r", [q.record.digest], softDeleteUntil: Date().addingTimeInterval(3600))
            times = try await s.pullTimes(repository: "r")
            #expect(times.manifests[q.record.digest.string] == nil && times.tags["keep"] == nil)
        },
        Case("pull times: manifests used since a time are those pulled or pushed since, in any repository") { s in
            let old = Date(timeIntervalSince1970: 1_000_000)
            let cutoff = Date(timeIntervalSince1970: 1_600_000_000)
            let stale = push("a", "stale", createdAt: old)
            let pulled = push("a", "pulled", createdAt: old)
            let elsewhere = push("b", "pulled-elsewhere", createdAt: old)
            let fresh = push("a", "fresh", createdAt: cutoff.addingTimeInterval(10))
            for p in [stale, pulled, elsewhere, fresh] { try await store(s, p) }
            try await s.recordPulls([
                PullRecord(repository: "a", digest: stale.record.digest, tag: nil, at: cutoff.addingTimeInterval(-1)),
                PullRecord(repository: "a", digest: pulled.record.digest, tag: nil, at: cutoff),
                PullRecord(repository: "b", digest: elsewhere.record.digest, tag: nil, at: cutoff.addingTimeInterval(100)),
            ])
            let all = [stale, pulled, elsewhere, fresh].map(\.record.digest) + [digest("unknown")]
            let used = try await s.manifestsUsed(since: cutoff, among: all)
            #expect(used == [pulled.record.digest, elsewhere.record.digest, fresh.record.digest])
            let none = try await s.manifestsUsed(since: cutoff, among: [])
            #expect(none.isEmpty)
        },
    ]
}
