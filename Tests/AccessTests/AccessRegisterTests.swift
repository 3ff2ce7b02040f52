import Foundation
import OCIModel
import RegistryStore
import SQLiteStore
import Testing
@testable import Access

/// Access state as per-record registers (issue 13): which records a write changed, the `access`
/// events it appends with its compare-and-swap, and a record carried to another region's state
/// (as the replication applier does) working there.
@Suite struct AccessRegisterTests {
    static func opened() async throws -> (AccessControl, SQLiteMetadataStore) {
        let dir = NSTemporaryDirectory() + "berth-access-registers-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try SQLiteMetadataStore(path: dir + "/metadata.sqlite")
        return (try await AccessControl.open(store: store, keyDirectory: dir + "/keys"), store)
    }

    static func accessEvents(_ store: SQLiteMetadataStore) async throws -> [Event] {
        try await store.events(after: 0, limit: 100).filter { $0.action == .access }
    }

    @Test func changesNameEachChangedRecordWithItsDigestOrATombstone() throws {
        var old = try AccessControl.decodeState(nil)
        old.identities["alice"] = .init(name: "alice", kind: .user, passwordHash: "h1", createdAt: Date(timeIntervalSince1970: 1), subjectID: "s-a")
        old.identities["bob"] = .init(name: "bob", kind: .user, createdAt: Date(timeIntervalSince1970: 1), subjectID: "s-b")
        var new = old
        new.identities["alice"]!.generation += 1
        new.identities["bob"] = nil
        new.tokens["ci"] = .init(name: "ci", scopeMap: "_repositories_pull", createdAt: Date(timeIntervalSince1970: 2), subjectID: "s-ci")
        new.admin.enabled = true
        new.network.publicNetworkEnabled.toggle()      // per region: never a change that replicates
        let changes = try AccessState.changes(from: old, to: new)
        #expect(changes.map(\.detail) == ["identity:alice", "identity:bob", "token:ci", "registry:admin"])
        let aliceJSON = try #require(try new.recordDocument(kind: .identity, name: "alice"))
        #expect(changes[0].digest == Digest.compute(Array(aliceJSON)).string)
        #expect(changes[1].digest == nil)
        // the canonical JSON holds no secret in the clear, but does carry the hash a peer needs
        #expect(String(decoding: aliceJSON, as: UTF8.self).contains("\"passwordHash\":\"h1\""))
        // nothing changed: nothing to replicate; built-in scope maps are every region's own
        #expect(try AccessState.changes(from: new, to: new).isEmpty)
        #expect(try new.recordDocument(kind: .scopeMap, name: "_repositories_pull") == nil)
        #expect(try new.recordDocument(kind: .registry, name: "anonymous-pull") == Data("false".utf8))
    }

    @Test func aRecordMovesToAnotherStateExactlyAndBadRecordsAreRefused() throws {
        var a = try AccessControl.decodeState(nil)
        a.scopeMaps["team"] = .init(name: "team", description: "d", entries: [.init(repository: try RepositoryPattern("team/*"), actions: ["content/read"])])
        a.tokens["ci"] = .init(name: "ci", scopeMap: "team", password1: .init(hash: "hash", expiry: nil, createdAt: Date(timeIntervalSince1970: 5)),
                               generation: 3, createdAt: Date(timeIntervalSince1970: 5), subjectID: "sid-ci")
        var b = try AccessControl.decodeState(nil)
        for (kind, name) in [(AccessRecordKind.scopeMap, "team"), (.token, "ci")] {
            try b.setRecord(kind: kind, name: name, document: try a.recordDocument(kind: kind, name: name))
            #expect(try b.recordDocument(kind: kind, name: name) == (try a.recordDocument(kind: kind, name: name)))
        }
        #expect(b.tokens["ci"] == a.tokens["ci"] && b.scopeMaps["team"] == a.scopeMaps["team"])
        let token = try #require(try a.recordDocument(kind: .token, name: "ci"))
        // a record that names another record, a bad name, a built-in map, garbage, a flag's tombstone: refused
        #expect(throws: AccessError.self) { try b.setRecord(kind: .token, name: "other", document: token) }
        #expect(throws: AccessError.self) { try b.setRecord(kind: .token, name: "../ci", document: token) }
        #expect(throws: AccessError.self) { try b.setRecord(kind: .scopeMap, name: "_repositories_admin", document: nil) }
        #expect(throws: AccessError.self) { try b.setRecord(kind: .identity, name: "ci", document: token) }
        #expect(throws: AccessError.self) { try b.setRecord(kind: .registry, name: "admin", document: nil) }
        #expect(throws: AccessError.self) { try b.setRecord(kind: .registry, name: "network", document: Data("{}".utf8)) }
        // a tombstone removes
        try b.setRecord(kind: .token, name: "ci", document: nil)
        #expect(b.tokens["ci"] == nil)
    }

