import Access
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Testing
import UpstreamClient
@testable import ReplicationFeature

/// Issue 13: a manifest deletion applied from a peer takes no referrer or index child by cascade.
/// The deleting region's cascade is in its feed as deletions of their own (each with its own
/// stamp), which the applier replays through each manifest's presence register; so a referrer or
/// child written elsewhere after the deletion was made stays in every region (the partition test,
/// `BERTH_GEO_FULL=1`, found regions keeping different referrers: the applied deletion took them
/// under its own stamp where they had arrived first). And a referrer whose subject was deleted here
/// is fetched like any manifest: its own register decides.
@Suite struct ReplicationCascadeTests {
    let repo = try! RepositoryName("geo/app")
    static let config = Array(#"{"architecture":"amd64","os":"linux"}"#.utf8)
    static let imageType = "application/vnd.oci.image.manifest.v1+json"
    static let indexType = "application/vnd.oci.image.index.v1+json"
    /// Stamps well in this region's past (a peer's stamp may not be far in its future).
    let base = Int64(Date().timeIntervalSince1970 * 1000) - 600_000

    struct Manifest: Sendable {
        var bytes: [UInt8]
        var mediaType: String
        var digest: Digest { Digest.compute(bytes) }
    }

    static func image(_ seed: String, subject: Manifest? = nil) -> Manifest {
        let c = Digest.compute(config)
        var json = #"{"schemaVersion":2,"mediaType":"\#(imageType)","#
        if subject != nil { json += #""artifactType":"application/vnd.berth.test.note","# }
        json += #""config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(c)","size":\#(config.count)},"layers":[],"#
        if let subject {
            json += #""subject":{"mediaType":"\#(subject.mediaType)","digest":"\#(subject.digest)","size":\#(subject.bytes.count)},"#
        }
        json += #""annotations":{"seed":"\#(seed)"}}"#
        return Manifest(bytes: Array(json.utf8), mediaType: imageType)
    }

    static func index(_ children: [Manifest]) -> Manifest {
        let list = children.map { #"{"mediaType":"\#($0.mediaType)","digest":"\#($0.digest)","size":\#($0.bytes.count)}"# }
        let json = #"{"schemaVersion":2,"mediaType":"\#(indexType)","manifests":[\#(list.joined(separator: ","))]}"#
        return Manifest(bytes: Array(json.utf8), mediaType: indexType)
    }

    /// This region ("sea") with the config blob every test manifest names, and its applier.
    func region() async throws -> (Registry, ReplicationApplier, any MetadataBackend) {
        let r = try await ReplicationTestRegion.make()
        _ = try await r.registry.putBlob(repo, digest: Digest.compute(Self.config), contentLength: Int64(Self.config.count),
                                         body: AsyncStream { $0.yield(ByteBuffer(bytes: Self.config)); $0.finish() })
        return (r.registry, r.applier, r.backend)
    }

    /// A peer that serves the manifests of `served` by digest (every GET recorded), 404 for anything else.
    /// `meanwhile` runs before the first manifest GET is answered (a client's write in this region
    /// while the applier fetches).
    static func withPeer(_ served: [Manifest], meanwhile: (@Sendable () async throws -> Void)? = nil,
                         _ body: @Sendable (UpstreamClient, NIOLockedValueBox<[String]>) async throws -> Void) async throws {
        let byDigest = Dictionary(uniqueKeysWithValues: served.map { ($0.digest.string, $0) })
        let requests = NIOLockedValueBox<[String]>([])
        let router = Router()
        router.get("**") { request, _ -> Response in
            let path = request.uri.path
            let first = requests.withLockedValue { seen -> Bool in
                defer { seen.append(path) }
                return path.contains("/manifests/") && !seen.contains { $0.contains("/manifests/") }
            }
            if first, let meanwhile { try await meanwhile() }
            guard path.contains("/manifests/"), let last = path.split(separator: "/").last, let m = byDigest[String(last)] else {
                return Response(status: .notFound)
            }
            var h = HTTPFields()
            h[.contentType] = m.mediaType
            h[HTTPField.Name("Docker-Content-Digest")!] = m.digest.string
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(bytes: m.bytes)))
        }
        var logger = Logger(label: "peer")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), logger: logger)
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let upstream = try UpstreamClient(registry: "127.0.0.1:\(port)", plainHTTP: true, policy: try OutboundPolicy(allow: "127.0.0.1/32"))
            try await body(upstream, requests)
        }
    }

    /// A client of no peer (the steps under test fetch nothing).
    func nowhere() throws -> UpstreamClient {
        try UpstreamClient(registry: "127.0.0.1:9", plainHTTP: true, policy: try OutboundPolicy(allow: "127.0.0.1/32"))
    }

    func stamp(_ offset: Int64, _ region: String) -> WriteStamp {
        WriteStamp(hlc: HLCStamp(milliseconds: base + offset, logical: 0), region: region)
    }

    /// Stores `m` here as the applier does for a peer's write stamped `stamp` (under a tag: a move).
    func arrived(_ registry: Registry, _ m: Manifest, tag: String? = nil, at stamp: WriteStamp) async throws {
        let origin = EventOrigin(actor: "replication:" + stamp.region, address: "-", replicated: stamp.eventStamp)
        try await EventOrigin.$current.withValue(origin) {
            _ = try await registry.putManifest(repo, reference: tag.map { .tag($0) } ?? .digest(m.digest), bytes: m.bytes,
                                               contentType: m.mediaType)
        }
    }

    func event(_ action: EventAction, _ digest: Digest, at stamp: WriteStamp, tag: String? = nil) -> PeerEvent {
        PeerEvent(sequence: 1, at: Date(), action: action, rawAction: action.rawValue, repository: repo.value, digest: digest, tag: tag,
                  size: nil, subject: nil, detail: nil, stamp: stamp, replaces: nil)
    }

    func apply(_ applier: ReplicationApplier, _ event: PeerEvent, client: UpstreamClient) async throws {
        try await applier.apply(event, location: event.stamp.region, client: client, now: Date())
    }

    func stored(_ registry: Registry, _ m: Manifest) async throws -> Bool {
        try await registry.metadata.manifest(repository: repo.value, digest: m.digest) != nil
    }

    /// The manifest's deletions in this region's log (applied or remembered), by stamp.
    func deletions(_ store: any MetadataBackend, _ m: Manifest) async throws -> [EventStamp] {
        try await store.registerWrites(repository: repo.value, key: .manifestDeletion(m.digest.string), before: nil, limit: 10).map(\.stamp)
    }

    @Test func aPeersDeletionKeepsAReferrerWrittenAfterItWhileItsOwnCascadeTakesTheOlderOne() async throws {
        let (registry, applier, store) = try await region()
        let subject = Self.image("subject")
        let older = Self.image("older note", subject: subject)
        let newer = Self.image("newer note", subject: subject)
        try await arrived(registry, subject, at: stamp(1, "westeurope"))
        try await arrived(registry, older, at: stamp(2, "westeurope"))
        // Pushed in eastus after westeurope deleted the subject (concurrently: eastus had not heard).
        try await arrived(registry, newer, at: stamp(20, "eastus"))

        // westeurope's deletion of the subject: the subject goes, and nothing else with it.
        try await apply(applier, event(.manifestDelete, subject.digest, at: stamp(10, "westeurope")), client: try nowhere())
        #expect(try await stored(registry, subject) == false)
        #expect(try await stored(registry, older))
        #expect(try await stored(registry, newer))
        // no deletion of either under the subject's stamp
        #expect(try await deletions(store, older).isEmpty)
        #expect(try await deletions(store, newer).isEmpty)

        // westeurope's cascade took the referrer it held, as a deletion of its own (stamped after the subject's).
        try await apply(applier, event(.manifestDelete, older.digest, at: stamp(10, "westeurope").advanced), client: try nowhere())
        #expect(try await stored(registry, older) == false)
        #expect(try await deletions(store, older) == [stamp(10, "westeurope").advanced.eventStamp])
        // The newer referrer stays, its subject gone (legal in OCI), and is still listed as a referrer of it.
        #expect(try await stored(registry, newer))
        let listed = try await registry.referrers(repo, subject: subject.digest, artifactType: nil, limit: nil, last: nil)
        #expect(listed.descriptors.map(\.digest) == [newer.digest.string])
    }

    @Test func aReferrerWhoseSubjectWasDeletedHereIsFetchedUnlessItsOwnDeletionIsNewer() async throws {
        let (registry, applier, store) = try await region()
        let subject = Self.image("subject")
        let local = Self.image("deleted here")
        let note = Self.image("note", subject: subject)
        let localNote = Self.image("note of a local deletion", subject: local)
        let gone = Self.image("note deleted later", subject: subject)
        try await arrived(registry, subject, at: stamp(1, "westeurope"))
        try await apply(applier, event(.manifestDelete, subject.digest, at: stamp(10, "westeurope")), client: try nowhere())
        // Deleted by a client here (a local deletion cascades as ever; it found no referrer).
        _ = try await registry.putManifest(repo, reference: .digest(local.digest), bytes: local.bytes, contentType: local.mediaType)
        try await registry.deleteManifest(repo, .digest(local.digest))
        // The referrer's own deletion is known here before its push arrives.
        try await apply(applier, event(.manifestDelete, gone.digest, at: stamp(40, "eastus")), client: try nowhere())

        try await Self.withPeer([note, localNote, gone]) { client, requests in
            try await apply(applier, event(.manifestPush, note.digest, at: stamp(20, "eastus")), client: client)
            #expect(try await stored(registry, note))
            #expect(try await stored(registry, subject) == false)
            // Its push stamped before the local deletion (pushed in a partition): fetched too.
            try await apply(applier, event(.manifestPush, localNote.digest, at: stamp(30, "eastus")), client: client)
            #expect(try await stored(registry, localNote))
            // A push older than the referrer's own deletion is not fetched, and is logged as lost.
            try await apply(applier, event(.manifestPush, gone.digest, at: stamp(35, "eastus")), client: client)
            #expect(try await stored(registry, gone) == false)
            #expect(!requests.withLockedValue { $0 }.contains { $0.hasSuffix(gone.digest.string) })
            let lost = try await store.replicationConflicts(location: nil, limit: 100)
            #expect(lost.contains { $0.kind == "manifest" && $0.key == gone.digest.string && $0.loserStamp == stamp(35, "eastus").eventStamp })
        }
    }

    @Test func aPeersDeletionOfAnIndexLeavesItsChildrenToTheirOwnDeletions() async throws {
        let (registry, applier, store) = try await region()
        let one = Self.image("child one")
        let two = Self.image("child two")
        let list = Self.index([one, two])
        try await arrived(registry, one, at: stamp(1, "westeurope"))
        try await arrived(registry, two, at: stamp(2, "westeurope"))
        try await arrived(registry, list, at: stamp(3, "westeurope"))
        // eastus tagged the second child after westeurope deleted the index (and, with it, both children).
        try await arrived(registry, two, tag: "kept", at: stamp(20, "eastus"))

        try await apply(applier, event(.manifestDelete, list.digest, at: stamp(10, "westeurope")), client: try nowhere())
        #expect(try await stored(registry, list) == false)
        #expect(try await stored(registry, one))   // nothing keeps it here, yet its deletion is westeurope's to tell
        #expect(try await stored(registry, two))

        // westeurope's cascade, in its feed after the index's deletion.
        let first = stamp(10, "westeurope").advanced, second = first.advanced
        try await apply(applier, event(.manifestDelete, one.digest, at: first), client: try nowhere())
        try await apply(applier, event(.manifestDelete, two.digest, at: second), client: try nowhere())
        #expect(try await stored(registry, one) == false)
        // The tag move is newer than the child's deletion: the child and its tag stay, the deletion is lost.
        #expect(try await stored(registry, two))
        #expect(try await registry.metadata.tagTarget(repository: repo.value, tag: "kept") == two.digest)
        let lost = try await store.replicationConflicts(location: nil, limit: 100)
        #expect(lost.contains { $0.kind == "manifest-delete" && $0.key == two.digest.string && $0.loserStamp == second.eventStamp })
    }

    /// What a peer replays: a deletion made here takes the referrers and the children nothing else
    /// keeps, and the log holds each as a deletion of its own, stamped after the manifest's.
    @Test func aDeletionMadeHereCascadesAndLogsEachManifestItTook() async throws {
        let (registry, _, store) = try await region()
        let one = Self.image("child")
        let list = Self.index([one])
        let note = Self.image("note of the index", subject: list)
        for m in [one, list, note] {
            _ = try await registry.putManifest(repo, reference: .digest(m.digest), bytes: m.bytes, contentType: m.mediaType)
        }
        let before = try await store.latestEventSequence()
        try await registry.deleteManifest(repo, .digest(list.digest))
        for m in [one, list, note] { #expect(try await stored(registry, m) == false) }
        let deleted = try await store.events(after: before, limit: 100).filter { $0.action == .manifestDelete }
        #expect(deleted.count == 3)
        #expect(deleted.first?.digest == list.digest.string)
        #expect(Set(deleted.dropFirst().compactMap(\.digest)) == [one.digest.string, note.digest.string])
        let stamps = deleted.map { WriteStamp($0.stamp, localRegion: "sea") }
        #expect(stamps == stamps.sorted() && Set(stamps).count == 3)
    }

    /// A client's push naming a tag that points at the manifest already is a write of that tag,
    /// with its own stamp: a peer's move of the tag stamped before it (concurrent: the peer had
    /// seen only the older write) loses to it and is logged, as it does in the peer's region.
    /// Before, the push stamped nothing and the peer's move took the tag silently (found while
    /// reading a failure of the partition test).
    @Test func aRetagToTheSameManifestWinsOverAPeersEarlierConcurrentMove() async throws {
        let (registry, applier, store) = try await region()
        let one = Self.image("one")
        let two = Self.image("two")
        let first = stamp(1, "westeurope")
        try await arrived(registry, one, tag: "t", at: first)
        try await arrived(registry, two, at: stamp(2, "eastus"))

        let before = try await store.latestEventSequence()
        _ = try await registry.putManifest(repo, reference: .tag("t"), bytes: one.bytes, contentType: one.mediaType)
        let retag = try #require(try await store.events(after: before, limit: 10).last)
        #expect(retag.action == .registerMark && retag.detail == EventAction.tagMove.rawValue && retag.tag == "t")
        let local = WriteStamp(retag.stamp, localRegion: "sea")
        #expect(try await applier.tagWrite(repo.value, "t") == RegisterWrite(value: .digest(one.digest.string), stamp: local, replaces: first))

        // eastus moved the tag having seen only westeurope's write
        let move = stamp(20, "eastus")
        var moved = event(.tagMove, two.digest, at: move, tag: "t")
        moved.replaces = first
        try await apply(applier, moved, client: try nowhere())
        #expect(try await registry.metadata.tagTarget(repository: repo.value, tag: "t") == one.digest)
        let lost = try await store.replicationConflicts(location: nil, limit: 10)
        #expect(lost.count == 1)
        #expect(lost.first.map { ($0.kind, $0.key, $0.loserValue, $0.loserStamp, $0.winnerStamp) }
                    .map { $0 == ("tag", "t", two.digest.string, move.eventStamp, local.eventStamp) } == true)
    }
}

