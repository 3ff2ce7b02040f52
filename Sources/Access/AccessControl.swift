import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore

/// Who made a request and with what restrictions, once authenticated.
public struct Caller: Sendable, Equatable {
    public var principal: Principal
    /// `type:name:actions` entries of a bearer token; nil when the request carried credentials
    /// directly (Basic), which are not narrowed by a token.
    public var tokenAccess: [AccessClaim]?
    public var address: IPAddress?

    public init(principal: Principal, tokenAccess: [AccessClaim]? = nil, address: IPAddress?) {
        self.principal = principal
        self.tokenAccess = tokenAccess
        self.address = address
    }
}

/// A successful login: who it is, and what a token issued for it is bound to (the subject's
/// immutable id and its credential generation, read from the same state as the principal).
public struct Authenticated: Sendable {
    public var principal: Principal
    /// `identity:<name>`, `token:<name>`, `admin` or `anonymous`.
    public var subject: String
    public var subjectID: String?
    public var generation: Int

    public init(principal: Principal, subject: String, subjectID: String?, generation: Int) {
        self.principal = principal
        self.subject = subject
        self.subjectID = subjectID
        self.generation = generation
    }
}

public enum AccessError: Error, Equatable, Sendable {
    case invalidCredentials
    case rateLimited(retryAfter: Int)
    case invalid(String)
    case notFound(String)
    case conflict(String)
}

/// The outcome of the one authorization function.
public enum Decision: Equatable, Sendable {
    case allow
    /// 401 with a Bearer challenge; `insufficientScope` when a token lacks what the request needs.
    case challenge(insufficientScope: Bool)
    /// 403 DENIED with a reason for the client.
    case deny(String)
}

/// A requested scope in the Docker token grammar (`repository:<name>:pull,push`): the same
/// `type:name:actions` triple a token's `access` claim grants.
public typealias ScopeRequest = AccessClaim

extension AccessClaim {
    /// Parses one scope string; names may contain `:` only in a host:port prefix, so the
    /// type is before the first colon and the actions after the last.
    public init?(parsing raw: String) {
        guard let first = raw.firstIndex(of: ":"), let last = raw.lastIndex(of: ":"), first < last else { return nil }
        let type = String(raw[..<first])
        let name = String(raw[raw.index(after: first)..<last])
        guard !type.isEmpty, !name.isEmpty, name.utf8.count <= 512 else { return nil }
        self.init(type: type, name: name, actions: raw[raw.index(after: last)...].split(separator: ",").map(String.init))
    }
}

/// Access control: authentication of every kind of credential, the authorization decision, the
/// token grants, and changes to identities, scope maps, tokens and settings.
public final class AccessControl: Sendable {
    public let tokens: TokenService
    /// The admin user's name.
    public let registryName: String
    let store: any AccessStateStore
    let logger: Logger
    private let snapshot: NIOLockedValueBox<(version: Int64, state: AccessState)>
    private let credentialCache = NIOLockedValueBox<[Data: CachedCredential]>([:])
    private let cacheKey = SymmetricKey(size: .bits256)
    let limiter = FailureLimiter()
    let oidc: OIDCVerifier
    /// Another process may change the stored state: its version is checked at most this often
    /// (seconds, on `clock`) when a credential is presented, and the state read again if it moved.
    let stateCheckInterval: Double
    let clock: @Sendable () -> Double
    private let lastStateCheck = NIOLockedValueBox(-Double.infinity)
    /// Failed logins of other nodes are read from the store at most this often (seconds, on
    /// `clock`), when a login is checked: a lock-out reached over several nodes holds on every
    /// node within this interval (plus the time of one store write).
    let failureCheckInterval: Double
    private let failureSync = NIOLockedValueBox((checked: -Double.infinity, pruned: -Double.infinity))

    struct CachedCredential {
        var subject: String
        var subjectID: String?
        var generation: Int
        var until: Date
    }

    /// The well-known user name with which a Berth refresh token is presented as a password.
    public static let refreshTokenUser = "00000000-0000-0000-0000-000000000000"
    /// The well-known user name with which a CI job presents its OIDC ID token as a password.
    public static let oidcTokenUser = "oidc-token"