    @Test func eachWriteAppendsItsAccessEventsButTheBootstrapOwnerIsTheRegionsOwn() async throws {
        let (access, store) = try await Self.opened()
        _ = try await access.bootstrap(ownerPassword: "owner-pw")
        #expect(try await Self.accessEvents(store).isEmpty)
        _ = try await access.createIdentity(admin, name: "alice")
        _ = try await access.assignRole(admin, assignee: "alice", role: "Pull", scope: "*")
        try await access.deleteIdentity(admin, name: "alice")
        let events = try await Self.accessEvents(store)
        #expect(events.map(\.detail) == ["identity:alice", "identity:alice", "identity:alice"])
        #expect(events[0].digest != nil && events[1].digest != nil && events[0].digest != events[1].digest && events[2].digest == nil)
        #expect(events.allSatisfy { $0.repository.isEmpty && $0.tag == nil })
    }

    /// A peer's record is written only at the access-state version the applier decided at: a
    /// local write in between (here: a disable) fails it, so an older peer write never undoes a
    /// newer one here. A peer write that changes nothing here is still this log's newest write of
    /// the record (its event appended), so a later merge compares against it.
    @Test func aReplicatedWriteIsMadeOnlyAtTheVersionItWasDecidedAt() async throws {
        let (west, _) = try await Self.opened()
        let (sea, seaStore) = try await Self.opened()
        _ = try await west.createIdentity(admin, name: "dev")
        try await sea.applyReplicated(.identity, "dev", from: west)
        let decided = try await sea.storedAccessStateVersion()
        _ = try await sea.updateIdentity(admin, name: "dev", enabled: false, trustedService: nil)
        let stale = try await sea.applyReplicatedRecord(kind: .identity, name: "dev",
                                                        document: try await west.replicatedRecord(kind: .identity, name: "dev"),
                                                        actor: "replication:westeurope", ifVersion: decided)
        #expect(!stale)
        #expect(sea.state.identities["dev"]?.enabled == false)
        // a write that changes nothing here (the tombstone of a record sea lacks): its event is appended all the same
        let before = try await Self.accessEvents(seaStore).count
        try await sea.applyReplicated(.token, "absent", from: west)   // a tombstone of a record sea lacks
        try await sea.applyReplicated(.identity, "dev", from: west)
        let after = try await Self.accessEvents(seaStore)
        #expect(after.count == before + 2)
        #expect(after.suffix(2).map(\.detail) == ["token:absent", "identity:dev"])
        #expect(after.last?.digest == (try await west.replicatedRecord(kind: .identity, name: "dev")).map { Digest.compute(Array($0)).string })
    }