/// Issue 13: a replicated tag write is applied only while the tag points where it did when the
/// merge was decided. A client's write to the same tag in this region in between (newer) stays:
/// the step is decided again, and the peer's older write loses to it (the partition test found a
/// region removing its own client's newer tag while applying an older move, and diverging).
@Suite struct ReplicationTagRaceTests {
    let repo = try! RepositoryName("geo/app")

    @Test(arguments: [false, true])
    func aClientsNewerTagWriteMadeWhileAPeersMoveIsAppliedStays(peerServesTheManifest: Bool) async throws {
        let cascade = ReplicationCascadeTests()
        let (registry, applier, store) = try await cascade.region()
        let one = ReplicationCascadeTests.image("one"), two = ReplicationCascadeTests.image("two")
        let three = ReplicationCascadeTests.image("three")
        let first = cascade.stamp(1, "westeurope")
        try await cascade.arrived(registry, one, tag: "t", at: first)
        let name = repo
        // eastus moved the tag to a manifest this region lacks; while it is fetched, a client here
        // moves the tag elsewhere (stamped now: newer than eastus's move)
        try await ReplicationCascadeTests.withPeer(peerServesTheManifest ? [two] : [], meanwhile: {
            _ = try await registry.putManifest(name, reference: .tag("t"), bytes: three.bytes, contentType: three.mediaType)
        }) { client, _ in
            let move = cascade.stamp(20, "eastus")
            var moved = cascade.event(.tagMove, two.digest, at: move, tag: "t")
            moved.replaces = first
            try await cascade.apply(applier, moved, client: client)
            #expect(try await registry.metadata.tagTarget(repository: name.value, tag: "t") == three.digest)
            // eastus's move lost to the client's write, and is logged so
            let lost = try await store.replicationConflicts(location: nil, limit: 10)
            #expect(lost.contains { $0.key == "t" && $0.loserStamp == move.eventStamp && $0.loserValue == two.digest.string })
            // the tag's newest write here is the client's
            #expect(try await applier.tagWrite(name.value, "t")?.value == .digest(three.digest.string))
        }
    }
}

extension WriteStamp {
    /// The next stamp of the same region (one logical tick later), as the next event of one transaction.
    var advanced: WriteStamp { WriteStamp(hlc: HLCStamp(milliseconds: hlc.milliseconds, logical: hlc.logical + 1), region: region) }
}
