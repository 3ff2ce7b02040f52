import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static func importJob(_ id: String, state: String = "running", created: Double = 0, updated: Double = 0,
                          document: String = #"{"n":1}"#) -> ImportJobRecord {
        let t = Date(timeIntervalSince1970: 1_700_000_000)
        return ImportJobRecord(id: id, owner: "identity:alice", image: "mirror/app:v1", state: state, document: Data(document.utf8),
                               node: "node-a", createdAt: t.addingTimeInterval(created), updatedAt: t.addingTimeInterval(updated))
    }

    static let importJobCases: [Case] = [
        Case("import jobs: stored as given, progress replaces a running job, a finished one is never written again, no event") { s in
            await #expect(try s.importJob(id: "j1") == nil)
            #expect(try await s.saveImportJob(importJob("j1")))
            await #expect(try s.importJob(id: "j1") == importJob("j1"))
            // progress of the running job, from another node: replaced (owner, image and creation stay)
            var progress = importJob("j1", updated: 5, document: #"{"n":2}"#)
            progress.node = "node-b"
            progress.owner = "identity:mallory"
            #expect(try await s.saveImportJob(progress))
            let stored = try #require(try await s.importJob(id: "j1"))
            #expect(stored.document == Data(#"{"n":2}"#.utf8) && stored.node == "node-b" && stored.owner == "identity:alice")
            #expect(stored.updatedAt == progress.updatedAt && stored.createdAt == progress.createdAt)
            // finished: a late progress write cannot make it run again
            #expect(try await s.saveImportJob(importJob("j1", state: "succeeded", updated: 6, document: #"{"done":true}"#)))
            #expect(try await s.saveImportJob(importJob("j1", updated: 7, document: #"{"n":3}"#)) == false)
            let done = try #require(try await s.importJob(id: "j1"))
            #expect(done.state == "succeeded" && !done.running && done.document == Data(#"{"done":true}"#.utf8))
            // hostile ids and documents are data
            let odd = importJob("'; DROP TABLE import_jobs; --", document: String(repeating: "\u{0}é", count: 1000))
            #expect(try await s.saveImportJob(odd))
            await #expect(try s.importJob(id: odd.id) == odd)
            await #expect(try s.latestEventSequence() == 0)
        },
        Case("import jobs: pruning keeps the newest finished ones and running ones, and drops stale ones") { s in
            for i in 0..<5 {
                _ = try await s.saveImportJob(importJob("done\(i)", state: i % 2 == 0 ? "succeeded" : "failed", created: Double(i), updated: 100))
            }
            _ = try await s.saveImportJob(importJob("run-old", created: -10, updated: 100))
            _ = try await s.saveImportJob(importJob("run-stale", created: 1, updated: 10))
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            #expect(try await s.pruneImportJobs(keep: 2, staleBefore: t.addingTimeInterval(50)) == 4)   // done0-2, run-stale
            for (id, kept) in [("done4", true), ("done3", true), ("done2", false), ("done0", false), ("run-old", true), ("run-stale", false)] {
                let found = try await s.importJob(id: id) != nil
                #expect(found == kept, "\(id)")
            }
            #expect(try await s.pruneImportJobs(keep: 2, staleBefore: t) == 0)
        },
    ]
}