    /// What the applier does between two regions: region B takes A's token record (hashed
    /// passwords, generation, subject id) and A's password then works in B; a later regenerate
    /// in A, carried over, stops the old password in B.
    @Test func aTokenCarriedToAnotherRegionWorksThereAndItsRevocationToo() async throws {
        let (west, _) = try await Self.opened()
        let (sea, seaStore) = try await Self.opened()
        _ = try await west.putScopeMap(admin, name: "team", description: nil,
                                       entries: [.init(repository: try RepositoryPattern("team/*"), actions: ["content/read"])], create: true)
        let (_, passwords) = try await west.createToken(admin, name: "ci", scopeMap: "team")
        let password = try #require(passwords["password1"])
        for (kind, name) in [(AccessRecordKind.scopeMap, "team"), (.token, "ci")] {
            try await sea.applyReplicated(kind, name, from: west)
        }
        let (principal, subject) = try await sea.authenticate(username: "ci", password: password, address: here, service: "s")
        #expect(subject == "token:ci" && principal.name == "ci")
        // the record written in sea is its own access event there (what sea's feed would serve on)
        #expect(try await Self.accessEvents(seaStore).map(\.detail) == ["scope-map:team", "token:ci"])
        try await west.deleteToken(admin, name: "ci")
        try await sea.applyReplicated(.token, "ci", from: west)
        await #expect(throws: AccessError.invalidCredentials) {
            try await sea.authenticate(username: "ci", password: password, address: here, service: "s")
        }
    }
}

extension AccessControl {
    /// A peer's record written here with no write of this region in between (what the applier
    /// does once it decided the peer's write wins).
    func applyReplicated(_ kind: AccessRecordKind, _ name: String, from peer: AccessControl) async throws {
        let written = try await applyReplicatedRecord(kind: kind, name: name, document: try await peer.replicatedRecord(kind: kind, name: name),
                                                      actor: "replication:westeurope", ifVersion: try await storedAccessStateVersion())
        #expect(written)
    }
}

/// A region's public keys as a test stands in for the replication feature's fetch.
struct FixedPeerKeys: PeerTokenKeys {
    var keys: [String: [(kid: String, pem: String)]]
    func publicKeyPEM(region: String, kid: String) async -> String? {
        keys[region]?.first { $0.kid == kid }?.pem
    }
}

/// Issue 13: a registry token of one region is accepted by its peers, verified with the issuing
/// region's own public keys and judged against the identity state replicated there.
@Suite struct PeerTokenTests {
    /// Two regions, southeastasia knowing westeurope's token keys, and an identity `dev` with the
    /// Pull role made in westeurope (not replicated yet).
    static func westAndSea() async throws -> (west: AccessControl, sea: AccessControl, dev: Authenticated) {
        let (west, _) = try await AccessRegisterTests.opened()
        let (sea, _) = try await AccessRegisterTests.opened()
        west.tokens.setRegion("westeurope", peers: nil)
        sea.tokens.setRegion("southeastasia", peers: FixedPeerKeys(keys: ["westeurope": try await west.tokens.publicKeys()]))
        _ = try await west.createIdentity(admin, name: "dev")
        _ = try await west.assignRole(admin, assignee: "dev", role: "Pull", scope: "*")
        return (west, sea, try #require(west.current(subject: "identity:dev")))
    }

    @Test func aPeersAccessTokenVerifiesWithItsKeysOnlyAndOnlyForAKnownSubject() async throws {
        let (west, sea, who) = try await Self.westAndSea()
        let (token, _) = try await west.issueToken(who, audience: "registry", type: "access", access: nil)
        // the signature and the issuing region verify in sea ...
        let payload = try #require(await sea.tokens.verify(token, audience: "registry", type: "access"))
        #expect(payload.rgn == "westeurope" && payload.sub.value == "identity:dev")
        // ... but sea does not know dev yet: refused
        #expect(await sea.authenticateBearer(token, service: "registry", address: here) == nil)
        try await sea.applyReplicated(.identity, "dev", from: west)
        let caller = try #require(await sea.authenticateBearer(token, service: "registry", address: here))
        #expect(caller.principal.name == "dev")
        // a disable in west, replicated, bumps the generation: the token stops working in sea too
        _ = try await west.updateIdentity(admin, name: "dev", enabled: false, trustedService: nil)
        try await sea.applyReplicated(.identity, "dev", from: west)
        #expect(await sea.authenticateBearer(token, service: "registry", address: here) == nil)
        // another audience: refused
        #expect(await sea.tokens.verify(token, audience: "other", type: "access") == nil)
    }

    @Test func aPeersRefreshTokenLogsInThereWhileItsIdentityHoldsAndARunTokenNever() async throws {
        let (west, sea, who) = try await Self.westAndSea()
        try await sea.applyReplicated(.identity, "dev", from: west)
        let (refresh, _) = try await west.issueToken(who, audience: "s", type: "refresh", access: nil)
        // a refresh token is not an access token, here as in west
        #expect(await sea.tokens.verify(refresh, audience: "s", type: "access") == nil)
        let (principal, subject) = try await sea.authenticate(username: AccessControl.refreshTokenUser, password: refresh, address: here,
                                                              service: "s")
        #expect(subject == "identity:dev" && principal.name == "dev")
        // the replica removed: its tokens stop at once (a peer's token is verified at each use)
        sea.tokens.setRegion("southeastasia", peers: nil)
        #expect(await sea.tokens.verify(refresh, audience: "s", type: "refresh") == nil)
        sea.tokens.setRegion("southeastasia", peers: FixedPeerKeys(keys: ["westeurope": try await west.tokens.publicKeys()]))
        #expect(sea.tokens.peerRegion(of: refresh) == "westeurope" && west.tokens.peerRegion(of: refresh) == nil)
        // a disable in west, replicated: the refresh token stops working in sea too
        _ = try await west.updateIdentity(admin, name: "dev", enabled: false, trustedService: nil)
        try await sea.applyReplicated(.identity, "dev", from: west)
        await #expect(throws: AccessError.self) {
            try await sea.authenticate(username: AccessControl.refreshTokenUser, password: refresh, address: here, service: "s")
        }
        // a peer's run token is never taken here
        let (run, _) = try await west.tokens.issue(subject: "identity:dev", subjectID: who.subjectID, audience: "s", type: "run",
                                                   generation: who.generation, access: nil)
        #expect(await sea.tokens.verify(run, audience: "s", type: "run") == nil)
    }

