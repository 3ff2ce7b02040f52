import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    /// A time to live of 0 makes a pin or marker that has run out already: no case waits for a clock.
    static let sharedStateCases: [Case] = [
        Case("loginFailures: keys with enough failures since a time, oldest first, the newest `limit`; prune forgets") { s in
            let t0 = Date(timeIntervalSince1970: 1_000_000)
            for i in 0..<5 { try await s.recordLoginFailures(keys: ["k1", "k2"], at: t0.addingTimeInterval(Double(i))) }
            try await s.recordLoginFailures(keys: ["k1"], at: t0.addingTimeInterval(10))
            try await s.recordLoginFailures(keys: ["old", "old"], at: t0.addingTimeInterval(-100))
            try await s.recordLoginFailures(keys: [], at: t0)
            let atLeastSix = try await s.loginFailures(since: t0, atLeast: 6, limit: 10)
            #expect(atLeastSix == ["k1": [0, 1, 2, 3, 4, 10].map { t0.addingTimeInterval($0) }])
            let newestTwo = try await s.loginFailures(since: t0, atLeast: 5, limit: 2)
            #expect(newestTwo == ["k1": [t0.addingTimeInterval(4), t0.addingTimeInterval(10)],
                                  "k2": [t0.addingTimeInterval(3), t0.addingTimeInterval(4)]])
            let later = try await s.loginFailures(since: t0.addingTimeInterval(3), atLeast: 2, limit: 10)
            #expect(later == ["k1": [3, 4, 10].map { t0.addingTimeInterval($0) }, "k2": [3, 4].map { t0.addingTimeInterval($0) }])
            let all = try await s.loginFailures(since: past, atLeast: 1, limit: 100)
            #expect(all["old"]?.count == 2 && all.count == 3)
            try await s.pruneLoginFailures(before: t0.addingTimeInterval(4))
            let pruned = try await s.loginFailures(since: past, atLeast: 1, limit: 100)
            #expect(pruned == ["k1": [t0.addingTimeInterval(4), t0.addingTimeInterval(10)], "k2": [t0.addingTimeInterval(4)]])
        },
        Case("recordLoginFailures: failures recorded at once by many callers all count") { s in
            let at = Date()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 { group.addTask { try await s.recordLoginFailures(keys: ["k"], at: at) } }
                try await group.waitForAll()
            }
            let counted = try await s.loginFailures(since: at, atLeast: 8, limit: 100)
            #expect(counted["k"]?.count == 8)
        },
        Case("pinBlob: a live pin refuses removeUnpinnedBlob and markOrphanDeletion; unpinning frees the digest") { s in
            try await link(s, "r", "x")
            _ = try await s.unlinkBlob(repository: "r", digest: digest("x"))
            let x = digest("x").string, y = digest("y").string
            let pinned = try await s.pinBlob(x, holder: "push-1", ttl: 60)
            let pinnedAgain = try await s.pinBlob(x, holder: "push-2", ttl: 60)
            let refused = try await s.removeUnpinnedBlob(x, before: future, deleter: "gc", ttl: 60)
            #expect(pinned && pinnedAgain && refused == nil)
            let kept = try await s.hasBlobRecord(x)
            #expect(kept)
            try await s.unpinBlob(x, holder: "push-1")
            let stillPinned = try await s.removeUnpinnedBlob(x, before: future, deleter: "gc", ttl: 60)
            #expect(stillPinned == nil, "another holder's pin still holds")
            try await s.unpinBlob(x, holder: "push-2")
            let removed = try await s.removeUnpinnedBlob(x, before: future, deleter: "gc", ttl: 60)
            #expect(removed.map(describe) == "\(x) 1")
            // bytes no record names
            let yPinned = try await s.pinBlob(y, holder: "push-3", ttl: 60)
            let orphanRefused = try await s.markOrphanDeletion(y, deleter: "gc", ttl: 60)
            try await s.unpinBlob(y, holder: "push-3")
            let orphanMarked = try await s.markOrphanDeletion(y, deleter: "gc", ttl: 60)
            #expect(yPinned && !orphanRefused && orphanMarked)
        },
        Case("removeUnpinnedBlob/markOrphanDeletion: the deletion marker refuses pins until its deleter clears it") { s in
            try await link(s, "r", "x", "y")
            _ = try await s.unlinkBlob(repository: "r", digest: digest("x"))
            let x = digest("x").string, y = digest("y").string, z = digest("z").string
            let removed = try await s.removeUnpinnedBlob(x, before: future, deleter: "gc", ttl: 60)
            let refused = try await s.pinBlob(x, holder: "push", ttl: 60)
            try await s.clearBlobDeletion(x, deleter: "someone-else")
            let stillRefused = try await s.pinBlob(x, holder: "push", ttl: 60)
            try await s.clearBlobDeletion(x, deleter: "gc")
            let pinned = try await s.pinBlob(x, holder: "push", ttl: 60)
            #expect(removed != nil && !refused && !stillRefused && pinned)
            // a linked (recorded) digest is not an orphan; one without a record is
            let recorded = try await s.markOrphanDeletion(y, deleter: "gc", ttl: 60)
            let orphan = try await s.markOrphanDeletion(z, deleter: "gc", ttl: 60)
            let zRefused = try await s.pinBlob(z, holder: "push", ttl: 60)
            try await s.clearBlobDeletion(z, deleter: "gc")
            let zPinned = try await s.pinBlob(z, holder: "push", ttl: 60)
            #expect(!recorded && orphan && !zRefused && zPinned)
            // an inline blob has no bytes to delete: no marker
            try await link(s, "r", "i", inline: true)
            _ = try await s.unlinkBlob(repository: "r", digest: digest("i"))
            let inline = try await s.removeUnpinnedBlob(digest("i").string, before: future, deleter: "gc", ttl: 60)
            let inlinePinned = try await s.pinBlob(digest("i").string, holder: "push", ttl: 60)
            #expect(inline?.inline == true && inlinePinned)
        },
        Case("a deletion marker is not taken over by another collection run until it runs out") { s in
            // Run 1 removed x's record and is deleting its bytes; run 2 finds the bytes without a
            // record. Taking the marker over would let run 2 clear it while run 1's delete is still
            // to come, and a push re-storing x in between would lose its bytes.
            try await link(s, "r", "x")
            _ = try await s.unlinkBlob(repository: "r", digest: digest("x"))
            let x = digest("x").string
            let removed = try await s.removeUnpinnedBlob(x, before: future, deleter: "run-1", ttl: 60)
            let takenOver = try await s.markOrphanDeletion(x, deleter: "run-2", ttl: 60)
            try await s.clearBlobDeletion(x, deleter: "run-2")
            let pinWhileRun1Deletes = try await s.pinBlob(x, holder: "push", ttl: 60)
            #expect(removed != nil && !takenOver && !pinWhileRun1Deletes)
            // a record removal is refused too while another run's marker stands
            try await link(s, "r", "x")
            _ = try await s.unlinkBlob(repository: "r", digest: digest("x"))
            let secondRemoval = try await s.removeUnpinnedBlob(x, before: future, deleter: "run-2", ttl: 60)
            #expect(secondRemoval == nil)
            try await s.clearBlobDeletion(x, deleter: "run-1")
            // a marker that ran out is no one's: another run may mark
            try await link(s, "r", "w")
            _ = try await s.unlinkBlob(repository: "r", digest: digest("w"))
            let w = digest("w").string
            _ = try await s.removeUnpinnedBlob(w, before: future, deleter: "dead-run", ttl: 0)
            let afterExpiry = try await s.markOrphanDeletion(w, deleter: "run-3", ttl: 60)
            #expect(afterExpiry)
        },
        Case("pinBlob racing removeUnpinnedBlob: never both (the push would link bytes being deleted)") { s in
            for i in 0..<6 {
                try await link(s, "r", "race-\(i)")
                _ = try await s.unlinkBlob(repository: "r", digest: digest("race-\(i)"))
                let d = digest("race-\(i)").string
                async let pinned = s.pinBlob(d, holder: "push", ttl: 60)
                async let removed = s.removeUnpinnedBlob(d, before: future, deleter: "gc", ttl: 60)
                let (p, r) = try await (pinned, removed)
                #expect(p != (r != nil), "round \(i): pinned \(p), removed \(r != nil)")
            }
        },
        Case("pins and deletion markers that ran out block nothing") { s in
            try await link(s, "r", "x")
            _ = try await s.unlinkBlob(repository: "r", digest: digest("x"))
            let x = digest("x").string
            let deadPin = try await s.pinBlob(x, holder: "dead-node", ttl: 0)
            let removed = try await s.removeUnpinnedBlob(x, before: future, deleter: "dead-gc", ttl: 0)
            let pinned = try await s.pinBlob(x, holder: "push", ttl: 60)
            #expect(deadPin && removed != nil && pinned)
            let orphanRefused = try await s.markOrphanDeletion(x, deleter: "gc", ttl: 60)
            try await s.pruneCollectionGuards(touchedBefore: past)
            let stillRefused = try await s.markOrphanDeletion(x, deleter: "gc", ttl: 60)
            #expect(!orphanRefused && !stillRefused, "pruning keeps live pins")
            try await s.unpinBlob(x, holder: "push")
            let orphan = try await s.markOrphanDeletion(x, deleter: "gc", ttl: 0)
            try await s.pruneCollectionGuards(touchedBefore: past)
            let afterPrune = try await s.pinBlob(x, holder: "push", ttl: 60)
            #expect(orphan && afterPrune)
        },
        Case("touchLink: removeUntouchedLink keeps a link touched since the time, removes one touched before; prune forgets") { s in
            try await link(s, "r", "t")
            try await link(s, "r2", "t")
            try await link(s, "r3", "t")
            let t = digest("t").string
            let now = Date()
            try await s.touchLink(repository: "r", digest: t, at: now)
            try await s.touchLink(repository: "r", digest: t, at: now.addingTimeInterval(-100))  // the latest touch is kept
            let kept = try await s.removeUntouchedLink(repository: "r", digest: t, before: future, touchedSince: now.addingTimeInterval(-10))
            let untouched = try await s.removeUntouchedLink(repository: "r2", digest: t, before: future, touchedSince: past)
            #expect(!kept && untouched)
            let stale = try await s.removeUntouchedLink(repository: "r", digest: t, before: future, touchedSince: now.addingTimeInterval(10))
            #expect(stale)
            try await s.touchLink(repository: "r3", digest: t, at: now)
            try await s.pruneCollectionGuards(touchedBefore: now.addingTimeInterval(1))
            let forgotten = try await s.removeUntouchedLink(repository: "r3", digest: t, before: future, touchedSince: past)
            #expect(forgotten)
            // still only unreferenced links, linked before the cutoff
            let p = try await image(s, "r4", "m")
            let layer = try #require(p.blobs.first)
            let referenced = try await s.removeUntouchedLink(repository: "r4", digest: layer.string, before: future, touchedSince: future)
            try await link(s, "r5", "young")
            let young = try await s.removeUntouchedLink(repository: "r5", digest: digest("young").string, before: past, touchedSince: future)
            #expect(!referenced && !young)
        },
    ]
}
