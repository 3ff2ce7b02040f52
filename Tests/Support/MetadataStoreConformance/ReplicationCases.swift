import Foundation
import OCIModel
import RegistryStore
import Testing

func replica(_ location: String, credential: Data? = Data([1, 2, 3]), regionEndpoint: Bool = true) -> ReplicaRecord {
    ReplicaRecord(location: location, endpoint: "https://\(location).registry.example", sealedCredential: credential,
                  regionEndpointEnabled: regionEndpoint, createdAt: Date(timeIntervalSince1970: 1_700_000_000.5))
}

extension MetadataStoreConformance {
    static let replicationCases: [Case] = [
        Case("createReplica: stored as given, locations unique, listed by location") { s in
            let b = try await s.createReplica(replica("westeurope"))
            let a = try await s.createReplica(replica("southeastasia", credential: nil, regionEndpoint: false))
            var clash = replica("westeurope")
            clash.endpoint = "https://other.example"
            let again = try await s.createReplica(clash)
            #expect(a && b && !again)
            let all = try await s.replicas()
            #expect(all == [replica("southeastasia", credential: nil, regionEndpoint: false), replica("westeurope")])
            let one = try await s.replica(location: "westeurope")
            #expect(one == replica("westeurope"))
            let none = try await s.replica(location: "eastus")
            #expect(none == nil)
        },
        Case("updateReplica: changes only the given fields; a nil credential removes it; unknown is false") { s in
            _ = try await s.createReplica(replica("a"))
            let moved = try await s.updateReplica(location: "a", endpoint: "https://new.example", sealedCredential: nil, regionEndpointEnabled: nil)
            var expected = replica("a")
            expected.endpoint = "https://new.example"
            let afterMove = try await s.replica(location: "a")
            #expect(moved && afterMove == expected)
            _ = try await s.updateReplica(location: "a", endpoint: nil, sealedCredential: .some(Data([9])), regionEndpointEnabled: false)
            expected.sealedCredential = Data([9])
            expected.regionEndpointEnabled = false
            let afterSet = try await s.replica(location: "a")
            #expect(afterSet == expected)
            _ = try await s.updateReplica(location: "a", endpoint: nil, sealedCredential: .some(nil), regionEndpointEnabled: true)
            expected.sealedCredential = nil
            expected.regionEndpointEnabled = true
            let afterClear = try await s.replica(location: "a")
            #expect(afterClear == expected)
            let unknown = try await s.updateReplica(location: "b", endpoint: "https://x.example", sealedCredential: nil, regionEndpointEnabled: nil)
            let created = try await s.replica(location: "b")
            #expect(!unknown && created == nil)
        },
        Case("replica data endpoint: stored on create, set, kept by other updates, cleared back to nil") { s in
            var r = replica("a")
            r.dataEndpoint = "https://data.a.registry.example"
            _ = try await s.createReplica(r)
            _ = try await s.createReplica(replica("b"))
            let created = try await s.replica(location: "a")
            let plain = try await s.replica(location: "b")
            #expect(created == r && plain?.dataEndpoint == nil)
            _ = try await s.updateReplica(location: "a", endpoint: "https://moved.example", sealedCredential: nil, regionEndpointEnabled: nil)
            let kept = try await s.replica(location: "a")
            #expect(kept?.dataEndpoint == "https://data.a.registry.example" && kept?.endpoint == "https://moved.example")
            _ = try await s.updateReplica(location: "b", endpoint: nil, sealedCredential: nil, regionEndpointEnabled: nil,
                                          dataEndpoint: .some("https://data.b.example"))
            let set = try await s.replica(location: "b")
            #expect(set?.dataEndpoint == "https://data.b.example" && set?.endpoint == replica("b").endpoint)
            _ = try await s.updateReplica(location: "a", endpoint: nil, sealedCredential: nil, regionEndpointEnabled: nil, dataEndpoint: .some(nil))
            let cleared = try await s.replica(location: "a")
            #expect(cleared?.dataEndpoint == nil && cleared?.sealedCredential == r.sealedCredential)
            let unknown = try await s.updateReplica(location: "c", endpoint: nil, sealedCredential: nil, regionEndpointEnabled: nil,
                                                    dataEndpoint: .some("https://x.example"))
            #expect(!unknown)
        },
        Case("replica progress: a fenced write lands only while the lease still has the fence's token") { s in
            _ = try await s.createReplica(replica("a"))
            let first = try #require(try await s.acquireLease(name: "replication", holder: "n1", ttl: 60))
            let mine = ReplicaProgress(peerSequence: 10)
            #expect(try await s.recordReplicaProgress(location: "a", mine, fence: first.fence))
            // the lease changes hands (run out, taken by another node): the old holder's write is refused
            try await s.releaseLease(name: "replication", holder: "n1", token: first.token)
            let second = try #require(try await s.acquireLease(name: "replication", holder: "n2", ttl: 60))
            #expect(second.token > first.token)
            let successor = ReplicaProgress(peerSequence: 12, lastError: nil)
            #expect(try await s.recordReplicaProgress(location: "a", successor, fence: second.fence))
            let stale = try await s.recordReplicaProgress(location: "a", ReplicaProgress(peerSequence: 11, lastError: "old"),
                                                          fence: first.fence)
            #expect(!stale)
            await #expect(try s.replicaProgress(location: "a") == successor)
            // a lease never taken fences everything out; no fence is an unfenced write
            #expect(try await s.recordReplicaProgress(location: "a", mine, fence: LeaseFence(name: "never", token: 1)) == false)
            #expect(try await s.recordReplicaProgress(location: "a", mine, fence: nil))
            await #expect(try s.replicaProgress(location: "a") == mine)
        },
        Case("replica progress: empty at first, replaced whole, gone with the replica") { s in
            let before = try await s.replicaProgress(location: "a")
            let recordedForNone = try await s.recordReplicaProgress(location: "a", ReplicaProgress(bytesPending: 5))
            #expect(before == nil && !recordedForNone)
            _ = try await s.createReplica(replica("a"))
            _ = try await s.createReplica(replica("b"))
            let empty = try await s.replicaProgress(location: "a")
            #expect(empty == ReplicaProgress())
            let p = ReplicaProgress(peerSequence: 42, peerSequenceAt: Date(timeIntervalSince1970: 1_700_000_100.25),
                                    oldestPendingAt: Date(timeIntervalSince1970: 1_700_000_050.5), bytesPending: 1 << 40,
                                    lastError: "peer answered 503", lastErrorAt: Date(timeIntervalSince1970: 1_700_000_101))
            let recorded = try await s.recordReplicaProgress(location: "a", p)
            let stored = try await s.replicaProgress(location: "a")
            let other = try await s.replicaProgress(location: "b")
            #expect(recorded && stored == p && other == ReplicaProgress())
            _ = try await s.recordReplicaProgress(location: "a", ReplicaProgress(peerSequence: 43))
            let replaced = try await s.replicaProgress(location: "a")
            #expect(replaced == ReplicaProgress(peerSequence: 43))
            // progress is not part of the record: an update leaves it alone
            _ = try await s.updateReplica(location: "a", endpoint: "https://n.example", sealedCredential: nil, regionEndpointEnabled: nil)
            let kept = try await s.replicaProgress(location: "a")
            #expect(kept == ReplicaProgress(peerSequence: 43))
            let deleted = try await s.deleteReplica(location: "a")
            let deletedAgain = try await s.deleteReplica(location: "a")
            let gone = try await s.replicaProgress(location: "a")
            let left = try await s.replicas()
            #expect(deleted && !deletedAgain && gone == nil && left.map(\.location) == ["b"])
            // a replica created again under the location starts with empty progress
            _ = try await s.createReplica(replica("a"))
            let fresh = try await s.replicaProgress(location: "a")
            #expect(fresh == ReplicaProgress())
        },
        Case("registerWrites: a tag's moves and deletions, a lock's writes, newest first, before a sequence") { s in
            try await image(s, "r", "one", tag: "t")
            try await image(s, "r", "two", tag: "t")
            try await image(s, "r", "other", tag: "u")
            try await image(s, "q", "elsewhere", tag: "t")
            #expect(try await s.deleteTag(repository: "r", tag: "t"))
            let writes = try await s.registerWrites(repository: "r", key: .tag("t"), before: nil, limit: 10)
            #expect(writes.map(\.action) == [.tagDelete, .tagMove, .tagMove])
            #expect(writes.map(\.digest) == [digest("two").string, digest("two").string, digest("one").string])
            #expect(writes.allSatisfy { $0.repository == "r" && $0.tag == "t" })
            #expect(writes[0].sequence > writes[1].sequence && writes[1].sequence > writes[2].sequence)
            let before = try await s.registerWrites(repository: "r", key: .tag("t"), before: writes[0].sequence, limit: 1)
            #expect(before.map(\.sequence) == [writes[1].sequence])
            let none = try await s.registerWrites(repository: "r", key: .tag("absent"), before: nil, limit: 10)
            #expect(none.isEmpty)
            // locks: nil matches nil, so a repository's lock is not a tag's or a manifest's
            try await s.setLock(LockRecord(repository: "r", writeEnabled: false))
            try await s.setLock(LockRecord(repository: "r", tag: "u", deleteEnabled: false))
            try await s.setLock(LockRecord(repository: "r", digest: digest("other").string, readEnabled: false))
            let repoLock = try await s.registerWrites(repository: "r", key: .lock(tag: nil, digest: nil), before: nil, limit: 10)
            let tagLock = try await s.registerWrites(repository: "r", key: .lock(tag: "u", digest: nil), before: nil, limit: 10)
            let digestLock = try await s.registerWrites(repository: "r", key: .lock(tag: nil, digest: digest("other").string), before: nil, limit: 10)
            #expect(repoLock.count == 1 && repoLock[0].action == .lock && repoLock[0].tag == nil && repoLock[0].digest == nil)
            #expect(tagLock.count == 1 && tagLock[0].tag == "u")
            #expect(digestLock.count == 1 && digestLock[0].digest == digest("other").string)
            // a tag's register is not its lock's
            let uWrites = try await s.registerWrites(repository: "r", key: .tag("u"), before: nil, limit: 10)
            #expect(uWrites.map(\.action) == [.tagMove])
        },
        Case("registerWrites: a setting's writes carry its document's digest, newest first; other settings are not its") { s in
            let first = Data(#"{"enabled":true}"#.utf8), second = Data(#"{"enabled":false}"#.utf8)
            try await s.setSettingDocument("quarantine-policy", first)
            try await s.setSettingDocument("gc-policy", first)
            try await s.setSettingDocument("quarantine-policy", second)
            let writes = try await s.registerWrites(repository: "", key: .setting("quarantine-policy"), before: nil, limit: 10)
            #expect(writes.map(\.action) == [.setting, .setting])
            #expect(writes.map(\.digest) == [Digest.compute(Array(second)).string, Digest.compute(Array(first)).string])
            #expect(writes.allSatisfy { $0.detail == "quarantine-policy" && $0.repository.isEmpty })
            let before = try await s.registerWrites(repository: "", key: .setting("quarantine-policy"), before: writes[0].sequence, limit: 1)
            #expect(before.map(\.sequence) == [writes[1].sequence])
            #expect(try await s.registerWrites(repository: "", key: .setting("absent"), before: nil, limit: 10).isEmpty)
        },
        Case("access state writes append their access events in the same transaction; registerWrites finds a record's writes and tombstones") { s in
            let alice = AccessRecordChange(kind: "identity", name: "alice", digest: digest("alice-1").string)
            let token = AccessRecordChange(kind: "token", name: "ci", digest: digest("ci-1").string)
            #expect(try await s.storeAccessState(Data("one".utf8), expectedVersion: 0, audit: nil, changes: [alice, token]))
            // a lost compare-and-swap appends nothing
            let lost = AccessRecordChange(kind: "identity", name: "alice", digest: digest("lost").string)
            #expect(try await s.storeAccessState(Data("lost".utf8), expectedVersion: 0, audit: nil, changes: [lost]) == false)
            let peer = EventStamp(region: "westeurope", milliseconds: 1_700_000_000_123, logical: 2)
            let stored = try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:westeurope", address: "-", replicated: peer)) {
                try await s.storeAccessState(Data("two".utf8), expectedVersion: 1, audit: nil,
                                             changes: [AccessRecordChange(kind: "identity", name: "alice", digest: nil)])
            }
            #expect(stored)
            let events = try await s.events(after: 0, limit: 10)
            #expect(events.map(\.action) == [.access, .access, .access])
            #expect(events.map(\.detail) == ["identity:alice", "token:ci", "identity:alice"])
            #expect(events.map(\.digest) == [alice.digest, token.digest, nil])
            #expect(events.allSatisfy { $0.repository.isEmpty && $0.tag == nil })
            #expect(events[2].stamp == peer)
            let writes = try await s.registerWrites(repository: "", key: .access(kind: "identity", name: "alice"), before: nil, limit: 10)
            #expect(writes.map(\.sequence) == [events[2].sequence, events[0].sequence])
            #expect(writes.map(\.digest) == [nil, alice.digest])
            let before = try await s.registerWrites(repository: "", key: .access(kind: "identity", name: "alice"), before: writes[0].sequence, limit: 1)
            #expect(before.map(\.sequence) == [events[0].sequence])
            // kinds are apart: the token's register is not an identity of the same name
            #expect(try await s.registerWrites(repository: "", key: .access(kind: "identity", name: "ci"), before: nil, limit: 10).isEmpty)
            #expect(try await s.registerWrites(repository: "", key: .access(kind: "token", name: "ci"), before: nil, limit: 10).count == 1)
            // a write without changes appends no event
            #expect(try await s.storeAccessState(Data("three".utf8), expectedVersion: 2, audit: nil))
            await #expect(try s.latestEventSequence() == events[2].sequence)
        },
        Case("registerWrites: a tag's register leaves out tags that went with their manifest and counts marks as their writes") { s in
            let one = try await image(s, "r", "one", tag: "t")
            _ = try await deleteManifests(s, "r", [one.record.digest])
            // the tag went with its manifest: its register still holds the move
            let afterCascade = try await s.registerWrites(repository: "r", key: .tag("t"), before: nil, limit: 10)
            #expect(afterCascade.map(\.action) == [.tagMove])
            let peer = EventStamp(region: "westeurope", milliseconds: 1_700_000_000_123, logical: 2)
            try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:westeurope", address: "-", replicated: peer)) {
                try await s.appendRegisterMark(repository: "r", standingFor: .tagDelete, digest: nil, tag: "t")
                try await s.appendRegisterMark(repository: "r", standingFor: .manifestPush, digest: digest("two").string, tag: nil)
            }
            let writes = try await s.registerWrites(repository: "r", key: .tag("t"), before: nil, limit: 10)
            #expect(writes.map(\.action) == [.registerMark, .tagMove])
            #expect(writes[0].detail == EventAction.tagDelete.rawValue && writes[0].stamp == peer && writes[0].tag == "t")
            // a mark of a manifest's push is no write of any tag
            #expect(try await s.registerWrites(repository: "r", key: .tag("absent"), before: nil, limit: 10).isEmpty)
        },
        Case("registerWrites: a manifest's presence is ordered by stamp, with its tag moves and marks; its deletions apart") { s in
            let one = try await image(s, "r", "one", tag: "t")
            let d = one.record.digest.string
            // a peer's older deletion, recorded after the local push and tag move
            let older = EventStamp(region: "westeurope", milliseconds: 1_000, logical: 0)
            try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:westeurope", address: "-", replicated: older)) {
                try await s.appendRegisterMark(repository: "r", standingFor: .manifestDelete, digest: d, tag: nil)
            }
            let presence = try await s.registerWrites(repository: "r", key: .manifest(d), before: nil, limit: 10)
            #expect(presence.map(\.action) == [.tagMove, .manifestPush, .registerMark])
            #expect(presence.last?.stamp == older && presence.last?.detail == EventAction.manifestDelete.rawValue)
            let deletions = try await s.registerWrites(repository: "r", key: .manifestDeletion(d), before: nil, limit: 10)
            #expect(deletions.map(\.action) == [.registerMark])
            // a newer peer push mark comes first; a local deletion after it is newer still
            let newer = EventStamp(region: "eastus", milliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 60_000, logical: 0)
            try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:eastus", address: "-", replicated: newer)) {
                try await s.appendRegisterMark(repository: "r", standingFor: .manifestPush, digest: d, tag: nil)
            }
            #expect(try await s.registerWrites(repository: "r", key: .manifest(d), before: nil, limit: 1).first?.stamp == newer)
            _ = try await deleteManifests(s, "r", [one.record.digest])
            let now = try await s.registerWrites(repository: "r", key: .manifest(d), before: nil, limit: 1)
            #expect(now.map(\.action) == [.manifestDelete])
            #expect(now.first.map { ($0.stamp.milliseconds, $0.stamp.logical) > (newer.milliseconds, newer.logical) } == true)
            let allDeletions = try await s.registerWrites(repository: "r", key: .manifestDeletion(d), before: nil, limit: 10)
            #expect(allDeletions.map(\.action) == [.manifestDelete, .registerMark])
            // another digest's presence is not this one's
            #expect(try await s.registerWrites(repository: "r", key: .manifest(digest("absent").string), before: nil, limit: 10).isEmpty)
        },
        Case("registerWrites: a manifest's pushes, tag moves, restores and deletions by digest, newest first; not another's") { s in
            let one = try await image(s, "r", "one", tag: "t")
            _ = try await image(s, "r", "two")
            _ = try await image(s, "q", "one")
            _ = try await deleteManifests(s, "r", [one.record.digest], softDeleteUntil: Date().addingTimeInterval(3600))
            try await restore(s, "r", one.record.digest)
            _ = try await deleteManifests(s, "r", [one.record.digest])
            let writes = try await s.registerWrites(repository: "r", key: .manifest(one.record.digest.string), before: nil, limit: 10)
            #expect(writes.map(\.action) == [.manifestDelete, .restore, .manifestDelete, .tagMove, .manifestPush])
            #expect(writes.allSatisfy { $0.repository == "r" && $0.digest == one.record.digest.string })
            let newest = try await s.registerWrites(repository: "r", key: .manifest(one.record.digest.string), before: nil, limit: 1)
            #expect(newest.map(\.sequence) == [writes[0].sequence])
            let before = try await s.registerWrites(repository: "r", key: .manifest(one.record.digest.string), before: writes[2].sequence, limit: 10)
            #expect(before.map(\.action) == [.tagMove, .manifestPush])
            let elsewhere = try await s.registerWrites(repository: "q", key: .manifest(one.record.digest.string), before: nil, limit: 10)
            #expect(elsewhere.map(\.action) == [.manifestPush])
            #expect(try await s.registerWrites(repository: "r", key: .manifest(digest("absent").string), before: nil, limit: 10).isEmpty)
        },
        Case("replication conflicts: recorded once per loser, listed newest first, by location") { s in
            let loser = EventStamp(region: "westeurope", milliseconds: 1_700_000_000_123, logical: 4)
            let winner = EventStamp(region: "southeastasia", milliseconds: 1_700_000_000_500, logical: 0)
            let c1 = ReplicationConflict(location: "westeurope", kind: "tag", repository: "r", key: "t", loserValue: digest("a").string,
                                         loserStamp: loser, winnerValue: digest("b").string, winnerStamp: winner,
                                         recordedAt: Date(timeIntervalSince1970: 1_700_000_001.5))
            let c2 = ReplicationConflict(location: "eastus", kind: "manifest-delete", repository: "r", key: digest("a").string,
                                         loserValue: "tombstone", loserStamp: winner, winnerValue: nil, winnerStamp: nil,
                                         recordedAt: Date(timeIntervalSince1970: 1_700_000_002))
            let first = try await s.recordReplicationConflict(c1)
            let again = try await s.recordReplicationConflict(c1)
            let second = try await s.recordReplicationConflict(c2)
            #expect(first && !again && second)
            let all = try await s.replicationConflicts(location: nil, limit: 10)
            #expect(all.count == 2 && all[0].id > all[1].id)
            var stored1 = c1
            stored1.id = all[1].id
            var stored2 = c2
            stored2.id = all[0].id
            #expect(all == [stored2, stored1])
            let west = try await s.replicationConflicts(location: "westeurope", limit: 10)
            #expect(west == [stored1])
            let limited = try await s.replicationConflicts(location: nil, limit: 1)
            #expect(limited == [stored2])
            let unknown = try await s.replicationConflicts(location: "nowhere", limit: 10)
            #expect(unknown.isEmpty)
        },
    ]
}