    init(store: any AccessStateStore, tokens: TokenService, registryName: String, logger: Logger,
         state: (version: Int64, state: AccessState), jwksSource: any JWKSSource, stateCheckInterval: Double = 2,
         failureCheckInterval: Double = 1,
         clock: @escaping @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime }) {
        self.oidc = OIDCVerifier(source: jwksSource)
        self.stateCheckInterval = stateCheckInterval
        self.failureCheckInterval = failureCheckInterval
        self.clock = clock
        self.store = store
        self.tokens = tokens
        self.registryName = registryName
        self.logger = logger
        self.snapshot = NIOLockedValueBox(state)
    }

    /// Opens the access state of `store` and the token signing keys shared in it, sealed under
    /// `keyEncryptionKey` (default: the key file `KeyEncryptionKey.defaultFile` under `keyDirectory`,
    /// created at first start: right for one node only). Keys of an installation from before they
    /// were shared are imported from `keyDirectory`; nil: none are, and `keyEncryptionKey` must be
    /// given.
    public static func open(store: any AccessStateStore & KeyMaterialStore, keyDirectory: String?,
                            keyEncryptionKey: KeyEncryptionKey? = nil, registryName: String = "berth",
                            jwksSource: any JWKSSource = HTTPJWKSSource(),
                            logger: Logger = Logger(label: "berth.access"), stateCheckInterval: Double = 2,
                            failureCheckInterval: Double = 1,
                            clock: @escaping @Sendable () -> Double = { ProcessInfo.processInfo.systemUptime })
        async throws -> AccessControl {
        guard let kek = try keyEncryptionKey ?? keyDirectory.map({ try KeyEncryptionKey.readOrCreate(path: $0 + "/" + KeyEncryptionKey.defaultFile) })
        else { throw KeyMaterialError("no key-encryption key: give one, or a key directory to keep it in") }
        let tokens = try await TokenService.open(shared: SharedKeyMaterial(store: store, kek: kek), importing: keyDirectory)
        var loaded: (version: Int64, state: AccessState) = (0, AccessState())
        if let (version, document) = try await store.loadAccessState() {
            loaded = (version, try decodeState(document))
        } else {
            loaded.state = try decodeState(nil)
        }
        let needsSubjectIDs = loaded.state.identities.values.contains { $0.subjectID == nil }
            || loaded.state.tokens.values.contains { $0.subjectID == nil }
        let access = AccessControl(store: store, tokens: tokens, registryName: registryName, logger: logger, state: loaded,
                                   jwksSource: jwksSource, stateCheckInterval: stateCheckInterval,
                                   failureCheckInterval: failureCheckInterval, clock: clock)
        if needsSubjectIDs {
            // Records from before subject ids: give each one now and store it, so the id never
            // changes again (`update` assigns the missing ones).
            try await access.update(audit: AuditRecord(actor: "berth", address: "-", action: "access.migrate", target: "subject-ids",
                                                       outcome: "ok", detail: "gave identities and tokens immutable subject ids")) { _ in }
        }
        return access
    }

    public var state: AccessState { snapshot.withLockedValue { $0.state } }

    /// Whether the caller is an enabled identity that holds the `Replicator` role on the whole
    /// registry itself: who may read access records with their password hashes for replication.
    /// The role's action is also in every Owner's and the admin user's rights (`Action.all`),
    /// and they must not read hashes no management answer shows.
    public func holdsReplicatorRole(_ caller: Caller?) -> Bool {
        guard let caller, caller.principal.kind == .identity,
              let identity = state.identities[caller.principal.name], identity.enabled else { return false }
        return identity.roles.contains { $0.role == .replicator && $0.scope.value == "*" }
    }

    /// A stored state document as this process holds it (the built-in scope maps added).
    static func decodeState(_ document: Data?) throws -> AccessState {
        var state = try document.map { try JSONDecoder.access.decode(AccessState.self, from: $0) } ?? AccessState()
        for map in AccessState.builtInScopeMaps where state.scopeMaps[map.name] == nil {
            state.scopeMaps[map.name] = map
        }
        return state
    }

    /// Reads the state again when another process (or another AccessControl on the same store)
    /// changed it since this one loaded it, and drops the verified credentials cached under the
    /// old one: a revoked token or identity stops working here too.
    public func refreshIfChanged() async throws {
        guard let stored = try await store.accessStateVersion(),
              stored > snapshot.withLockedValue({ $0.version }),
              let (version, document) = try await store.loadAccessState() else { return }
        let fresh = try Self.decodeState(document)
        snapshot.withLockedValue { current in
            if current.version < version { current = (version, fresh) }
        }
        credentialCache.withLockedValue { $0.removeAll() }
    }

    /// `refreshIfChanged`, at most once per `stateCheckInterval`: the backstop for a process whose
    /// cache-invalidation loop is not running.
    public func refreshIfStale() async {
        let now = clock()
        let due = lastStateCheck.withLockedValue { last in
            guard now - last >= stateCheckInterval else { return false }
            last = now
            return true
        }
        guard due else { return }
        do {
            try await refreshIfChanged()
        } catch {
            logger.warning("could not check the stored access state", metadata: ["error": "\(error)"])
        }
    }

    // MARK: changes

    /// Applies a change to the access state as one compare-and-swap write with its audit record,
    /// retrying if another writer got in first. Caches of verified credentials are dropped.
    /// The records it changed are appended as `access` events in the same write (what other
    /// regions replicate), unless `replicate` is false (the bootstrap owner: each region's own).
    @discardableResult
    public func update<T: Sendable>(audit: AuditRecord, replicate: Bool = true,
                                    _ change: @Sendable (inout AccessState) throws -> T) async throws -> T {
        for _ in 0..<10 {
            var (version, state) = snapshot.withLockedValue { $0 }
            let before = state
            let result = try change(&state)
            state.assignMissingSubjectIDs()
            let document = try JSONEncoder.access.encode(state)
            let changes = replicate ? try AccessState.changes(from: before, to: state) : []
            if try await store.storeAccessState(document, expectedVersion: version, audit: audit, changes: changes) {
                version += 1
                snapshot.withLockedValue { current in
                    if current.version < version { current = (version, state) }
                }
                credentialCache.withLockedValue { $0.removeAll() }
                return result
            }
            // Somebody else wrote: reload and try again.
            if let (v, d) = try await store.loadAccessState() {
                let fresh = try JSONDecoder.access.decode(AccessState.self, from: d)
                snapshot.withLockedValue { $0 = (v, fresh) }
            }
        }
        throw AccessError.conflict("access state changed concurrently; try again")
    }

    /// One compare-and-swap write of `change`, made only if the stored state is still at
    /// `ifVersion` (not retried: false when another write came first). `recording` is the
    /// `access` event appended when the change leaves that record as it was.
    func update(ifVersion: Int64, recording: AccessRecordChange, audit: AuditRecord,
                _ change: (inout AccessState) throws -> Void) async throws -> Bool {
        try await refreshIfChanged()
        var (version, state) = snapshot.withLockedValue { $0 }
        guard version == ifVersion else { return false }
        let before = state
        try change(&state)
        state.assignMissingSubjectIDs()
        let document = try JSONEncoder.access.encode(state)
        var changes = try AccessState.changes(from: before, to: state)
        if !changes.contains(where: { $0.kind == recording.kind && $0.name == recording.name }) { changes.append(recording) }
        guard try await store.storeAccessState(document, expectedVersion: version, audit: audit, changes: changes) else { return false }
        version += 1
        snapshot.withLockedValue { current in
            if current.version < version { current = (version, state) }
        }
        credentialCache.withLockedValue { $0.removeAll() }
        return true
    }

    /// First start: creates the `owner` identity with the Owner role. Returns the generated
    /// password when one was generated (nil when taken from the environment or already set up).
    public func bootstrap(ownerPassword: String?) async throws -> String? {
        guard state.identities.isEmpty else { return nil }
        let password = ownerPassword ?? Secrets.generate()
        let hash = Secrets.hashPassword(password)
        try await update(audit: AuditRecord(actor: "berth", address: "-", action: "identity.create", target: "owner",
                                            outcome: "ok", detail: "bootstrap"), replicate: false) { s in
            guard s.identities.isEmpty else { return }
            s.identities["owner"] = .init(name: "owner", kind: .user, passwordHash: hash,
                                          roles: [.init(role: .owner, scope: try RepositoryPattern("*"))], createdAt: Date())
        }
        return ownerPassword == nil ? password : nil
    }

    // MARK: principals

    /// The principal behind a subject, if it still exists and is enabled. With a `generation`
    /// (checking a token) the subject must also still be the very record the token was issued to:
    /// the same immutable `subjectID` (never reused, so a deleted identity or token re-created
    /// under the same name does not inherit the old one's tokens) and the same generation.
    public func principal(subject: String, generation: Int?, subjectID: String? = nil) -> Principal? {
        Self.principal(in: state, subject: subject, generation: generation, subjectID: subjectID, registryName: registryName)
    }

    static func principal(in s: AccessState, subject: String, generation: Int?, subjectID: String?,
                          registryName: String) -> Principal? {
        func current(_ id: String?, _ gen: Int) -> Bool {
            guard let generation else { return true }
            return generation == gen && id != nil && subjectID == id
        }
        if subject == "admin" {
            // The admin user is never deleted, so its generation never restarts.
            guard s.admin.enabled, generation == nil || generation == s.admin.generation else { return nil }
            return Principal(kind: .admin, name: registryName, grants: [Grant(try! RepositoryPattern("*"), .all)], registryActions: .all)
        }
        if subject == "anonymous" {
            return anonymousPrincipal(s)
        }
        if subject.hasPrefix("identity:") {
            let name = String(subject.dropFirst(9))
            guard let identity = s.identities[name], identity.enabled, current(identity.subjectID, identity.generation) else { return nil }
            return Self.principal(for: identity)
        }
        if subject.hasPrefix("token:") {
            let name = String(subject.dropFirst(6))
            guard let token = s.tokens[name], token.enabled, current(token.subjectID, token.generation),
                  let map = s.scopeMaps[token.scopeMap] else { return nil }
            return Principal(kind: .token, name: name, grants: map.grants)
        }
        if let run = RunIdentity(subject: subject) {
            // Its rights and deadline are in the (signed) subject itself.
            return run.principal()
        }
        return nil
    }

    /// What a token issued now for `subject` is bound to: its immutable id and current generation.
    static func binding(in s: AccessState, subject: String) -> (subjectID: String?, generation: Int) {
        if subject == "admin" { return (nil, s.admin.generation) }
        if subject.hasPrefix("identity:"), let i = s.identities[String(subject.dropFirst(9))] { return (i.subjectID, i.generation) }
        if subject.hasPrefix("token:"), let t = s.tokens[String(subject.dropFirst(6))] { return (t.subjectID, t.generation) }
        return (nil, subject == "anonymous" ? 0 : -1)
    }

    /// Issues an access or refresh token to an authenticated subject, bound to its id and generation.
    public func issueToken(_ who: Authenticated, audience: String, type: String, access: [AccessClaim]?,
                           now: Date = Date()) async throws -> (token: String, expiresIn: Int) {
        try await tokens.issue(subject: who.subject, subjectID: who.subjectID, audience: audience, type: type,
                               generation: who.generation, access: access, now: now)
    }

    /// The current record behind `subject` as an `Authenticated` (for tokens issued by an
    /// administrator's tooling and tests); nil when it does not exist or is disabled.
    public func current(subject: String) -> Authenticated? {
        let s = state
        guard let p = Self.principal(in: s, subject: subject, generation: nil, subjectID: nil, registryName: registryName) else { return nil }
        let (id, gen) = Self.binding(in: s, subject: subject)
        return Authenticated(principal: p, subject: subject, subjectID: id, generation: gen)
    }

    static func principal(for identity: AccessState.Identity) -> Principal {
        var registryActions = Action()
        var grants: [Grant] = []
        for assignment in identity.roles {
            grants.append(Grant(assignment.scope, assignment.role.actions))
            if assignment.scope.value == "*" { registryActions.formUnion(assignment.role.actions) }
        }
        return Principal(kind: .identity, name: identity.name, grants: grants, registryActions: registryActions,
                         isTrustedService: identity.trustedService)
    }

    static func anonymousPrincipal(_ s: AccessState) -> Principal {
        guard s.anonymousPullEnabled else { return .anonymous }
        return Principal(kind: .anonymous, name: "anonymous", grants: [Grant(try! RepositoryPattern("*"), [.contentRead, .metadataRead])])
    }

    func anonymousPrincipal(_ s: AccessState) -> Principal { Self.anonymousPrincipal(s) }

    public var anonymous: Principal { anonymousPrincipal(state) }

    // MARK: authentication

    private func cacheKey(_ username: String, _ password: String, _ service: String) -> Data {
        Data(HMAC<SHA256>.authenticationCode(for: Data((service + "\u{0}" + username + "\u{0}" + password).utf8), using: cacheKey))
    }

    /// Checks a user name and password of any kind: the admin user, a token, an identity, a Berth
    /// refresh token (well-known user) or an OIDC ID token (well-known user). Failures are
    /// counted per address and per name at that address (per presented token for the
    /// well-known users), and rate limited.
    public func authenticate(username: String, password: String, address: IPAddress?,
                             service: String) async throws(AccessError) -> (principal: Principal, subject: String) {
        let who = try await login(username: username, password: password, address: address, service: service)
        return (who.principal, who.subject)
    }

    /// `authenticate`, with what tokens issued for the login are bound to.
    public func login(username: String, password: String, address: IPAddress?,
                      service: String) async throws(AccessError) -> Authenticated {
        await refreshIfStale()
        await refreshFailuresIfStale()
        let addressKey = address?.description ?? "-"
        // Counted under digests: the store (and the memory of this process) never holds a key,
        // which may contain a presented token.
        let nameFailures = Self.storedFailureKey(Self.failureKey(username: username, password: password, address: addressKey))
        let addressFailures = Self.storedFailureKey("a:" + addressKey)
        if let wait = limiter.blockedFor(keys: [nameFailures], threshold: FailureLimiter.perName)
            ?? limiter.blockedFor(keys: [addressFailures], threshold: FailureLimiter.perAddress) {
            throw .rateLimited(retryAfter: wait)
        }
        let key = cacheKey(username, password, service)
        if let hit = credentialCache.withLockedValue({ $0[key] }), hit.until > Date() {
            let s = state
            if let p = Self.principal(in: s, subject: hit.subject, generation: hit.generation, subjectID: hit.subjectID,
                                      registryName: registryName) {
                return Authenticated(principal: p, subject: hit.subject, subjectID: hit.subjectID, generation: hit.generation)
            }
        }
        let verified = await verifyCredentials(username: username, password: password, service: service)
        // The principal and what new tokens are bound to come from one snapshot of the state; a
        // refresh token must still name the very record (id and generation) it was issued to.
        let s = state
        guard let (subject, bound) = verified,
              let p = Self.principal(in: s, subject: subject, generation: bound.generation, subjectID: bound.subjectID,
                                     registryName: registryName)
        else {
            await recordFailure(keys: [nameFailures, addressFailures])
            await recordAudit(actor: username, address: addressKey, action: "login", target: service, outcome: "failed")
            throw .invalidCredentials
        }
        let (subjectID, generation) = bound
        credentialCache.withLockedValue { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[key] = CachedCredential(subject: subject, subjectID: subjectID, generation: generation,
                                          until: Date().addingTimeInterval(300))
        }
        return Authenticated(principal: p, subject: subject, subjectID: subjectID, generation: generation)
    }

    /// The digest a failure key is counted and stored under.
    static func storedFailureKey(_ key: String) -> String {
        Hex.encode(SHA256.hash(data: Data(key.utf8)))
    }

    /// Counts a failed login here at once, and in the store for the other nodes (a store that
    /// cannot take it is logged: this node still counts it).
    private func recordFailure(keys: [String]) async {
        let now = Date()
        limiter.recordFailure(keys: keys, now: now)
        do {
            try await store.recordLoginFailures(keys: keys, at: now)
        } catch {
            logger.warning("could not record a failed login in the store", metadata: ["error": "\(error)"])
        }
    }

    /// Reads the failed logins of every node from the store when the last read is older than
    /// `failureCheckInterval` (one caller reads; the others go on with what was read last), and
    /// forgets failures older than the window at most once a minute.
    func refreshFailuresIfStale() async {
        let now = clock()
        let (due, prune) = failureSync.withLockedValue { s -> (Bool, Bool) in
            guard now - s.checked >= failureCheckInterval else { return (false, false) }
            s.checked = now
            let prune = now - s.pruned >= 60
            if prune { s.pruned = now }
            return (true, prune)
        }
        guard due else { return }
        let wallNow = Date()
        let since = wallNow.addingTimeInterval(-limiter.window)
        do {
            if prune { try await store.pruneLoginFailures(before: since) }
            // The smallest threshold: a key with fewer failures in the store cannot be locked.
            let shared = try await store.loginFailures(since: since, atLeast: FailureLimiter.perName, limit: limiter.threshold * 2)
            limiter.replaceShared(shared)
        } catch {
            logger.warning("could not read failed logins from the store", metadata: ["error": "\(error)"])
        }
    }

    /// What failed logins are counted under besides the address. Never a name alone: that would let
    /// anyone lock a name out for everybody. A real name is counted per address (locked only for
    /// the addresses that failed); refresh and OIDC tokens share well-known pseudo-names, so they
    /// are counted per presented token (a digest of it), whatever the address.
    static func failureKey(username: String, password: String, address: String) -> String {
        if username == refreshTokenUser || username == oidcTokenUser || username == runTokenUser {
            let digest = SHA256.hash(data: Data((username + "\u{0}" + password).utf8))
            return "t:" + Hex.encode(digest)
        }
        return "u:" + username + "\u{0}" + address
    }

    /// The subject the credentials name, and the record they were checked against (its id and
    /// generation; for a refresh token, the ones it carries).
    private func verifyCredentials(username: String, password: String,
                                   service: String) async -> (String, (subjectID: String?, generation: Int))? {
        guard username.utf8.count <= 256, password.utf8.count <= 16_384 else { return nil }
        if username == Self.refreshTokenUser {
            guard let payload = await tokens.verify(password, audience: service, type: "refresh") else { return nil }
            return (payload.sub.value, (payload.sid, payload.gen))
        }
        if username == Self.runTokenUser {
            guard let payload = await tokens.verify(password, audience: service, type: "run"),
                  RunIdentity(subject: payload.sub.value) != nil else { return nil }
            return (payload.sub.value, (payload.sid, payload.gen))
        }
        let s = state
        if username == Self.oidcTokenUser {
            return await verifyFederated(idToken: password, state: s).map { ($0, Self.binding(in: s, subject: $0)) }
        }
        if username == registryName {
            guard s.admin.enabled else { return nil }
            let now = Date()
            for p in [s.admin.password1, s.admin.password2].compactMap({ $0 }) where p.expiry.map({ $0 > now }) ?? true {
                if Secrets.verify(password, hash: p.hash) { return ("admin", (nil, s.admin.generation)) }
            }
            return nil
        }
        if let token = s.tokens[username] {
            guard token.enabled else { return nil }
            let now = Date()
            for p in [token.password1, token.password2].compactMap({ $0 }) where p.expiry.map({ $0 > now }) ?? true {
                if Secrets.verify(password, hash: p.hash) { return ("token:" + username, (token.subjectID, token.generation)) }
            }
            return nil
        }
        if let identity = s.identities[username], identity.enabled, let hash = identity.passwordHash {
            guard Secrets.verify(password, hash: hash) else { return nil }
            return ("identity:" + username, (identity.subjectID, identity.generation))
        }
        return nil
    }

    /// Keyless CI: an OIDC ID token matching a federated credential exactly (issuer, subject, one
    /// of the audiences) authenticates as that credential's identity.
    private func verifyFederated(idToken: String, state s: AccessState) async -> String? {
        let issuers = Set(s.identities.values.filter(\.enabled).flatMap { $0.federatedCredentials.map(\.issuer) })
        guard !issuers.isEmpty, let claims = await oidc.verify(idToken, allowedIssuers: issuers) else { return nil }
        for identity in s.identities.values.sorted(by: { $0.name < $1.name }) where identity.enabled {
            for credential in identity.federatedCredentials
            where credential.issuer == claims.iss.value && credential.subject == claims.sub.value
                && !Set(credential.audiences).isDisjoint(with: claims.aud.value) {
                return "identity:" + identity.name
            }
        }
        return nil
    }

    /// A bearer access token: verified (signature, issuer, audience, expiry) and its subject still valid.
    public func authenticateBearer(_ token: String, service: String, address: IPAddress?) async -> Caller? {
        await refreshIfStale()
        guard let payload = await tokens.verify(token, audience: service, type: "access"),
              let p = principal(subject: payload.sub.value, generation: payload.gen, subjectID: payload.sid)
        else { return nil }
        return Caller(principal: p, tokenAccess: payload.access ?? [], address: address)
    }

    // MARK: authorization

    /// Docker token actions and what they stand for.
    static func actions(forTokenActions names: [String]) -> Action {
        names.reduce(into: Action()) { acc, name in
            switch name {
            // A pull token also carries reading past quarantine for those whose role allows it: the
            // token only narrows, the principal's roles still decide.
            case "pull": acc.formUnion([.contentRead, .metadataRead, .quarantineRead])
            case "push": acc.formUnion([.contentWrite, .metadataWrite, .signatureWrite])
            case "delete": acc.formUnion(.contentDelete)
            case "*": acc.formUnion(.all)
            default: acc.formUnion(Action(scopeMapName: name) ?? [])
            }
        }
    }

    /// The one authorization function: may `caller` (nil: no credentials) coming from its address
    /// do `action` on `repository` (nil: a registry-wide action)?
    public func decide(caller: Caller?, address: IPAddress?, repository: String?, action: Action) -> Decision {
        decide(in: state, caller: caller, address: address, repository: repository, action: action)
    }

    func decide(in s: AccessState, caller: Caller?, address: IPAddress?, repository: String?, action: Action) -> Decision {
        if s.network.evaluate(address) == .blockedUnlessTrustedService {
            let trusted = s.network.allowTrustedServices && (caller?.principal.isTrustedService ?? false)
            if !trusted {
                if caller == nil && s.network.allowTrustedServices { return .challenge(insufficientScope: false) }
                return .deny("client address \(address?.description ?? "unknown") is not allowed to access this registry")
            }
        }
        let principal = caller?.principal ?? anonymousPrincipal(s)
        let held: Action
        if let repository {
            held = principal.actions(on: repository)
        } else {
            held = principal.registryActions
        }
        guard held.isSuperset(of: action) else {
            return principal.kind == .anonymous ? .challenge(insufficientScope: false)
                : .deny("requested access to the resource is denied")
        }
        if let access = caller?.tokenAccess {
            let type = repository == nil ? "registry" : "repository"
            let name = repository ?? (action.isDisjoint(with: [.managementRead, .managementWrite]) ? "catalog" : "management")
            let granted = access.filter { $0.type == type && $0.name == name }
                .reduce(into: Action()) { $0.formUnion(Self.actions(forTokenActions: $1.actions)) }
            if !granted.isSuperset(of: action) { return .challenge(insufficientScope: true) }
        }
        return .allow
    }

    /// What a token issued to `principal` may carry for the requested scopes: the requested
    /// actions the principal holds, in the Docker vocabulary.
    public func grantedAccess(principal: Principal, requested: [ScopeRequest]) -> [AccessClaim] {
        var out: [AccessClaim] = []
        for scope in requested {
            var granted: [String] = []
            if scope.type == "repository" {
                guard RepositoryName.isValid(scope.name) else { continue }
                let held = principal.actions(on: scope.name)
                for a in scope.actions {
                    switch a {
                    case "pull" where held.contains(.contentRead): granted.append(a)
                    case "push" where held.contains(.contentWrite) || held.contains(.signatureWrite): granted.append(a)
                    case "delete" where held.contains(.contentDelete): granted.append(a)
                    case "*":
                        if held.contains(.contentRead) { granted.append("pull") }
                        if held.contains(.contentWrite) || held.contains(.signatureWrite) { granted.append("push") }
                        if held.contains(.contentDelete) { granted.append("delete") }
                    default: break
                    }
                }
            } else if scope.type == "registry", scope.name == "catalog" {
                if scope.actions.contains("*") { granted = ["*"] }   // filtered per repository when listing
            } else if scope.type == "registry", scope.name == "management" {
                if !principal.registryActions.isDisjoint(with: [.managementRead, .managementWrite]) || principal.managementByGrants {
                    granted = ["*"]
                }
            }
            if !granted.isEmpty {
                out.append(AccessClaim(type: scope.type, name: scope.name, actions: Array(Set(granted)).sorted()))
            }
        }
        return out
    }

    // MARK: audit

    public func recordAudit(actor: String, address: String, action: String, target: String, outcome: String,
                            detail: String? = nil) async {
        do {
            try await store.appendAudit([AuditRecord(actor: actor, address: address, action: action, target: target,
                                                     outcome: outcome, detail: detail)])
        } catch {
            logger.error("audit write failed", metadata: ["error": "\(error)"])
        }
    }

    public func audit(since: Date, limit: Int) async throws -> [AuditRecord] {
        try await store.audit(since: since, limit: limit)
    }
}

