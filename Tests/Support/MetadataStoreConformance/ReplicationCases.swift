import Foundation
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
    ]
}
