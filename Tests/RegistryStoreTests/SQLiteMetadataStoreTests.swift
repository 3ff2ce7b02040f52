@testable import SQLiteStore
import Foundation
import Testing
import OCIModel
@testable import RegistryStore
import MetadataStoreConformance

func newStore() throws -> SQLiteMetadataStore {
    let dir = NSTemporaryDirectory() + "berth-store-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return try SQLiteMetadataStore(path: dir + "/metadata.sqlite")
}

func digest(_ s: String) -> Digest { Digest.compute(Array(s.utf8)) }

func push(_ repo: String, _ name: String, tag: String? = nil, blobs: [Digest] = [], children: [Digest] = [],
          subject: Digest? = nil, artifactType: String? = nil) -> ManifestPush {
    let bytes = Array(name.utf8)
    let record = ManifestRecord(digest: Digest.compute(bytes), mediaType: MediaType.ociManifest, size: Int64(bytes.count),
                                artifactType: artifactType, subject: subject, annotations: ["k": name], createdAt: Date())
    return ManifestPush(repository: repo, record: record, bytes: bytes, tag: tag, blobs: blobs, children: children)
}

/// Deletes one manifest the way the registry does: a lifecycle change applied in one transaction.
func deleteManifest(_ store: SQLiteMetadataStore, _ repo: String, _ digest: Digest) async throws -> Bool {
    let change = try await store.applyLifecycle(repository: repo, softDeleteUntil: nil) { graph in
        var change = LifecycleChange()
        if let m = graph.manifests[digest.string] {
            change.deleteManifests = [LifecycleDeletion(repository: repo, digest: m.digest, mediaType: m.mediaType, reason: "requested")]
        }
        change.cascadeTags = graph.tags.filter { $0.digest == digest.string }
            .map { LifecycleTagDeletion(repository: repo, tag: $0.name, digest: $0.digest) }
        return change
    }
    return change?.deleteManifests.isEmpty == false
}

@Suite struct SQLiteMetadataStoreTests {
    @Test func blobLinksAreScopedToRepositories() async throws {
        let store = try newStore()
        let b = digest("blob")
        try await store.linkBlob(repository: "a", digest: b, size: 4, inline: Array("blob".utf8))
        #expect(try await store.linkedBlobSize(repository: "a", digest: b) == 4)
        #expect(try await store.linkedBlobSize(repository: "b", digest: b) == nil)
        #expect(try await store.inlineContent(b) == Array("blob".utf8))
        #expect(try await store.mountBlob(repository: "b", from: "nope", digest: b) == nil)
        #expect(try await store.mountBlob(repository: "b", from: "a", digest: b) == 4)
        #expect(try await store.linkedBlobSize(repository: "b", digest: b) == 4)
        #expect(try await store.unlinkBlob(repository: "a", digest: b))
        #expect(try await store.linkedBlobSize(repository: "a", digest: b) == nil)
        #expect(try await store.unlinkBlob(repository: "a", digest: b) == false)
        #expect(try await store.storedBytes() == 4)
    }

    @Test func manifestPushChecksReferencesInsideTheTransaction() async throws {
        let store = try newStore()
        let config = digest("config"), layer = digest("layer")
        try await store.linkBlob(repository: "r", digest: config, size: 6, inline: nil)
        let p = push("r", "m1", tag: "v1", blobs: [config, layer])
        #expect(try await store.putManifest(p) == .missing([layer]))
        #expect(try await store.manifest(repository: "r", digest: p.record.digest) == nil)
        try await store.linkBlob(repository: "r", digest: layer, size: 5, inline: nil)
        #expect(try await store.putManifest(p) == .stored(previousTagTarget: nil))
        #expect(try await store.tagTarget(repository: "r", tag: "v1") == p.record.digest)
        #expect(try await store.manifest(repository: "r", digest: p.record.digest)?.annotations == ["k": "m1"])
        // an index needs its children in the same repository
        let index = push("r", "idx", children: [p.record.digest, digest("absent")])
        #expect(try await store.putManifest(index) == .missing([digest("absent")]))
    }

