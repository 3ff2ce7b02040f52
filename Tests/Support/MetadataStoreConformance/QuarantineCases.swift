import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    /// The two sweeps the registry makes (RegistryCore's `ContentPlanner.quarantineExisting` and
    /// `.releasePending`), written out: the suite does not depend on the core.
    static let existing = QuarantineSweep(from: nil, includeReferrers: false, to: .pending, reason: "switched on", eventDetail: nil)
    static let release = QuarantineSweep(from: .pending, includeReferrers: true, to: nil, reason: nil,
                                         eventDetail: "released: quarantine disabled")

    static let quarantineCases: [Case] = [
        Case("putManifest with a quarantine state: a new manifest is stored in it, with its quarantine event first") { s in
            var p = push("r", "m", tag: "t")
            p.record.quarantineState = .pending
            let mark = try await s.latestEventSequence()
            try await store(s, p)
            await #expect(try s.manifest(repository: "r", digest: p.record.digest)?.quarantineState == .pending)
            await #expect(try s.manifest(repository: "r", digest: p.record.digest)?.quarantineReason == nil)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.quarantine, EventAction.manifestPush, EventAction.tagMove])
            #expect(e.first?.detail == "Pending")
            #expect(e.first?.digest == p.record.digest.string)
        },
        Case("putManifest with a quarantine state: the store applies the planned state as given, referrer or not") { s in
            // which manifests start quarantined is the core's rule (referrers do not); the store does not decide
            var ref = push("r", "sig", subject: digest("subject"), artifactType: "application/sig")
            ref.record.quarantineState = .failed
            ref.record.quarantineReason = "planned"
            let acts = try await actions(s) { try await store(s, ref) }
            #expect(acts == [EventAction.quarantine, EventAction.manifestPush])
            let m = try await #require(try s.manifest(repository: "r", digest: ref.record.digest))
            #expect(m.quarantineState == .failed)
            #expect(m.quarantineReason == "planned")
            let plain = push("r", "plain")
            try await store(s, plain)
            await #expect(try s.manifest(repository: "r", digest: plain.record.digest)?.quarantineState == nil)
            // a manifest already there keeps its state
            var again = plain
            again.record.quarantineState = .pending
            let repushed = try await actions(s) { try await store(s, again) }
            #expect(repushed == [EventAction.registerMark])   // a write of its presence, nothing else
            await #expect(try s.manifest(repository: "r", digest: plain.record.digest)?.quarantineState == nil)
        },
        Case("setQuarantine: unknown repository or manifest is false and appends nothing") { s in
            let p = push("r", "m")
            try await store(s, p)
            var results: [Bool] = []
            let acts = try await actions(s) {
                results.append(try await s.setQuarantine(repository: "unknown", digest: p.record.digest, state: .failed, reason: nil))
                results.append(try await s.setQuarantine(repository: "r", digest: digest("absent"), state: .failed, reason: nil))
            }
            #expect(results == [false, false])
            #expect(acts == [])
        },
        Case("setQuarantine: sets state and reason with a quarantine event") { s in
            let p = push("r", "m")
            try await store(s, p)
            let mark = try await s.latestEventSequence()
            #expect(try await s.setQuarantine(repository: "r", digest: p.record.digest, state: .failed, reason: "CVE-1"))
            var m = try await #require(try s.manifest(repository: "r", digest: p.record.digest))
            #expect(m.quarantineState == .failed)
            #expect(m.quarantineReason == "CVE-1")
            #expect(try await s.setQuarantine(repository: "r", digest: p.record.digest, state: .passed, reason: nil))
            m = try await #require(try s.manifest(repository: "r", digest: p.record.digest))
            #expect(m.quarantineState == .passed)
            #expect(m.quarantineReason == nil)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.quarantine, EventAction.quarantine])
            #expect(e.map(\.detail) == ["Failed: CVE-1", "Passed"])
            #expect(e.first?.digest == p.record.digest.string)
            #expect(e.first?.size == p.record.size)
            #expect(e.first?.mediaType == p.record.mediaType)
        },
        Case("applyQuarantine: the planned followers take the state with their own reason; nothing else changes") { s in
            var quarantined = push("r", "child-q")
            quarantined.record.quarantineState = .pending
            try await store(s, quarantined)
            let free = push("r", "child-free")
            try await store(s, free)
            var index = push("r", "index", children: [quarantined.record.digest, free.record.digest])
            index.record.quarantineState = .pending
            try await store(s, index)
            var result: QuarantineUpdateResult?
            let update = QuarantineUpdate(repository: "r", digest: index.record.digest, state: .passed, reason: "scanned",
                                          followers: [.init(digest: quarantined.record.digest, from: .pending, reason: "follows")])
            let acts = try await actions(s) { result = try await s.applyQuarantine(update) }
            #expect(result == .applied)
            #expect(acts == [EventAction.quarantine]) // one event, for the manifest itself
            let child = try await #require(try s.manifest(repository: "r", digest: quarantined.record.digest))
            #expect(child.quarantineState == .passed)
            #expect(child.quarantineReason == "follows")
            // a child the plan does not list stays as it is, though the index lists it
            await #expect(try s.manifest(repository: "r", digest: free.record.digest)?.quarantineState == nil)
            // without followers only the manifest itself changes
            #expect(try await s.setQuarantine(repository: "r", digest: index.record.digest, state: .failed, reason: nil))
            await #expect(try s.manifest(repository: "r", digest: quarantined.record.digest)?.quarantineState == .passed)
            await #expect(try s.manifest(repository: "r", digest: index.record.digest)?.quarantineState == .failed)
        },
        Case("applyQuarantine: a follower no longer in the planned state is a conflict, and nothing is written") { s in
            var child = push("r", "child")
            child.record.quarantineState = .pending
            try await store(s, child)
            var index = push("r", "index", children: [child.record.digest])
            index.record.quarantineState = .pending
            try await store(s, index)
            // planned while the child was Pending; it was Failed meanwhile
            #expect(try await s.setQuarantine(repository: "r", digest: child.record.digest, state: .failed, reason: "CVE"))
            let stale = QuarantineUpdate(repository: "r", digest: index.record.digest, state: .passed, reason: nil,
                                         followers: [.init(digest: child.record.digest, from: .pending, reason: "via index")])
            var result: QuarantineUpdateResult?
            let acts = try await actions(s) { result = try await s.applyQuarantine(stale) }
            #expect(result == .conflict)
            #expect(acts == [])
            await #expect(try s.manifest(repository: "r", digest: index.record.digest)?.quarantineState == .pending)
            await #expect(try s.manifest(repository: "r", digest: child.record.digest)?.quarantineState == .failed)
            // a follower that is not there is a conflict too
            let absent = QuarantineUpdate(repository: "r", digest: index.record.digest, state: .passed, reason: nil,
                                          followers: [.init(digest: digest("absent"), from: .pending, reason: nil)])
            #expect(try await s.applyQuarantine(absent) == .conflict)
        },
        Case("quarantineSweepSelection: the selected state only, by repository then digest, limited, with the full count") { s in
            var refs: [ManifestRef] = []
            for (repo, name) in [("b", "b1"), ("a", "a2"), ("a", "a1")] {
                var p = push(repo, name)
                p.record.quarantineState = .pending
                try await store(s, p)
                refs.append(ManifestRef(repository: repo, digest: p.record.digest.string))
            }
            var failed = push("a", "failed")
            failed.record.quarantineState = .failed
            try await store(s, failed)
            try await store(s, push("a", "free"))
            let sorted = refs.sorted { ($0.repository, $0.digest) < ($1.repository, $1.digest) }
            let all = try await s.quarantineSweepSelection(release, limit: 10)
            #expect(all.manifests == sorted)
            #expect(all.count == 3)
            let first = try await s.quarantineSweepSelection(release, limit: 1)
            #expect(first.manifests == Array(sorted.prefix(1)))
            #expect(first.count == 3)
            let none = try await s.quarantineSweepSelection(release, limit: 0)
            #expect(none.manifests == [])
            #expect(none.count == 3)
        },
        Case("applyQuarantineSweep: every selected manifest moves, each with its event when the sweep names one; others stay") { s in
            var digests: [Digest] = []
            for name in ["p1", "p2", "p3"] {
                var p = push("r", name)
                p.record.quarantineState = .pending
                try await store(s, p)
                digests.append(p.record.digest)
            }
            var failed = push("r", "failed")
            failed.record.quarantineState = .failed
            try await store(s, failed)
            let mark = try await s.latestEventSequence()
            let released = try await s.applyQuarantineSweep(release, limit: 2)
            #expect(released.count == 3)
            #expect(released.manifests == digests.sorted().prefix(2).map { ManifestRef(repository: "r", digest: $0.string) })
            for d in digests {
                let m = try await #require(try s.manifest(repository: "r", digest: d))
                #expect(m.quarantineState == nil)
                #expect(m.quarantineReason == nil)
            }
            await #expect(try s.manifest(repository: "r", digest: failed.record.digest)?.quarantineState == .failed)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.quarantine, EventAction.quarantine, EventAction.quarantine])
            #expect(Set(e.compactMap(\.digest)) == Set(digests.map(\.string)))
            #expect(e.allSatisfy { $0.detail == "released: quarantine disabled" && $0.repository == "r" })
            let again = try await actions(s) {
                let none = try await s.applyQuarantineSweep(release, limit: 10)
                #expect(none.count == 0)
                #expect(none.manifests == [])
            }
            #expect(again == [])
        },
        Case("blobOnlyInQuarantine: true only when manifests reference the blob and none of them is pullable") { s in
            try await link(s, "r", "shared", "lonely", "unreferenced")
            var pending = push("r", "pending", blobs: [digest("shared"), digest("lonely")])
            pending.record.quarantineState = .pending
            try await store(s, pending)
            var failed = push("r", "failed", blobs: [digest("shared")])
            failed.record.quarantineState = .failed
            try await store(s, failed)
            await #expect(try s.blobOnlyInQuarantine(repository: "r", digest: digest("lonely")))
            await #expect(try s.blobOnlyInQuarantine(repository: "r", digest: digest("shared")))
            // nothing references it: not quarantined (an upload on its way to a manifest)
            await #expect(try s.blobOnlyInQuarantine(repository: "r", digest: digest("unreferenced")) == false)
            await #expect(try s.blobOnlyInQuarantine(repository: "other", digest: digest("shared")) == false)
            // one pullable manifest (never quarantined, or Passed) makes it pullable
            try await store(s, push("r", "free", blobs: [digest("shared")]))
            await #expect(try s.blobOnlyInQuarantine(repository: "r", digest: digest("shared")) == false)
            #expect(try await s.setQuarantine(repository: "r", digest: pending.record.digest, state: .passed, reason: nil))
            await #expect(try s.blobOnlyInQuarantine(repository: "r", digest: digest("lonely")) == false)
        },
        Case("quarantineSweepSelection: never quarantined (nil) and without referrers when the sweep says so") { s in
            let a1 = push("a", "a1"), a2 = push("a", "a2"), b1 = push("b", "b1")
            for p in [b1, a2, a1] { try await store(s, p) }
            let ref = push("a", "ref", subject: a1.record.digest, artifactType: "x")
            try await store(s, ref)
            var q = push("a", "quarantined")
            q.record.quarantineState = .pending
            try await store(s, q)
            let aSorted = [a1.record.digest, a2.record.digest].sorted().map { ManifestRef(repository: "a", digest: $0.string) }
            let all = aSorted + [ManifestRef(repository: "b", digest: b1.record.digest.string)]
            let never = try await s.quarantineSweepSelection(existing, limit: 10)
            #expect(never.manifests == all)
            #expect(never.count == 3)
            let one = try await s.quarantineSweepSelection(existing, limit: 1)
            #expect(one.manifests == Array(all.prefix(1)))
            #expect(one.count == 3)
            var withReferrers = existing
            withReferrers.includeReferrers = true
            let everyone = try await s.quarantineSweepSelection(withReferrers, limit: 10)
            #expect(everyone.count == 4)
            #expect(everyone.manifests.contains(ManifestRef(repository: "a", digest: ref.record.digest.string)))
            #expect(try await s.setQuarantine(repository: "b", digest: b1.record.digest, state: .passed, reason: nil))
            await #expect(try s.quarantineSweepSelection(existing, limit: 10).manifests == aSorted)
        },
        Case("applyQuarantineSweep: from never quarantined into Pending with the sweep's reason, without events, once") { s in
            let a = push("r", "a")
            try await store(s, a)
            let ref = push("r", "ref", subject: a.record.digest, artifactType: "x")
            try await store(s, ref)
            let passed = push("r", "passed")
            try await store(s, passed)
            #expect(try await s.setQuarantine(repository: "r", digest: passed.record.digest, state: .passed, reason: nil))
            let b = push("other", "b")
            try await store(s, b)
            let mark = try await s.latestEventSequence()
            let moved = try await s.applyQuarantineSweep(existing, limit: 10)
            #expect(moved.count == 2)
            #expect(moved.manifests == [ManifestRef(repository: "other", digest: b.record.digest.string),
                                        ManifestRef(repository: "r", digest: a.record.digest.string)])
            await #expect(try s.manifest(repository: "r", digest: a.record.digest)?.quarantineState == .pending)
            await #expect(try s.manifest(repository: "r", digest: a.record.digest)?.quarantineReason == "switched on")
            await #expect(try s.manifest(repository: "r", digest: ref.record.digest)?.quarantineState == nil)
            await #expect(try s.manifest(repository: "r", digest: passed.record.digest)?.quarantineState == .passed)
            await #expect(try events(s, after: mark).isEmpty)
            await #expect(try s.quarantineSweepSelection(existing, limit: 10).count == 0)
            #expect(try await s.applyQuarantineSweep(existing, limit: 10).count == 0)
            // Passed to Failed with a reason, referrers too
            let failing = QuarantineSweep(from: .passed, includeReferrers: true, to: .failed, reason: "bad", eventDetail: "failed in bulk")
            let failed = try await s.applyQuarantineSweep(failing, limit: 0)
            #expect(failed.manifests == [])
            #expect(failed.count == 1)
            await #expect(try s.manifest(repository: "r", digest: passed.record.digest)?.quarantineReason == "bad")
            await #expect(try events(s, after: mark).map(\.detail) == ["failed in bulk"])
        },
        Case("settings: nil until set, then the newest value; keys are independent; each write is one setting event") { s in
            let quarantine = SettingKey<String>("quarantine")
            #expect(try await s.setting(quarantine) == nil)
            let before = try await s.latestEventSequence()
            try await s.setSetting(quarantine, "on")
            try await s.setSetting(SettingKey<[Int]>("other"), [1, 2])
            let events = try await s.events(after: before, limit: 10)
            #expect(events.map(\.action) == [EventAction.setting, EventAction.setting])
            #expect(events.map(\.detail) == ["quarantine", "other"])
            #expect(try await s.setting(quarantine) == "on")
            try await s.setSetting(quarantine, "off")
            #expect(try await s.setting(quarantine) == "off")
            #expect(try await s.setting(SettingKey<[Int]>("other")) == [1, 2])
            try await s.setSetting(SettingKey<String>("empty"), "")
            #expect(try await s.setting(SettingKey<String>("empty")) == "")
            #expect(try await s.setting(SettingKey<String>("Quarantine")) == nil)
            // a value that does not read as the key's type is an error, not a silent default
            await #expect(throws: SettingUnreadable.self) { try await s.setting(SettingKey<Int>("quarantine")) }
        },
    ]
}
