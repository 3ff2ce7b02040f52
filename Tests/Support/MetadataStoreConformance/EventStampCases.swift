import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    /// Origin region and hybrid-logical-clock stamps on events (issue 13).
    static let eventStampCases: [Case] = [
        Case("event stamps: local events have no region and strictly increasing stamps near the wall clock") { s in
            let before = Int64(Date().timeIntervalSince1970 * 1000)
            try await image(s, "r", "m", tag: "t")
            try await link(s, "r", "a", "b", "c")
            let after = Int64(Date().timeIntervalSince1970 * 1000)
            let all = try await s.events(after: 0, limit: 100)
            #expect(all.count == 6)
            #expect(all.allSatisfy { $0.stamp.region == nil })
            let stamps = all.map { ($0.stamp.milliseconds, $0.stamp.logical) }
            #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
            #expect(all.allSatisfy { $0.stamp.milliseconds >= before && $0.stamp.milliseconds <= after + 1 })
        },
        Case("event stamps: a change applied from a peer keeps the peer's region and stamp; later local stamps follow it") { s in
            try await link(s, "r", "local-1")
            let ahead = EventStamp(region: "eu", milliseconds: Int64(Date().timeIntervalSince1970 * 1000) + 60_000, logical: 7)
            let origin = EventOrigin(actor: "replication:eu", address: "-", replicated: ahead)
            try await EventOrigin.$current.withValue(origin) {
                try await link(s, "r", "from-peer")
                try await store(s, push("r", "peer-manifest", tag: "pt", blobs: [digest("from-peer")]))
            }
            try await link(s, "r", "local-2")
            let all = try await s.events(after: 0, limit: 100)
            #expect(all.map(\.action) == [.blobPush, .blobPush, .manifestPush, .tagMove, .blobPush])
            // every event of the applied change carries the peer's stamp, so none is sent back as local
            #expect(all[1...3].allSatisfy { $0.stamp == ahead && $0.actor == "replication:eu" })
            #expect(all[0].stamp.region == nil && all[4].stamp.region == nil)
            // the clock moved up to the peer's stamp: the next local change is ordered after it
            let next = all[4].stamp
            #expect((next.milliseconds, next.logical) > (ahead.milliseconds, ahead.logical))
        },
        Case("event stamps: an older peer stamp is kept on its event and never moves the clock back") { s in
            try await link(s, "r", "local-1")
            let old = EventStamp(region: "ap", milliseconds: 1000, logical: 3)
            try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:ap", address: "-", replicated: old)) {
                try await link(s, "r", "from-peer")
            }
            try await link(s, "r", "local-2")
            let all = try await s.events(after: 0, limit: 100)
            #expect(all.count == 3)
            #expect(all[1].stamp == old)
            #expect((all[2].stamp.milliseconds, all[2].stamp.logical) > (all[0].stamp.milliseconds, all[0].stamp.logical))
        },
    ]
}
