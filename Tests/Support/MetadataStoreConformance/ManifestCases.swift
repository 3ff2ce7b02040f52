import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let manifestCases: [Case] = [
        Case("putManifest: blobs not linked into the repository are reported sorted, and nothing is stored") { s in
            let config = digest("config"), l1 = digest("layer1"), l2 = digest("layer2")
            try await s.linkBlob(repository: "r", digest: config, size: 6, inline: nil)
            // linked in another repository does not count
            try await s.linkBlob(repository: "other", digest: l1, size: 6, inline: nil)
            let p = push("r", "m", tag: "t", blobs: [l2, config, l1, l2])
            let mark = try await s.latestEventSequence()
            #expect(try await s.putManifest(p) == .missing([l1, l2].sorted()))
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) == nil)
            await #expect(try s.tagTarget(repository: "r", tag: "t") == nil)
            await #expect(try s.inlineContent(p.record.digest) == nil)
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == [])
            await #expect(try events(s, after: mark).isEmpty)
        },
        Case("putManifest: a refused push to a new repository leaves the repository unknown") { s in
            let result = try await s.putManifest(push("new", "m", tag: "t", blobs: [digest("absent")]))
            #expect(result == .missing([digest("absent")]))
            await #expect(try s.repositoryExists("new") == false)
            await #expect(try s.tags(repository: "new", after: nil, limit: 10) == nil)
            await #expect(try s.repositoryGraph("new")?.repository == nil)
            // an index with absent children as well
            let indexResult = try await s.putManifest(push("new", "index", children: [digest("absent-child")]))
            #expect(indexResult == .missing([digest("absent-child")]))
            await #expect(try s.repositoryExists("new") == false)
        },
        Case("putManifest: an index whose children are not in the repository is refused") { s in
            let child = try await image(s, "r", "child")
            let elsewhere = try await image(s, "other", "elsewhere")
            let index = push("r", "index", tag: "t", children: [child.record.digest, elsewhere.record.digest, digest("absent")])
            let mark = try await s.latestEventSequence()
            #expect(try await s.putManifest(index) == .missing([elsewhere.record.digest, digest("absent")].sorted()))
            await #expect(try s.manifest(repository: "r", digest: index.record.digest) == nil)
            await #expect(try s.parents(repository: "r", child: child.record.digest) == [])
            await #expect(try events(s, after: mark).isEmpty)
        },
        Case("putManifest: the record is stored as pushed, with its bytes inline and push + tag.move events") { s in
            try await link(s, "r", "config", "layer")
            let created = Date(timeIntervalSince1970: 1_700_000_000.25)
            var p = push("r", "m", tag: "v1", blobs: [digest("config"), digest("layer")], subject: digest("some-subject"),
                         artifactType: "application/vnd.example", createdAt: created)
            p.record.annotations = ["org.opencontainers.image.title": "x", "k": "v"]
            let mark = try await s.latestEventSequence()
            #expect(try await s.putManifest(p) == .stored(previousTagTarget: nil))
            let m = try await #require(try s.manifest(repository: "r", digest: p.record.digest))
            #expect(m.digest == p.record.digest)
            #expect(m.mediaType == MediaType.ociManifest)
            #expect(m.size == p.record.size)
            #expect(m.artifactType == "application/vnd.example")
            #expect(m.subject == digest("some-subject"))
            #expect(m.annotations == ["org.opencontainers.image.title": "x", "k": "v"])
            #expect(abs(m.createdAt.timeIntervalSince(created)) < 0.001)
            #expect(m.quarantineState == nil)
            #expect(m.quarantineReason == nil)
            await #expect(try s.inlineContent(p.record.digest) == p.bytes)
            await #expect(try s.blobSize(p.record.digest) == p.record.size)
            await #expect(try s.tagTarget(repository: "r", tag: "v1") == p.record.digest)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.manifestPush, EventAction.tagMove])
            #expect(e.map(\.digest) == [p.record.digest.string, p.record.digest.string])
            #expect(e.map(\.tag) == ["v1", "v1"])
            #expect(e.map(\.mediaType) == [MediaType.ociManifest, MediaType.ociManifest])
            #expect(e.map(\.size) == [p.record.size, p.record.size])
            #expect(e.allSatisfy { $0.repository == "r" })
            #expect(e.last?.detail == nil)
        },
        Case("putManifest: a manifest without annotations, artifact type or subject reads back without them") { s in
            var p = push("r", "plain")
            p.record.annotations = nil
            try await store(s, p)
            let m = try await #require(try s.manifest(repository: "r", digest: p.record.digest))
            #expect(m.annotations == nil)
            #expect(m.artifactType == nil)
            #expect(m.subject == nil)
        },
        Case("putManifest: pushing the same manifest again is idempotent (a mark of the write only); a new tag appends only its tag.move") { s in
            let first = push("r", "m", tag: "a", createdAt: Date(timeIntervalSince1970: 1_000_000))
            try await store(s, first)
            var again = push("r", "m", tag: "a", createdAt: Date(timeIntervalSince1970: 2_000_000))
            var result: ManifestPushResult?
            again.expectedTagTarget = first.record.digest
            var acts = try await actions(s) { result = try await s.putManifest(again) }
            #expect(result == .stored(previousTagTarget: nil))
            #expect(acts == [.registerMark])
            // the tag it names points here already: a mark of that tag's write (its own stamp, so
            // a peer's concurrent move stamped before it loses to it), which counts in the tag's register
            let mark = try await s.events(after: 0, limit: 100).last
            #expect(mark?.detail == EventAction.tagMove.rawValue && mark?.digest == first.record.digest.string && mark?.tag == "a")
            let register = try await s.registerWrites(repository: "r", key: .tag("a"), before: nil, limit: 10)
            #expect(register.map(\.action) == [.registerMark, .tagMove] && register.first?.sequence == mark?.sequence)
            // and, as any tag move to it, in the manifest's presence
            let presenceWrites = try await s.registerWrites(repository: "r", key: .manifest(first.record.digest.string), before: nil, limit: 10)
            #expect(presenceWrites.first?.sequence == mark?.sequence)
            // a peer's write applied here appends no mark of its own
            let peer = EventStamp(region: "westeurope", milliseconds: 1_000, logical: 0)
            acts = try await actions(s) {
                try await EventOrigin.$current.withValue(EventOrigin(actor: "replication:westeurope", address: "-", replicated: peer)) {
                    result = try await s.putManifest(again)
                }
            }
            #expect(acts == [])
            // the first push's record stays
            await #expect(try s.manifest(repository: "r", digest: first.record.digest)?.createdAt == Date(timeIntervalSince1970: 1_000_000))
            again.tag = "b"
            again.expectedTagTarget = nil
            acts = try await actions(s) { result = try await s.putManifest(again) }
            #expect(result == .stored(previousTagTarget: nil))
            #expect(acts == [EventAction.tagMove])
            again.tag = nil
            acts = try await actions(s) { result = try await s.putManifest(again) }
            #expect(result == .stored(previousTagTarget: nil))
            #expect(acts == [.registerMark])
            // without a tag: a mark of the manifest's presence, of no tag
            let presence = try await s.events(after: 0, limit: 100).last
            #expect(presence?.detail == EventAction.manifestPush.rawValue && presence?.tag == nil)
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == ["a", "b"])
        },
        Case("putManifest: moving a tag reports the previous target and records it in the event") { s in
            var one = push("r", "one", tag: "latest"), two = push("r", "two", tag: "latest")
            try await store(s, one)
            two.expectedTagTarget = one.record.digest
            one.expectedTagTarget = two.record.digest
            let mark = try await s.latestEventSequence()
            #expect(try await s.putManifest(two) == .stored(previousTagTarget: one.record.digest))
            await #expect(try s.tagTarget(repository: "r", tag: "latest") == two.record.digest)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.manifestPush, EventAction.tagMove])
            #expect(e.last?.detail == "from \(one.record.digest)")
            // the untagged manifest stays
            await #expect(try s.manifest(repository: "r", digest: one.record.digest) != nil)
            // moving it back reports the other one
            #expect(try await s.putManifest(one) == .stored(previousTagTarget: two.record.digest))
        },
        Case("putManifest: a quota that would be exceeded refuses the push, which stores and appends nothing") { s in
            let old = push("team/app", "old", tag: "t")
            try await store(s, old)
            var p = push("team/app", "a-larger-manifest-body", tag: "t")
            p.expectedTagTarget = old.record.digest
            p.quotas = [QuotaLimit(name: "team", prefix: "team/", limitBytes: old.record.size + 5)]
            let mark = try await s.latestEventSequence()
            await #expect(throws: QuotaExceeded(quota: "team", limit: old.record.size + 5, used: old.record.size,
                                                needed: p.record.size)) {
                try await s.putManifest(p)
            }
            await #expect(try s.manifest(repository: "team/app", digest: p.record.digest) == nil)
            await #expect(try s.tagTarget(repository: "team/app", tag: "t") == old.record.digest)
            await #expect(try s.blobSize(p.record.digest) == nil)
            await #expect(try events(s, after: mark).isEmpty)
            // a quota that does not cover the repository does not apply
            p.quotas = [QuotaLimit(name: "other", prefix: "other/", limitBytes: 1)]
            try await store(s, p)
        },
        Case("putManifest: a manifest the quota already counts is not refused again") { s in
            let p = push("q", "counted", tag: "a")
            try await store(s, p)
            var again = p
            again.tag = "b"
            again.quotas = [QuotaLimit(name: "q", prefix: "q", limitBytes: p.record.size)]
            try await store(s, again)
            await #expect(try s.tagTarget(repository: "q", tag: "b") == p.record.digest)
        },
        Case("putManifest: a tag that no longer points where the plan saw it is a conflict, and nothing is written") { s in
            let one = push("r", "one", tag: "t"), two = push("r", "two", tag: "t")
            try await store(s, one)
            var stale = two
            stale.expectedTagTarget = nil // planned before one was pushed
            var result: ManifestPushResult?
            var acts = try await actions(s) { result = try await s.putManifest(stale) }
            #expect(result == .tagConflict(current: one.record.digest))
            #expect(acts == [])
            await #expect(try s.manifest(repository: "r", digest: two.record.digest) == nil)
            await #expect(try s.tagTarget(repository: "r", tag: "t") == one.record.digest)
            // a tag that was deleted meanwhile is a conflict too
            #expect(try await s.deleteTag(repository: "r", tag: "t"))
            stale.expectedTagTarget = one.record.digest
            acts = try await actions(s) { result = try await s.putManifest(stale) }
            #expect(result == .tagConflict(current: nil))
            #expect(acts == [])
            // references are checked first: a push that misses content says so
            var missing = push("r", "three", tag: "t", blobs: [digest("absent")])
            missing.expectedTagTarget = one.record.digest
            #expect(try await s.putManifest(missing) == .missing([digest("absent")]))
            // a push without a tag has no precondition
            try await store(s, push("r", "untagged"))
        },
        Case("putManifest: the tag history of the manifest a tag leaves keeps the planned number of tags") { s in
            let m = push("r", "m")
            try await store(s, m)
            for (i, tag) in ["a", "b", "c"].enumerated() {
                try await store(s, push("r", "m", tag: tag))
                var other = push("r", "other-\(i)", tag: tag)
                other.tagHistoryLimit = 2
                try await store(s, other) // moves the tag away from m
            }
            // the tags it lost, oldest first, at most the planned number
            await #expect(try s.repositoryGraph("r")?.manifests[m.record.digest.string]?.formerTags == ["b", "c"])
        },
        Case("deleteTag: applies only while the tag points where the plan saw it; the lock goes only when planned") { s in
            let one = push("r", "one", tag: "t"), two = push("r", "two", tag: "t")
            try await store(s, one)
            try await store(s, two)
            try await s.setLock(LockRecord(repository: "r", tag: "t", deleteEnabled: false))
            var result: TagDeletionResult?
            var acts = try await actions(s) {
                result = try await s.deleteTag(TagDeletion(repository: "r", tag: "t", expectedTarget: one.record.digest, dropLock: true,
                                                           tagHistoryLimit: 50))
            }
            #expect(result == .conflict(current: two.record.digest))
            #expect(acts == [])
            await #expect(try s.tagTarget(repository: "r", tag: "t") == two.record.digest)
            await #expect(try s.locks().count == 1)
            acts = try await actions(s) {
                result = try await s.deleteTag(TagDeletion(repository: "r", tag: "t", expectedTarget: two.record.digest, dropLock: false,
                                                           tagHistoryLimit: 50))
            }
            #expect(result == .deleted)
            #expect(acts == [EventAction.tagDelete])
            await #expect(try s.tagTarget(repository: "r", tag: "t") == nil)
            await #expect(try s.locks() == [LockRecord(repository: "r", tag: "t", deleteEnabled: false)])
            let gone = try await s.deleteTag(TagDeletion(repository: "r", tag: "t", expectedTarget: two.record.digest, dropLock: true,
                                                         tagHistoryLimit: 50))
            #expect(gone == .unknown)
        },
        Case("manifest/tagTarget: nil for unknown repositories, digests and tags") { s in
            let p = push("r", "m", tag: "t")
            try await store(s, p)
            await #expect(try s.manifest(repository: "unknown", digest: p.record.digest) == nil)
            await #expect(try s.manifest(repository: "r", digest: digest("absent")) == nil)
            await #expect(try s.tagTarget(repository: "unknown", tag: "t") == nil)
            await #expect(try s.tagTarget(repository: "r", tag: "T") == nil)
            await #expect(try s.tagTarget(repository: "r", tag: "t") == p.record.digest)
        },
        Case("deleteTag: removes the tag (not the manifest) once, with a tag.delete event; unknown is false") { s in
            let p = push("r", "m", tag: "t")
            try await store(s, p)
            try await store(s, push("r", "m", tag: "u"))
            #expect(try await s.deleteTag(repository: "unknown", tag: "t") == false)
            #expect(try await s.deleteTag(repository: "r", tag: "nope") == false)
            let mark = try await s.latestEventSequence()
            #expect(try await s.deleteTag(repository: "r", tag: "t"))
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.tagDelete])
            #expect(e.first?.tag == "t")
            #expect(e.first?.digest == p.record.digest.string)
            await #expect(try s.tagTarget(repository: "r", tag: "t") == nil)
            await #expect(try s.manifest(repository: "r", digest: p.record.digest) != nil)
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == ["u"])
            #expect(try await s.deleteTag(repository: "r", tag: "t") == false)
            await #expect(try events(s, after: mark).count == 1)
        },
        Case("tags: byte-wise lexical order, after/limit pagination, nil for an unknown repository") { s in
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == nil)
            for t in ["b", "a_b", "B", "a1", "a.b", "a-b", "a", "10", "9"] { try await store(s, push("r", "m-\(t)", tag: t)) }
            let all = ["10", "9", "B", "a", "a-b", "a.b", "a1", "a_b", "b"]
            await #expect(try s.tags(repository: "r", after: nil, limit: 100) == all)
            await #expect(try s.tags(repository: "r", after: nil, limit: 3) == ["10", "9", "B"])
            await #expect(try s.tags(repository: "r", after: "B", limit: 3) == ["a", "a-b", "a.b"])
            await #expect(try s.tags(repository: "r", after: "a_b", limit: 3) == ["b"])
            await #expect(try s.tags(repository: "r", after: "b", limit: 3) == [])
            await #expect(try s.tags(repository: "r", after: "a0", limit: 1) == ["a1"])
            await #expect(try s.tags(repository: "unknown", after: nil, limit: 10) == nil)
        },
        Case("tags pointing at a digest: only that digest's, in this repository, byte-wise, bounded, none once moved") { s in
            let image = push("r", "image", tag: "b")
            await #expect(try s.tags(repository: "r", pointingAt: image.record.digest, limit: 10) == [])
            for t in ["b", "B", "a", "10"] { try await store(s, push("r", "image", tag: t)) }
            try await store(s, push("r", "other", tag: "c"))
            try await store(s, push("elsewhere", "image", tag: "z"))
            await #expect(try s.tags(repository: "r", pointingAt: image.record.digest, limit: 10) == ["10", "B", "a", "b"])
            await #expect(try s.tags(repository: "r", pointingAt: image.record.digest, limit: 2) == ["10", "B"])
            await #expect(try s.tags(repository: "elsewhere", pointingAt: image.record.digest, limit: 10) == ["z"])
            await #expect(try s.tags(repository: "unknown", pointingAt: image.record.digest, limit: 10) == [])
            try await store(s, push("r", "other", tag: "a"))
            await #expect(try s.tags(repository: "r", pointingAt: image.record.digest, limit: 10) == ["10", "B", "b"])
        },
        Case("tags: a repository with manifests but no tags lists none") { s in
            try await store(s, push("r", "untagged"))
            await #expect(try s.tags(repository: "r", after: nil, limit: 10) == [])
        },
        Case("referrers: manifests of this repository naming the subject, by creation time then digest") { s in
            let subject = push("r", "image")
            try await store(s, subject)
            let t0 = Date(timeIntervalSince1970: 1_000)
            let sig = push("r", "sig", subject: subject.record.digest, artifactType: "application/sig", createdAt: t0.addingTimeInterval(10))
            let sbom = push("r", "sbom", subject: subject.record.digest, artifactType: "application/sbom", createdAt: t0)
            let twinA = push("r", "twin-a", subject: subject.record.digest, artifactType: "t", createdAt: t0.addingTimeInterval(20))
            let twinB = push("r", "twin-b", subject: subject.record.digest, artifactType: "t", createdAt: t0.addingTimeInterval(20))
            for p in [sig, twinB, sbom, twinA] { try await store(s, p) }
            try await store(s, push("other", "elsewhere", subject: subject.record.digest, artifactType: "x"))
            let twins = [twinA.record.digest, twinB.record.digest].sorted()
            let refs = try await s.referrers(repository: "r", subject: subject.record.digest)
            #expect(refs.map(\.digest) == [sbom.record.digest, sig.record.digest] + twins)
            #expect(refs.first?.artifactType == "application/sbom")
            #expect(refs.first?.annotations == ["name": "sbom"])
            await #expect(try s.referrers(repository: "r", subject: digest("nothing")).isEmpty)
            await #expect(try s.referrers(repository: "unknown", subject: subject.record.digest).isEmpty)
            // a referrer may arrive before its subject
            let early = push("r", "early", subject: digest("not-yet"), artifactType: "x")
            try await store(s, early)
            await #expect(try s.referrers(repository: "r", subject: digest("not-yet")).map(\.digest) == [early.record.digest])
        },
        Case("parents: the indexes of this repository that list the child") { s in
            let child = try await image(s, "r", "child")
            let lone = try await image(s, "r", "lone")
            let i1 = push("r", "index-1", children: [child.record.digest])
            let i2 = push("r", "index-2", children: [child.record.digest, lone.record.digest])
            try await store(s, i1)
            try await store(s, i2)
            await #expect(Set(try s.parents(repository: "r", child: child.record.digest)) == [i1.record.digest, i2.record.digest])
            await #expect(try s.parents(repository: "r", child: lone.record.digest) == [i2.record.digest])
            await #expect(try s.parents(repository: "r", child: i1.record.digest) == [])
            await #expect(try s.parents(repository: "unknown", child: child.record.digest) == [])
            // an image's blobs are not children
            await #expect(try s.parents(repository: "r", child: digest("layer-of-child")) == [])
            try await deleteManifests(s, "r", [i1.record.digest])
            await #expect(try s.parents(repository: "r", child: child.record.digest) == [i2.record.digest])
            await #expect(try s.repositoryGraph("r")?.children[i2.record.digest.string].map(Set.init)
                        == [child.record.digest.string, lone.record.digest.string])
        },
        Case("events carry the origin of the request that caused them") { s in
            let origin = EventOrigin(actor: "alice", address: "192.0.2.1", requestID: "req-1", host: "registry.example",
                                     method: "PUT", userAgent: "skopeo/1")
            let mark = try await s.latestEventSequence()
            try await EventOrigin.$current.withValue(origin) {
                try await store(s, push("r", "m", tag: "t"))
            }
            try await store(s, push("r", "n"))
            let e = try await events(s, after: mark)
            #expect(e.count == 3)
            for event in e.prefix(2) {
                #expect(event.actor == "alice")
                #expect(event.address == "192.0.2.1")
                #expect(event.requestID == "req-1")
                #expect(event.requestHost == "registry.example")
                #expect(event.requestMethod == "PUT")
                #expect(event.userAgent == "skopeo/1")
            }
            #expect(e.last?.actor == nil)
            #expect(e.last?.address == nil)
        },
        Case("manifestHolders: every repository holding each manifest, in order; not the recycle bin's, nor other manifests") { s in
            let shared = try await image(s, "zeta", "shared")
            try await image(s, "alpha", "shared")
            try await image(s, "mid/nested", "shared")
            let only = try await image(s, "alpha", "only")
            let binned = try await image(s, "beta", "binned")
            try await image(s, "beta", "unasked")
            try await deleteManifests(s, "beta", [binned.record.digest], softDeleteUntil: Date().addingTimeInterval(3600))
            let asked = [shared.record.digest, only.record.digest, binned.record.digest, digest("absent"), shared.record.digest]
            let holders = try await s.manifestHolders(asked)
            let sharedDigest = shared.record.digest.string, onlyDigest = only.record.digest.string
            let expected = [ManifestRef(repository: "alpha", digest: min(sharedDigest, onlyDigest)),
                            ManifestRef(repository: "alpha", digest: max(sharedDigest, onlyDigest)),
                            ManifestRef(repository: "mid/nested", digest: sharedDigest),
                            ManifestRef(repository: "zeta", digest: sharedDigest)]
            #expect(holders == expected)
            await #expect(try s.manifestHolders([]) == [])
            // more digests than one statement asks (the backends page by 500)
            let many = (0..<1_200).map { digest("absent-\($0)") } + [shared.record.digest]
            await #expect(try s.manifestHolders(many).map(\.repository) == ["alpha", "mid/nested", "zeta"])
        },
    ]
}
