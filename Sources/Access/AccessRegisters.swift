import Foundation
import OCIModel
import RegistryStore

// Access state as registers (issue 13, items 2-3): the access document is one compare-and-swap
// value in each region, but what replicates is each record of it, a last-writer-wins register
// keyed by (kind, name), so two regions changing different records at the same time both keep
// their change. A write of the document states which records it changed (`AccessRecordChange`,
// appended as `access` events in the same transaction); a peer fetches a changed record by kind
// and name and writes it here with `AccessControl.applyReplicatedRecord`.

/// The kinds of access records that replicate. Network rules (the firewall and IP rules) are
/// not among them: addresses differ per region, so each region keeps its own.
public enum AccessRecordKind: String, CaseIterable, Sendable {
    /// An identity with its roles, federated credentials, password hash, generation and subject id.
    case identity
    /// A scope map (the built-in ones are every region's own and never replicate).
    case scopeMap = "scope-map"
    /// A token with its hashed passwords, generation and subject id.
    case token
    /// The registry-wide access flags, one record each: `admin` (the admin user: on/off, its
    /// hashed passwords and generation) and `anonymous-pull`.
    case registry

    /// The names of the `registry` records.
    public static let registryRecords: [String] = ["admin", "anonymous-pull"]
}

extension AccessState {
    /// One record's canonical JSON (sorted keys, dates as seconds): what a peer is served and what
    /// the `access` event's digest is the SHA-256 of; nil when there is no such record (or it never
    /// replicates: a built-in scope map, an unknown registry flag).
    public func recordDocument(kind: AccessRecordKind, name: String) throws -> Data? {
        let encoder = JSONEncoder.access
        switch kind {
        case .identity:
            return try identities[name].map { try encoder.encode($0) }
        case .scopeMap:
            guard let map = scopeMaps[name], !map.builtIn, !Self.isBuiltInScopeMap(name) else { return nil }
            return try encoder.encode(map)
        case .token:
            return try tokens[name].map { try encoder.encode($0) }
        case .registry:
            switch name {
            case "admin": return try encoder.encode(admin)
            case "anonymous-pull": return try encoder.encode(anonymousPullEnabled)
            default: return nil
            }
        }
    }

    static func isBuiltInScopeMap(_ name: String) -> Bool { builtInScopeMaps.contains { $0.name == name } }

    /// The records that differ between two states, each with the digest of its new canonical JSON
    /// (nil: deleted), in a stable order. Network rules are not compared (per region).
    public static func changes(from old: AccessState, to new: AccessState) throws -> [AccessRecordChange] {
        var out: [AccessRecordChange] = []
        func note(_ kind: AccessRecordKind, _ name: String) throws {
            let digest = try new.recordDocument(kind: kind, name: name).map { Digest.compute(Array($0)).string }
            out.append(AccessRecordChange(kind: kind.rawValue, name: name, digest: digest))
        }
        func compare<V: Equatable>(_ kind: AccessRecordKind, _ a: [String: V], _ b: [String: V]) throws {
            for name in Set(a.keys).union(b.keys).sorted() where a[name] != b[name] {
                if kind == .scopeMap, isBuiltInScopeMap(name) { continue }
                try note(kind, name)
            }
        }
        try compare(.identity, old.identities, new.identities)
        try compare(.scopeMap, old.scopeMaps, new.scopeMaps)
        try compare(.token, old.tokens, new.tokens)
        if old.admin != new.admin { try note(.registry, "admin") }
        if old.anonymousPullEnabled != new.anonymousPullEnabled { try note(.registry, "anonymous-pull") }
        return out
    }

    /// Writes one record from its canonical JSON (nil: deletes it), as a peer served it: the
    /// record must decode as its kind and name itself. A built-in scope map, an unknown flag, or
    /// the deletion of a registry flag is refused.
    public mutating func setRecord(kind: AccessRecordKind, name: String, document: Data?) throws(AccessError) {
        let decoder = JSONDecoder.access
        if kind != .registry { try AccessControl.checkName(name, what: kind.rawValue) }
        func decode<T: Decodable>(_ type: T.Type) throws(AccessError) -> T {
            do { return try decoder.decode(T.self, from: document ?? Data()) } catch {
                throw .invalid("the \(kind.rawValue) record \(name) cannot be read")
            }
        }
        switch kind {
        case .identity:
            guard document != nil else { identities[name] = nil; return }
            let identity = try decode(Identity.self)
            guard identity.name == name else { throw .invalid("the identity record names \(identity.name), not \(name)") }
            identities[name] = identity
        case .scopeMap:
            guard !Self.isBuiltInScopeMap(name) else { throw .invalid("built-in scope map \(name) is every region's own") }
            guard document != nil else { scopeMaps[name] = nil; return }
            let map = try decode(ScopeMap.self)
            guard map.name == name, !map.builtIn else { throw .invalid("the scope map record is not scope map \(name)") }
            scopeMaps[name] = map
        case .token:
            guard document != nil else { tokens[name] = nil; return }
            let token = try decode(Token.self)
            guard token.name == name else { throw .invalid("the token record names \(token.name), not \(name)") }
            tokens[name] = token
        case .registry:
            guard document != nil else { throw .invalid("registry flag \(name) cannot be deleted") }
            switch name {
            case "admin": admin = try decode(Admin.self)
            case "anonymous-pull": anonymousPullEnabled = try decode(Bool.self)
            default: throw .invalid("unknown registry flag \(name)")
            }
        }
    }
}

extension AccessControl {
    /// One record's canonical JSON as this region holds it now (nil: none), for a peer's
    /// Replicator; the state is read again first if another node changed it.
    public func replicatedRecord(kind: AccessRecordKind, name: String) async throws -> Data? {
        try await refreshIfChanged()
        return try state.recordDocument(kind: kind, name: name)
    }

    /// Writes one record a peer served (nil: its tombstone) through the usual compare-and-swap,
    /// retried; the `access` event it appends takes `EventOrigin.current` (the peer's stamp when
    /// the applier runs it), so it is never sent back. Verified credentials cached here are
    /// dropped, so a revoked token or disabled identity stops working at once.
    ///
    /// Written only while the stored access state is still `ifVersion` (read before the caller
    /// decided the write wins): false when another write came first, and the caller decides again.
    /// The write is always this log's newest write of the record, even when the record here is
    /// already what the peer wrote (its event is appended all the same).
    public func applyReplicatedRecord(kind: AccessRecordKind, name: String, document: Data?, actor: String,
                                      ifVersion: Int64) async throws -> Bool {
        let change = AccessRecordChange(kind: kind.rawValue, name: name, digest: document.map { Digest.compute(Array($0)).string })
        return try await update(ifVersion: ifVersion, recording: change,
                                audit: AuditRecord(actor: actor, address: "-", action: "access.replicate", target: "\(kind.rawValue):\(name)",
                                                   outcome: "ok", detail: document == nil ? "deleted" : "written")) { s in
            try s.setRecord(kind: kind, name: name, document: document)
        }
    }

    /// The stored access state's version (0 before the first write).
    public func storedAccessStateVersion() async throws -> Int64 {
        try await store.accessStateVersion() ?? 0
    }
}