/// Counts failed logins per key (a name at an address, a presented token, an address) in a sliding
/// window. An address gets a larger allowance than a name, so one misconfigured client behind a
/// NAT does not lock out every other client there as soon as it would lock out the name it
/// guesses; the address counter still stops one address trying many names.
final class FailureLimiter: Sendable {
    static let perName = 10
    static let perAddress = 30
    let window: TimeInterval = 300
    let threshold = FailureLimiter.perAddress
    private let failures = NIOLockedValueBox<[String: [Date]]>([:])
    /// Failures of every node, as last read from the store (keys with enough to matter).
    private let shared = NIOLockedValueBox<[String: [Date]]>([:])

    func replaceShared(_ map: [String: [Date]]) {
        shared.withLockedValue { $0 = map }
    }

    func recordFailure(keys: [String], now: Date = Date()) {
        failures.withLockedValue { map in
            if map.count > 100_000 { map.removeAll() }
            for key in keys {
                map[key, default: []].append(now)
                map[key] = map[key]!.filter { now.timeIntervalSince($0) < window }.suffix(threshold * 2)
            }
        }
    }

    /// Seconds to wait when any key has had too many failures in the window, else nil.
    /// Both what this process counted and what every node stored count: each view alone can lock
    /// a key (the stored one includes this process's failures, so they are never added up).
    func blockedFor(keys: [String], threshold: Int = FailureLimiter.perName, now: Date = Date()) -> Int? {
        var wait: TimeInterval = 0
        for map in [failures.withLockedValue { $0 }, shared.withLockedValue { $0 }] {
            for key in keys {
                let recent = (map[key] ?? []).filter { now.timeIntervalSince($0) < window }
                if recent.count >= threshold, let oldest = recent.suffix(threshold).first {
                    wait = max(wait, window - now.timeIntervalSince(oldest))
                }
            }
        }
        return wait > 0 ? Int(wait.rounded(.up)) : nil
    }
}

extension JSONEncoder {
    static let access: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .secondsSince1970
        e.outputFormatting = [.sortedKeys]
        return e
    }()
}

extension JSONDecoder {
    static let access: JSONDecoder = {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .secondsSince1970
        return d
    }()
}