    @Test func aKeyOfOneRegionNeverVerifiesATokenNamingAnotherOrThisOne() async throws {
        let (west, _) = try await AccessRegisterTests.opened()
        let (sea, _) = try await AccessRegisterTests.opened()
        let westKeys = try await west.tokens.publicKeys()
        #expect(westKeys.count == 1 && westKeys[0].kid == west.tokens.currentKeyID)
        // west's keys listed under eastus: a token naming westeurope finds no key
        sea.tokens.setRegion("southeastasia", peers: FixedPeerKeys(keys: ["eastus": westKeys]))
        west.tokens.setRegion("westeurope", peers: nil)
        let (token, _) = try await west.tokens.issue(subject: "identity:x", subjectID: "s", audience: "registry", type: "access",
                                                     generation: 0, access: nil)
        #expect(await sea.tokens.verify(token, audience: "registry", type: "access") == nil)
        // a token signed with a peer's key that claims to be this region's own: refused
        sea.tokens.setRegion("southeastasia", peers: FixedPeerKeys(keys: ["southeastasia": westKeys, "westeurope": westKeys]))
        west.tokens.setRegion("southeastasia", peers: nil)
        let (forged, _) = try await west.tokens.issue(subject: "identity:x", subjectID: "s", audience: "registry", type: "access",
                                                      generation: 0, access: nil)
        #expect(await sea.tokens.verify(forged, audience: "registry", type: "access") == nil)
        // a token without a region (an older build's) from a peer: refused
        west.tokens.setRegion("", peers: nil)
        let (bare, _) = try await west.tokens.issue(subject: "identity:x", subjectID: "s", audience: "registry", type: "access",
                                                    generation: 0, access: nil)
        #expect(await sea.tokens.verify(bare, audience: "registry", type: "access") == nil)
        // no peers at all: only this region's own tokens
        sea.tokens.setRegion("southeastasia", peers: nil)
        west.tokens.setRegion("westeurope", peers: nil)
        let (plain, _) = try await west.tokens.issue(subject: "identity:x", subjectID: "s", audience: "registry", type: "access",
                                                     generation: 0, access: nil)
        #expect(await sea.tokens.verify(plain, audience: "registry", type: "access") == nil)
        #expect(await west.tokens.verify(plain, audience: "registry", type: "access")?.rgn == "westeurope")
    }
}
