import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let repositoryCases: [Case] = [
        Case("repositoryExists: unknown until something is written, then known") { s in
            await #expect(try s.repositoryExists("r") == false)
            try await link(s, "r", "b")
            await #expect(try s.repositoryExists("r"))
            await #expect(try s.repositoryExists("r/sub") == false)
            await #expect(try s.repositoryExists("R") == false)
        },
        Case("repositories: lexical order, after/limit pagination, empty store") { s in
            await #expect(try s.repositories(after: nil, limit: 10) == [])
            for r in ["z", "m/n", "a", "m", "a/b"] { try await store(s, push(r, "x")) }
            await #expect(try s.repositories(after: nil, limit: 10) == ["a", "a/b", "m", "m/n", "z"])
            await #expect(try s.repositories(after: nil, limit: 2) == ["a", "a/b"])
            await #expect(try s.repositories(after: "a/b", limit: 2) == ["m", "m/n"])
            await #expect(try s.repositories(after: "m/n", limit: 10) == ["z"])
            await #expect(try s.repositories(after: "z", limit: 10) == [])
            // `after` need not be a repository: the listing continues at the next name
            await #expect(try s.repositories(after: "b", limit: 10) == ["m", "m/n", "z"])
        },
        Case("repositories: a repository whose content was all deleted is not listed") { s in
            let p = try await image(s, "gone", "m", tag: "t")
            try await store(s, push("kept", "k"))
            try await deleteManifests(s, "gone", [p.record.digest])
            _ = try await s.applyLifecycle(repository: "gone", softDeleteUntil: nil) { _ in
                var c = LifecycleChange()
                c.unlinkAllBlobs = true
                return c
            }
            await #expect(try s.repositories(after: nil, limit: 10) == ["kept"])
            await #expect(try s.repositorySummaries(named: nil).map(\.name) == ["kept"])
        },
        Case("repositories: a repository holding only blob links is listed") { s in
            try await link(s, "blobs-only", "b")
            await #expect(try s.repositories(after: nil, limit: 10) == ["blobs-only"])
        },
        Case("checkHealth: a fresh store is healthy") { s in
            try await s.checkHealth()
        },
    ]

    static let blobCases: [Case] = [
        Case("linkBlob/linkedBlobSize: links are scoped to their repository") { s in
            let b = digest("blob")
            await #expect(try s.linkedBlobSize(repository: "a", digest: b) == nil)
            try await s.linkBlob(repository: "a", digest: b, size: 4, inline: nil)
            await #expect(try s.linkedBlobSize(repository: "a", digest: b) == 4)
            await #expect(try s.linkedBlobSize(repository: "b", digest: b) == nil)
            await #expect(try s.linkedBlobSize(repository: "unknown", digest: b) == nil)
            await #expect(try s.linkedBlobSize(repository: "a", digest: digest("other")) == nil)
        },
        Case("blobSize: a blob held by any repository, nil for unknown digests") { s in
            await #expect(try s.blobSize(digest("blob")) == nil)
            try await s.linkBlob(repository: "a", digest: digest("blob"), size: 1234, inline: nil)
            await #expect(try s.blobSize(digest("blob")) == 1234)
            await #expect(try s.blobSize(digest("other")) == nil)
        },
        Case("inlineContent: inline bytes, nil for blob-store blobs and unknown digests, manifests are inline") { s in
            try await s.linkBlob(repository: "a", digest: digest("small"), size: 5, inline: Array("small".utf8))
            try await s.linkBlob(repository: "a", digest: digest("large"), size: 5, inline: nil)
            await #expect(try s.inlineContent(digest("small")) == Array("small".utf8))
            await #expect(try s.inlineContent(digest("large")) == nil)
            await #expect(try s.inlineContent(digest("unknown")) == nil)
            let p = push("a", "manifest-bytes")
            try await store(s, p)
            await #expect(try s.inlineContent(p.record.digest) == p.bytes)
            // an empty inline blob is inline, not absent
            try await s.linkBlob(repository: "a", digest: digest(""), size: 0, inline: [])
            await #expect(try s.inlineContent(digest("")) == [])
        },
        Case("linkBlob: linking again is idempotent and appends no second event") { s in
            let b = digest("blob")
            var acts = try await actions(s) { try await s.linkBlob(repository: "r", digest: b, size: 4, inline: nil) }
            #expect(acts == [EventAction.blobPush])
            acts = try await actions(s) { try await s.linkBlob(repository: "r", digest: b, size: 4, inline: nil) }
            #expect(acts == [])
            await #expect(try s.linkedBlobSize(repository: "r", digest: b) == 4)
            // the same digest in a second repository is one stored blob with two links
            acts = try await actions(s) { try await s.linkBlob(repository: "r2", digest: b, size: 4, inline: nil) }
            #expect(acts == [EventAction.blobPush])
            await #expect(try s.storedBytes() == 4)
            let e = try await #require(try s.events(after: 0, limit: 10).first)
            #expect(e.repository == "r")
            #expect(e.digest == b.string)
            #expect(e.size == 4)
        },
        Case("linkBlob/mountBlob: a link made again counts from then (a re-pushed blob's grace period restarts)") { s in
            func pause() async throws { try await Task.sleep(for: .milliseconds(20)) }
            try await s.linkBlob(repository: "r", digest: digest("b"), size: 1, inline: nil)
            try await s.linkBlob(repository: "from", digest: digest("m"), size: 1, inline: nil)
            _ = try await s.mountBlob(repository: "r", from: "from", digest: digest("m"))
            try await pause()
            let cutoff = Date()
            try await pause()
            try await s.linkBlob(repository: "r", digest: digest("b"), size: 1, inline: nil)
            _ = try await s.mountBlob(repository: "r", from: "from", digest: digest("m"))
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("b").string, before: cutoff) == false)
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("m").string, before: cutoff) == false)
            // the link's time is the only thing that kept them
            let later = Date().addingTimeInterval(1)
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("b").string, before: later))
            #expect(try await s.removeUnreferencedLink(repository: "r", digest: digest("m").string, before: later))
        },
        Case("mountBlob: from an unknown repository or one not holding the blob links nothing") { s in
            let b = digest("blob")
            try await s.linkBlob(repository: "a", digest: b, size: 4, inline: nil)
            let mark = try await s.latestEventSequence()
            #expect(try await s.mountBlob(repository: "b", from: "unknown", digest: b) == nil)
            #expect(try await s.mountBlob(repository: "b", from: "a", digest: digest("other")) == nil)
            // holding the digest elsewhere is not enough: the source must link it
            try await s.linkBlob(repository: "c", digest: digest("c-only"), size: 6, inline: nil)
            let mark2 = try await s.latestEventSequence()
            #expect(try await s.mountBlob(repository: "b", from: "a", digest: digest("c-only")) == nil)
            await #expect(try s.linkedBlobSize(repository: "b", digest: b) == nil)
            await #expect(try s.repositoryExists("b") == false)
            await #expect(try events(s, after: mark2).isEmpty)
            await #expect(try events(s, after: mark).count == 1) // only c's link
        },
        Case("mountBlob: links the blob, returns its size, once") { s in
            let b = digest("blob")
            try await s.linkBlob(repository: "a", digest: b, size: 4, inline: nil)
            let mark = try await s.latestEventSequence()
            #expect(try await s.mountBlob(repository: "b", from: "a", digest: b) == 4)
            await #expect(try s.linkedBlobSize(repository: "b", digest: b) == 4)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.blobPush])
            #expect(e.first?.repository == "b")
            #expect(e.first?.detail == "mounted from a")
            // mounting again returns the size and appends nothing
            #expect(try await s.mountBlob(repository: "b", from: "a", digest: b) == 4)
            await #expect(try events(s, after: mark).count == 1)
        },
        Case("unlinkBlob: removes the link only, once; unknown repository or digest is false") { s in
            let b = digest("blob")
            try await s.linkBlob(repository: "a", digest: b, size: 4, inline: nil)
            try await s.linkBlob(repository: "b", digest: b, size: 4, inline: nil)
            #expect(try await s.unlinkBlob(repository: "unknown", digest: b) == false)
            #expect(try await s.unlinkBlob(repository: "a", digest: digest("other")) == false)
            var unlinked = false
            var acts = try await actions(s) { unlinked = try await s.unlinkBlob(repository: "a", digest: b) }
            #expect(unlinked)
            #expect(acts == [EventAction.blobDelete])
            await #expect(try s.linkedBlobSize(repository: "a", digest: b) == nil)
            await #expect(try s.linkedBlobSize(repository: "b", digest: b) == 4)
            await #expect(try s.blobSize(b) == 4) // the stored blob stays for garbage collection
            acts = try await actions(s) { unlinked = try await s.unlinkBlob(repository: "a", digest: b) }
            #expect(unlinked == false)
            #expect(acts == [])
        },
        Case("storedBytes: the sum over distinct stored digests") { s in
            await #expect(try s.storedBytes() == 0)
            try await s.linkBlob(repository: "a", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "b", digest: digest("x"), size: 100, inline: nil)
            try await s.linkBlob(repository: "b", digest: digest("y"), size: 20, inline: nil)
            await #expect(try s.storedBytes() == 120)
            let p = push("a", "manifest")
            try await store(s, p)
            try await store(s, push("b", "manifest"))
            await #expect(try s.storedBytes() == 120 + p.record.size)
        },
    ]
}
