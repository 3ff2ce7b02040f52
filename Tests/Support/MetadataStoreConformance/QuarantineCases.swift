import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let quarantineCases: [Case] = [
        Case("putManifest with quarantine: a new manifest starts Pending, with its quarantine event first") { s in
            var p = push("r", "m", tag: "t")
            p.quarantine = true
            let mark = try await s.latestEventSequence()
            try await store(s, p)
            await #expect(try s.manifest(repository: "r", digest: p.record.digest)?.quarantineState == .pending)
            let e = try await events(s, after: mark)
            #expect(e.map(\.action) == [EventAction.quarantine, EventAction.manifestPush, EventAction.tagMove])
            #expect(e.first?.detail == "Pending")
            #expect(e.first?.digest == p.record.digest.string)
        },
        Case("putManifest with quarantine: referrers are never quarantined, and a manifest already there keeps its state") { s in
            var ref = push("r", "sig", subject: digest("subject"), artifactType: "application/sig")
            ref.quarantine = true
            let acts = try await actions(s) { try await store(s, ref) }
            #expect(acts == [EventAction.manifestPush])
            await #expect(try s.manifest(repository: "r", digest: ref.record.digest)?.quarantineState == nil)
            let plain = push("r", "plain")
            try await store(s, plain)
            var again = plain
            again.quarantine = true
            let repushed = try await actions(s) { try await store(s, again) }
            #expect(repushed == [])
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
        Case("setQuarantine: quarantined children of an index follow it; children never quarantined stay so") { s in
            var quarantined = push("r", "child-q")
            quarantined.quarantine = true
            try await store(s, quarantined)
            let free = push("r", "child-free")
            try await store(s, free)
            var index = push("r", "index", children: [quarantined.record.digest, free.record.digest])
            index.quarantine = true
            try await store(s, index)
            var set = false
            let acts = try await actions(s) {
                set = try await s.setQuarantine(repository: "r", digest: index.record.digest, state: .passed, reason: "scanned")
            }
            #expect(set)
            #expect(acts == [EventAction.quarantine]) // one event, for the index
            let child = try await #require(try s.manifest(repository: "r", digest: quarantined.record.digest))
            #expect(child.quarantineState == .passed)
            #expect(child.quarantineReason == "scanned (via index \(index.record.digest))")
            await #expect(try s.manifest(repository: "r", digest: free.record.digest)?.quarantineState == nil)
            #expect(try await s.setQuarantine(repository: "r", digest: index.record.digest, state: .failed, reason: nil))
            await #expect(try s.manifest(repository: "r", digest: quarantined.record.digest)?.quarantineReason
                        == "via index \(index.record.digest)")
            // setting a child does not touch its index
            #expect(try await s.setQuarantine(repository: "r", digest: quarantined.record.digest, state: .passed, reason: nil))
            await #expect(try s.manifest(repository: "r", digest: index.record.digest)?.quarantineState == .failed)
        },
        Case("unquarantinedManifests: never-quarantined non-referrers, by repository then digest, limited") { s in
            let a1 = push("a", "a1"), a2 = push("a", "a2"), b1 = push("b", "b1")
            for p in [b1, a2, a1] { try await store(s, p) }
            try await store(s, push("a", "ref", subject: a1.record.digest, artifactType: "x"))
            var q = push("a", "quarantined")
            q.quarantine = true
            try await store(s, q)
            let aSorted = [a1.record.digest, a2.record.digest].sorted().map { ManifestRef(repository: "a", digest: $0.string) }
            let all = aSorted + [ManifestRef(repository: "b", digest: b1.record.digest.string)]
            await #expect(try s.unquarantinedManifests(limit: 10) == all)
            await #expect(try s.unquarantinedManifests(limit: 1) == Array(all.prefix(1)))
            #expect(try await s.setQuarantine(repository: "b", digest: b1.record.digest, state: .passed, reason: nil))
            await #expect(try s.unquarantinedManifests(limit: 10) == aSorted)
        },
        Case("quarantineExisting: puts every unquarantined non-referrer into Pending, once") { s in
            let a = push("r", "a")
            try await store(s, a)
            let ref = push("r", "ref", subject: a.record.digest, artifactType: "x")
            try await store(s, ref)
            let passed = push("r", "passed")
            try await store(s, passed)
            #expect(try await s.setQuarantine(repository: "r", digest: passed.record.digest, state: .passed, reason: nil))
            try await store(s, push("other", "b"))
            #expect(try await s.quarantineExisting() == 2)
            await #expect(try s.manifest(repository: "r", digest: a.record.digest)?.quarantineState == .pending)
            await #expect(try s.manifest(repository: "r", digest: a.record.digest)?.quarantineReason != nil)
            await #expect(try s.manifest(repository: "r", digest: ref.record.digest)?.quarantineState == nil)
            await #expect(try s.manifest(repository: "r", digest: passed.record.digest)?.quarantineState == .passed)
            await #expect(try s.unquarantinedManifests(limit: 10) == [])
            #expect(try await s.quarantineExisting() == 0)
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
