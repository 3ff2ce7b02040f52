import Foundation
import OCIModel
import RegistryStore

/// Who is making a management change, for the audit log.
public struct Actor: Sendable {
    public var name: String
    public var address: String
    public init(name: String, address: String) {
        self.name = name
        self.address = address
    }
}

/// Views of access state that leave every secret out.
public struct IdentityView: Codable, Sendable, Equatable {
    public var name: String
    public var kind: String
    public var enabled: Bool
    public var trustedService: Bool
    public var hasPassword: Bool
    public var roles: [RoleAssignmentView]
    public var federatedCredentials: [AccessState.FederatedCredential]
    public var createdAt: Date
}

public struct RoleAssignmentView: Codable, Sendable, Equatable {
    public var assignee: String
    public var role: String
    public var scope: String
}

public struct TokenView: Codable, Sendable, Equatable {
    public struct PasswordView: Codable, Sendable, Equatable {
        public var name: String
        public var expiry: Date?
        public var createdAt: Date
    }
    public var name: String
    public var scopeMap: String
    public var status: String
    public var passwords: [PasswordView]
    public var createdAt: Date
}

public struct RegistrySettingsView: Codable, Sendable, Equatable {
    public var registryName: String
    public var adminUserEnabled: Bool
    public var adminPasswords: [TokenView.PasswordView]
    public var anonymousPullEnabled: Bool
    public var publicNetworkEnabled: Bool
    public var networkDefaultAction: String
    public var ipRules: [String]
    public var allowTrustedServices: Bool
    public var trustedProxies: [String]
    public var signingKeyID: String
}

public struct SettingsChange: Codable, Sendable {
    public var adminUserEnabled: Bool?
    public var anonymousPullEnabled: Bool?
    public var publicNetworkEnabled: Bool?
    public var networkDefaultAction: String?
    public var allowTrustedServices: Bool?
    public var trustedProxies: [String]?
    public init() {}
}