    @Test func tagMovesReportThePreviousTargetAndDeletesCascadeToTags() async throws {
        let store = try newStore()
        let m1 = push("r", "one", tag: "latest")
        var m2 = push("r", "two", tag: "latest")
        m2.expectedTagTarget = m1.record.digest
        _ = try await store.putManifest(m1)
        #expect(try await store.putManifest(m2) == .stored(previousTagTarget: m1.record.digest))
        #expect(try await store.tagTarget(repository: "r", tag: "latest") == m2.record.digest)
        _ = try await store.putManifest(push("r", "two", tag: "stable"))
        #expect(try await deleteManifest(store, "r", m2.record.digest))
        #expect(try await store.tags(repository: "r", after: nil, limit: 10) == [])
        #expect(try await store.manifest(repository: "r", digest: m1.record.digest) != nil)
        #expect(try await deleteManifest(store, "r", m2.record.digest) == false)
        #expect(try await store.deleteTag(repository: "r", tag: "latest") == false)
    }

    @Test func eventsAreAppendedWithEveryChange() async throws {
        let store = try newStore()
        let m = push("r", "one", tag: "t")
        _ = try await store.putManifest(m)
        _ = try await store.deleteTag(repository: "r", tag: "t")
        _ = try await deleteManifest(store, "r", m.record.digest)
        let events = try await store.events(after: 0, limit: 100)
        #expect(events.map(\.action) == [EventAction.manifestPush, EventAction.tagMove, EventAction.tagDelete, EventAction.manifestDelete])
        #expect(events.map(\.sequence) == events.map(\.sequence).sorted())
        #expect(try await store.events(after: events[1].sequence, limit: 100).count == 2)
    }

    @Test func listingsAreLexicalAndPaginated() async throws {
        let store = try newStore()
        for t in ["b", "a", "c", "a1"] { _ = try await store.putManifest(push("r", "m-\(t)", tag: t)) }
        #expect(try await store.tags(repository: "r", after: nil, limit: 2) == ["a", "a1"])
        #expect(try await store.tags(repository: "r", after: "a1", limit: 10) == ["b", "c"])
        #expect(try await store.tags(repository: "unknown", after: nil, limit: 10) == nil)
        for r in ["z", "m/n", "a"] { _ = try await store.putManifest(push(r, "x")) }
        #expect(try await store.repositories(after: nil, limit: 10) == ["a", "m/n", "r", "z"])
        #expect(try await store.repositories(after: "m/n", limit: 1) == ["r"])
    }

    @Test func referrersBySubject() async throws {
        let store = try newStore()
        let subject = push("r", "image")
        _ = try await store.putManifest(subject)
        _ = try await store.putManifest(push("r", "sig", subject: subject.record.digest, artifactType: "application/sig"))
        _ = try await store.putManifest(push("r", "sbom", subject: subject.record.digest, artifactType: "application/sbom"))
        _ = try await store.putManifest(push("other", "elsewhere", subject: subject.record.digest, artifactType: "x"))
        let refs = try await store.referrers(repository: "r", subject: subject.record.digest)
        #expect(Set(refs.compactMap(\.artifactType)) == ["application/sig", "application/sbom"])
        #expect(try await store.referrers(repository: "r", subject: digest("nothing")).isEmpty)
    }

    /// A stored state or action this build does not know fails the read; it is not guessed.
    @Test func unknownStoredValuesAreAnErrorNotAGuess() async throws {
        let store = try newStore()
        let m = push("r", "one", tag: "t")
        _ = try await store.putManifest(m)
        try await store.pool.write { db in
            try db.execute(sql: "UPDATE manifests SET quarantine_state = 'Scanning'")
            try db.execute(sql: "UPDATE events SET action = 'tag.rename' WHERE action = 'tag.move'")
            try db.execute(sql: "INSERT INTO lifecycle_runs(kind, name, dry_run, started_at, finished_at, report) VALUES ('scan', NULL, 0, 0, 0, '{}')")
        }
        await #expect(throws: UnknownStoredValue(field: "quarantine state", value: "Scanning")) {
            try await store.manifest(repository: "r", digest: m.record.digest)
        }
        await #expect(throws: UnknownStoredValue(field: "event action", value: "tag.rename")) { try await store.events(after: 0, limit: 10) }
        await #expect(throws: UnknownStoredValue(field: "run kind", value: "scan")) { try await store.runs(kind: nil, name: nil, limit: 10) }
        await #expect(throws: UnknownStoredValue.self) { try await store.quarantineCounts() }
    }

    @Test func reopeningKeepsData() async throws {
        let dir = NSTemporaryDirectory() + "berth-store-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let m = push("r", "persist", tag: "t")
        do {
            let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
            _ = try await store.putManifest(m)
        }
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        #expect(try await store.tagTarget(repository: "r", tag: "t") == m.record.digest)
    }
}