/// Management of identities, roles, scope maps, tokens and settings. Every change is one
/// audited write of the access state; generated secrets are returned once and stored hashed.
extension AccessControl {
    public static func checkName(_ name: String, what: String) throws(AccessError) {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 64,
              (first >= 0x61 && first <= 0x7a) || (first >= 0x30 && first <= 0x39),
              bytes.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f })
        else { throw .invalid("\(what) names are 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit") }
    }

    private func checkFreeName(_ name: String, _ s: AccessState) throws(AccessError) {
        if name == registryName || name == Self.refreshTokenUser || name == Self.oidcTokenUser {
            throw .conflict("\(name) is reserved")
        }
        if s.identities[name] != nil || s.tokens[name] != nil {
            throw .conflict("an identity or token named \(name) already exists")
        }
    }

    /// Enabled identities holding Owner on the whole registry (`*`): who can still manage it.
    /// The admin user does not count: it is off by default, its passwords expire, and it is a
    /// shared credential rather than someone's identity.
    static func enabledOwners(_ s: AccessState) -> [String] {
        s.identities.values.filter { i in i.enabled && i.roles.contains { $0.role == .owner && $0.scope.value == "*" } }
            .map(\.name).sorted()
    }

    /// Refuses a change that would leave no enabled Owner on `*`: nobody could manage the registry
    /// any more (the way back is `berth recover owner` on the stopped server's data).
    static func checkOwnerRemains(before: AccessState, after: AccessState, _ what: String) throws(AccessError) {
        guard !enabledOwners(before).isEmpty, enabledOwners(after).isEmpty else { return }
        throw .conflict("\(what) would leave no enabled identity with the Owner role on *, and nobody could manage the registry; "
            + "assign Owner on * to another identity first")
    }

    private func audit(_ actor: Actor, _ action: String, _ target: String, _ detail: String? = nil) -> AuditRecord {
        AuditRecord(actor: actor.name, address: actor.address, action: action, target: target, outcome: "ok", detail: detail)
    }

    // MARK: views

    public func identityViews() -> [IdentityView] {
        state.identities.values.sorted { $0.name < $1.name }.map(Self.view)
    }

    static func view(_ i: AccessState.Identity) -> IdentityView {
        IdentityView(name: i.name, kind: i.kind.rawValue, enabled: i.enabled, trustedService: i.trustedService,
                     hasPassword: i.passwordHash != nil,
                     roles: i.roles.map { RoleAssignmentView(assignee: i.name, role: $0.role.rawValue, scope: $0.scope.value) },
                     federatedCredentials: i.federatedCredentials, createdAt: i.createdAt)
    }

    public func tokenViews() -> [TokenView] {
        state.tokens.values.sorted { $0.name < $1.name }.map(Self.view)
    }

    static func passwordViews(_ p1: AccessState.TokenPassword?, _ p2: AccessState.TokenPassword?) -> [TokenView.PasswordView] {
        [("password1", p1), ("password2", p2)].compactMap { name, p in
            p.map { TokenView.PasswordView(name: name, expiry: $0.expiry, createdAt: $0.createdAt) }
        }
    }

    static func view(_ t: AccessState.Token) -> TokenView {
        TokenView(name: t.name, scopeMap: t.scopeMap, status: t.enabled ? "enabled" : "disabled",
                  passwords: passwordViews(t.password1, t.password2), createdAt: t.createdAt)
    }

    public func settingsView() -> RegistrySettingsView {
        let s = state
        return RegistrySettingsView(
            registryName: registryName, adminUserEnabled: s.admin.enabled,
            adminPasswords: Self.passwordViews(s.admin.password1, s.admin.password2),
            anonymousPullEnabled: s.anonymousPullEnabled, publicNetworkEnabled: s.network.publicNetworkEnabled,
            networkDefaultAction: s.network.defaultAction.rawValue, ipRules: s.network.ipRules.map(\.description),
            allowTrustedServices: s.network.allowTrustedServices, trustedProxies: s.network.trustedProxies.map(\.description),
            signingKeyID: tokens.currentKeyID)
    }

    // MARK: identities

    public func createIdentity(_ actor: Actor, name: String, kind: String = "user", trustedService: Bool = false,
                               withPassword: Bool = true) async throws -> (IdentityView, password: String?) {
        try Self.checkName(name, what: "identity")
        guard let kind = AccessState.Identity.Kind(rawValue: kind) else {
            throw AccessError.invalid("kind must be user or service-principal")
        }
        let password = withPassword ? Secrets.generate() : nil
        let hash = password.map { Secrets.hashPassword($0) }
        let identity = try await update(audit: audit(actor, "identity.create", name)) { s in
            try self.checkFreeName(name, s)
            let i = AccessState.Identity(name: name, kind: kind, passwordHash: hash, trustedService: trustedService, createdAt: Date())
            s.identities[name] = i
            return i
        }
        return (Self.view(identity), password)
    }

    public func deleteIdentity(_ actor: Actor, name: String) async throws {
        try await update(audit: audit(actor, "identity.delete", name)) { s in
            let before = s
            guard s.identities.removeValue(forKey: name) != nil else { throw AccessError.notFound("identity \(name)") }
            try Self.checkOwnerRemains(before: before, after: s, "deleting identity \(name)")
        }
    }

    public func updateIdentity(_ actor: Actor, name: String, enabled: Bool?, trustedService: Bool?) async throws -> IdentityView {
        let detail = [enabled.map { "enabled=\($0)" }, trustedService.map { "trustedService=\($0)" }].compactMap { $0 }.joined(separator: " ")
        let i = try await update(audit: audit(actor, "identity.update", name, detail)) { s in
            guard var i = s.identities[name] else { throw AccessError.notFound("identity \(name)") }
            let before = s
            if let enabled, enabled != i.enabled {
                i.enabled = enabled
                i.generation += 1
            }
            if let trustedService { i.trustedService = trustedService }
            s.identities[name] = i
            try Self.checkOwnerRemains(before: before, after: s, "disabling identity \(name)")
            return i
        }
        return Self.view(i)
    }

    /// Sets a new generated password (shown once); every token issued before stops working.
    public func resetIdentityPassword(_ actor: Actor, name: String) async throws -> String {
        let password = Secrets.generate()
        let hash = Secrets.hashPassword(password)
        try await update(audit: audit(actor, "identity.password", name)) { s in
            guard s.identities[name] != nil else { throw AccessError.notFound("identity \(name)") }
            s.identities[name]!.passwordHash = hash
            s.identities[name]!.generation += 1
        }
        return password
    }

    public func addFederatedCredential(_ actor: Actor, identity: String, name: String, issuer: String, subject: String,
                                       audiences: [String]) async throws -> IdentityView {
        try Self.checkName(name, what: "federated credential")
        guard let url = URL(string: issuer), url.scheme == "https" || url.scheme == "http", url.host != nil else {
            throw AccessError.invalid("issuer must be an http(s) URL")
        }
        do {
            try await oidc.source.checkIssuer(issuer)
        } catch let refused as OutboundRefused {
            throw AccessError.invalid("issuer refused: \(refused.message)")
        }
        guard !subject.isEmpty, !audiences.isEmpty, !audiences.contains(where: \.isEmpty) else {
            throw AccessError.invalid("a federated credential needs an exact subject and at least one audience")
        }
        let i = try await update(audit: audit(actor, "federated-credential.create", "\(identity)/\(name)", "\(issuer) \(subject)")) { s in
            guard var i = s.identities[identity] else { throw AccessError.notFound("identity \(identity)") }
            guard !i.federatedCredentials.contains(where: { $0.name == name }) else {
                throw AccessError.conflict("federated credential \(name) exists")
            }
            i.federatedCredentials.append(.init(name: name, issuer: issuer, subject: subject, audiences: audiences))
            s.identities[identity] = i
            return i
        }
        return Self.view(i)
    }

    public func removeFederatedCredential(_ actor: Actor, identity: String, name: String) async throws {
        try await update(audit: audit(actor, "federated-credential.delete", "\(identity)/\(name)")) { s in
            guard var i = s.identities[identity], let idx = i.federatedCredentials.firstIndex(where: { $0.name == name }) else {
                throw AccessError.notFound("federated credential \(identity)/\(name)")
            }
            i.federatedCredentials.remove(at: idx)
            i.generation += 1
            s.identities[identity] = i
        }
    }

    /// Offline recovery (`berth recover owner`, on a stopped server's data): creates identity
    /// `name` or re-enables it, gives it the Owner role on `*` and a new generated password,
    /// returned once. Tokens issued to it before stop working.
    public func recoverOwner(_ actor: Actor, name: String) async throws -> String {
        try Self.checkName(name, what: "identity")
        let password = Secrets.generate()
        let hash = Secrets.hashPassword(password)
        let owner = AccessState.RoleAssignment(role: .owner, scope: try RepositoryPattern("*"))
        try await update(audit: audit(actor, "identity.recover-owner", name, "enabled, new password, Owner on *")) { s in
            if var i = s.identities[name] {
                i.enabled = true
                i.passwordHash = hash
                i.generation += 1
                if !i.roles.contains(owner) { i.roles.append(owner) }
                s.identities[name] = i
            } else {
                try self.checkFreeName(name, s)
                s.identities[name] = .init(name: name, kind: .user, passwordHash: hash, roles: [owner], createdAt: Date())
            }
        }
        return password
    }

    // MARK: roles

    public func roleAssignments() -> [RoleAssignmentView] {
        identityViews().flatMap(\.roles)
    }

    public func assignRole(_ actor: Actor, assignee: String, role: String, scope: String) async throws -> RoleAssignmentView {
        guard let r = Role(named: role) else {
            throw AccessError.invalid("unknown role \(role); roles: \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let pattern: RepositoryPattern
        do { pattern = try RepositoryPattern(scope) } catch { throw AccessError.invalid(error.message) }
        try await update(audit: audit(actor, "role.assign", assignee, "\(r.rawValue) on \(scope)")) { s in
            guard s.identities[assignee] != nil else { throw AccessError.notFound("identity \(assignee)") }
            let a = AccessState.RoleAssignment(role: r, scope: pattern)
            if !s.identities[assignee]!.roles.contains(a) { s.identities[assignee]!.roles.append(a) }
        }
        return RoleAssignmentView(assignee: assignee, role: r.rawValue, scope: pattern.value)
    }

    public func removeRole(_ actor: Actor, assignee: String, role: String, scope: String) async throws {
        guard let r = Role(named: role) else { throw AccessError.invalid("unknown role \(role)") }
        try await update(audit: audit(actor, "role.remove", assignee, "\(r.rawValue) on \(scope)")) { s in
            guard var i = s.identities[assignee],
                  let idx = i.roles.firstIndex(where: { $0.role == r && $0.scope.value == scope }) else {
                throw AccessError.notFound("role assignment \(r.rawValue) on \(scope) for \(assignee)")
            }
            let before = s
            i.roles.remove(at: idx)
            s.identities[assignee] = i
            try Self.checkOwnerRemains(before: before, after: s, "removing \(r.rawValue) on \(scope) from \(assignee)")
        }
    }

    // MARK: scope maps

    public func scopeMaps() -> [AccessState.ScopeMap] {
        state.scopeMaps.values.sorted { $0.name < $1.name }
    }

    static func validate(entries: [AccessState.ScopeMap.Entry]) throws(AccessError) {
        guard !entries.isEmpty else { throw .invalid("a scope map needs at least one repository entry") }
        for e in entries {
            guard !e.actions.isEmpty else { throw .invalid("no actions for \(e.repository.value)") }
            for a in e.actions where Action(scopeMapName: a) == nil {
                throw .invalid("unknown action \(a); actions: \(Action.scopeMapNames.map(\.0).joined(separator: ", "))")
            }
        }
    }

    public func putScopeMap(_ actor: Actor, name: String, description: String?, entries: [AccessState.ScopeMap.Entry],
                            create: Bool) async throws -> AccessState.ScopeMap {
        if create { try Self.checkName(name, what: "scope map") }
        try Self.validate(entries: entries)
        return try await update(audit: audit(actor, create ? "scope-map.create" : "scope-map.update", name)) { s in
            if create, s.scopeMaps[name] != nil { throw AccessError.conflict("scope map \(name) exists") }
            if !create {
                guard let old = s.scopeMaps[name] else { throw AccessError.notFound("scope map \(name)") }
                if old.builtIn { throw AccessError.invalid("built-in scope maps cannot be changed") }
            }
            let map = AccessState.ScopeMap(name: name, description: description, entries: entries)
            s.scopeMaps[name] = map
            return map
        }
    }

    public func deleteScopeMap(_ actor: Actor, name: String) async throws {
        try await update(audit: audit(actor, "scope-map.delete", name)) { s in
            guard let map = s.scopeMaps[name] else { throw AccessError.notFound("scope map \(name)") }
            if map.builtIn { throw AccessError.invalid("built-in scope maps cannot be deleted") }
            if let user = s.tokens.values.first(where: { $0.scopeMap == name }) {
                throw AccessError.conflict("scope map \(name) is used by token \(user.name)")
            }
            s.scopeMaps[name] = nil
        }
    }

    // MARK: tokens

    public func createToken(_ actor: Actor, name: String, scopeMap: String, enabled: Bool = true,
                            generatePasswords: Bool = true, expiresInDays: Int? = nil) async throws
        -> (TokenView, passwords: [String: String])
    {
        try Self.checkName(name, what: "token")
        let p1 = generatePasswords ? Secrets.generate() : nil
        let p2 = generatePasswords ? Secrets.generate() : nil
        let expiry = expiresInDays.map { Date().addingTimeInterval(Double($0) * 86_400) }
        let token = try await update(audit: audit(actor, "token.create", name, "scope map \(scopeMap)")) { s in
            try self.checkFreeName(name, s)
            guard s.scopeMaps[scopeMap] != nil else { throw AccessError.notFound("scope map \(scopeMap)") }
            let now = Date()
            let t = AccessState.Token(name: name, scopeMap: scopeMap, enabled: enabled,
                                      password1: p1.map { .init(hash: Secrets.hashGenerated($0), expiry: expiry, createdAt: now) },
                                      password2: p2.map { .init(hash: Secrets.hashGenerated($0), expiry: expiry, createdAt: now) },
                                      createdAt: now)
            s.tokens[name] = t
            return t
        }
        var passwords: [String: String] = [:]
        passwords["password1"] = p1
        passwords["password2"] = p2
        return (Self.view(token), passwords)
    }

    public func updateToken(_ actor: Actor, name: String, enabled: Bool?, scopeMap: String?) async throws -> TokenView {
        let detail = [enabled.map { "enabled=\($0)" }, scopeMap.map { "scopeMap=\($0)" }].compactMap { $0 }.joined(separator: " ")
        let t = try await update(audit: audit(actor, "token.update", name, detail)) { s in
            guard var t = s.tokens[name] else { throw AccessError.notFound("token \(name)") }
            if let enabled, enabled != t.enabled {
                t.enabled = enabled
                t.generation += 1
            }
            if let scopeMap {
                guard s.scopeMaps[scopeMap] != nil else { throw AccessError.notFound("scope map \(scopeMap)") }
                t.scopeMap = scopeMap
                t.generation += 1
            }
            s.tokens[name] = t
            return t
        }
        return Self.view(t)
    }

    public func deleteToken(_ actor: Actor, name: String) async throws {
        try await update(audit: audit(actor, "token.delete", name)) { s in
            guard s.tokens.removeValue(forKey: name) != nil else { throw AccessError.notFound("token \(name)") }
        }
    }

    /// Generates `password1` or `password2` of a token (or of the admin user when `token` is nil).
    /// `expiry` (an absolute time, which may be in the past to retire a password at once) wins
    /// over `expiresInDays`.
    public func generatePassword(_ actor: Actor, token: String?, which: String, expiresInDays: Int?,
                                 expiry: Date? = nil) async throws -> String {
        guard which == "password1" || which == "password2" else { throw AccessError.invalid("name must be password1 or password2") }
        if let days = expiresInDays, days <= 0 || days > 3650 { throw AccessError.invalid("expiration must be 1-3650 days") }
        let secret = Secrets.generate()
        let record = AccessState.TokenPassword(hash: Secrets.hashGenerated(secret),
                                               expiry: expiry ?? expiresInDays.map { Date().addingTimeInterval(Double($0) * 86_400) },
                                               createdAt: Date())
        try await update(audit: audit(actor, "credential.generate", token ?? registryName, which)) { s in
            if let token {
                guard var t = s.tokens[token] else { throw AccessError.notFound("token \(token)") }
                if which == "password1" { t.password1 = record } else { t.password2 = record }
                t.generation += 1
                s.tokens[token] = t
            } else {
                if which == "password1" { s.admin.password1 = record } else { s.admin.password2 = record }
                s.admin.generation += 1
            }
        }
        return secret
    }

    // MARK: settings and network rules

    /// Refuses a network change that would shut out the very client making it (unless it is a
    /// trusted service that the new policy still lets through): the way back would otherwise
    /// be editing the database by hand.
    private func checkNotLockingOut(_ actor: Actor, _ policy: NetworkPolicy) throws(AccessError) {
        guard let address = IPAddress(actor.address), policy.evaluate(address) == .blockedUnlessTrustedService else { return }
        if policy.allowTrustedServices, actor.name.hasPrefix("identity:"),
           state.identities[String(actor.name.dropFirst(9))]?.trustedService == true { return }
        throw .conflict("this change would block your own address \(address); add a network rule for it first")
    }

    public func updateSettings(_ actor: Actor, _ change: SettingsChange) async throws -> RegistrySettingsView {
        var parsedProxies: [CIDR]?
        if let raw = change.trustedProxies {
            parsedProxies = []
            for p in raw {
                do { parsedProxies!.append(try CIDR(p)) } catch { throw AccessError.invalid(error.message) }
            }
        }
        var parsedAction: NetworkPolicy.DefaultAction?
        if let raw = change.networkDefaultAction {
            guard let a = NetworkPolicy.DefaultAction(rawValue: raw.prefix(1).uppercased() + raw.dropFirst().lowercased()) else {
                throw AccessError.invalid("default action must be Allow or Deny")
            }
            parsedAction = a
        }
        let proxies = parsedProxies, action = parsedAction
        let detail = String(decoding: (try? JSONEncoder.access.encode(change)) ?? Data(), as: UTF8.self)
        try await update(audit: audit(actor, "settings.update", registryName, detail)) { s in
            var network = s.network
            if let v = change.publicNetworkEnabled { network.publicNetworkEnabled = v }
            if let v = change.allowTrustedServices { network.allowTrustedServices = v }
            if let action { network.defaultAction = action }
            if let proxies { network.trustedProxies = proxies }
            try self.checkNotLockingOut(actor, network)
            if let v = change.adminUserEnabled, v != s.admin.enabled {
                s.admin.enabled = v
                s.admin.generation += 1
            }
            if let v = change.anonymousPullEnabled { s.anonymousPullEnabled = v }
            if let v = change.publicNetworkEnabled { s.network.publicNetworkEnabled = v }
            if let v = change.allowTrustedServices { s.network.allowTrustedServices = v }
            if let action { s.network.defaultAction = action }
            if let proxies { s.network.trustedProxies = proxies }
        }
        return settingsView()
    }

    public func addNetworkRule(_ actor: Actor, _ raw: String) async throws -> [String] {
        let cidr: CIDR
        do { cidr = try CIDR(raw) } catch { throw AccessError.invalid(error.message) }
        try await update(audit: audit(actor, "network-rule.add", cidr.description)) { s in
            if !s.network.ipRules.contains(cidr) { s.network.ipRules.append(cidr) }
        }
        return state.network.ipRules.map(\.description)
    }

    public func removeNetworkRule(_ actor: Actor, _ raw: String) async throws -> [String] {
        let cidr: CIDR
        do { cidr = try CIDR(raw) } catch { throw AccessError.invalid(error.message) }
        try await update(audit: audit(actor, "network-rule.remove", cidr.description)) { s in
            guard let idx = s.network.ipRules.firstIndex(of: cidr) else { throw AccessError.notFound("network rule \(cidr)") }
            var network = s.network
            network.ipRules.remove(at: idx)
            try self.checkNotLockingOut(actor, network)
            s.network = network
        }
        return state.network.ipRules.map(\.description)
    }

    public func rotateSigningKey(_ actor: Actor) async throws -> String {
        let kid = try await tokens.rotate()
        await recordAudit(actor: actor.name, address: actor.address, action: "key.rotate", target: kid, outcome: "ok")
        return kid
    }
}
