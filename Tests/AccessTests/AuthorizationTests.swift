import Foundation
import OCIModel
import RegistryStore
import Testing
@testable import Access

/// `AccessControl.authorize`: one request (who, from where, which repository, which actions, the
/// target's state) → one decision. Table-driven: roles × requests.
@Suite struct AuthorizationTests {
    /// The requests of the table, each a column.
    enum Column: CaseIterable {
        case read, readPending, readFailed, readQuarantinedBlob, workloadPending, pushBlobs, pushUnread, pushReferrer, pushImage

        var actions: Action {
            switch self {
            case .read, .readPending, .readFailed, .readQuarantinedBlob, .workloadPending: .contentRead
            case .pushBlobs, .pushUnread, .pushReferrer, .pushImage: .contentWrite
            }
        }

        var target: AccessTarget {
            switch self {
            case .read: .none
            case .readPending: AccessTarget(quarantine: .manifest(state: .pending, reason: "scan running"))
            case .readFailed: AccessTarget(quarantine: .manifest(state: .failed, reason: nil))
            case .readQuarantinedBlob: AccessTarget(quarantine: .blobOfQuarantinedContent)
            case .workloadPending: AccessTarget(quarantine: .manifest(state: .pending, reason: nil), forWorkload: true)
            case .pushBlobs: AccessTarget(write: .blobs)
            case .pushUnread: AccessTarget(write: .manifestUnread)
            case .pushReferrer: AccessTarget(write: .manifest(referrerByDigest: true))
            case .pushImage: AccessTarget(write: .manifest(referrerByDigest: false))
            }
        }
    }

    /// A = allowed, C = 401 challenge, D = 403 denied; one letter per column, in `Column` order.
    static let table: [(role: Role?, expected: String)] = [
        (nil, "CCCCCCCCC"),                       // anonymous (anonymous pull off)
        (.pull, "ADDDDDDDD"),
        (.push, "ADDDDAAAA"),
        (.delete, "DDDDDDDDD"),
        (.imageSigner, "ADDDDAAAD"),
        (.quarantineReader, "AAAADDDDD"),
        (.quarantineWriter, "AAAADDDDD"),
        (.reader, "ADDDDDDDD"),
        (.owner, "AAAADAAAA"),
    ]

    func letter(_ decision: AccessDecision) -> Character {
        switch decision {
        case .allowed: "A"
        case .denied(let r) where r.code == .unauthorized: r.challenge == nil ? "?" : "C"
        case .denied(let r) where r.code == .denied: r.challenge == nil ? "D" : "?"
        case .denied: "?"
        }
    }

    func caller(_ role: Role?, token: [AccessClaim]? = nil) throws -> Caller? {
        guard let role else { return nil }
        let principal = Principal(kind: .identity, name: role.rawValue.lowercased(),
                                  grants: [Grant(try RepositoryPattern("apps/*"), role.actions)])
        return Caller(principal: principal, tokenAccess: token, address: here)
    }

    @Test func rolesByActionsByTargetState() async throws {
        let (access, _) = try await makeAccess()
        for row in Self.table {
            let caller = try caller(row.role)
            let got = String(Column.allCases.map { column in
                letter(access.authorize(AccessRequest(caller: caller, address: here, repository: "apps/web",
                                                      actions: column.actions, target: column.target)))
            })
            #expect(got == row.expected, "role \(row.role?.rawValue ?? "anonymous")")
            // outside the role's scope nothing is allowed, whatever the target
            if let caller {
                for column in Column.allCases {
                    #expect(!access.authorize(AccessRequest(caller: caller, address: here, repository: "other/web",
                                                            actions: column.actions, target: column.target)).isAllowed)
                }
            }
        }
    }

    @Test func refusalsSayWhyAndHowToAuthenticate() async throws {
        let (access, _) = try await makeAccess()
        func refusal(_ caller: Caller?, _ column: Column, repository: String = "apps/web") -> AccessRefusal? {
            if case .denied(let r) = access.authorize(AccessRequest(caller: caller, address: here, repository: repository,
                                                                     actions: column.actions, target: column.target)) { return r }
            return nil
        }
        let pending = try #require(refusal(try caller(.pull), .readPending))
        #expect(pending.reason == "manifest quarantined (Pending: scan running)" && pending.status == 403 && !pending.lacksRights)
        #expect(refusal(try caller(.pull), .readQuarantinedBlob)?.reason == "blob belongs only to quarantined content")
        let signer = try #require(refusal(try caller(.imageSigner), .pushImage))
        #expect(signer.reason.contains("signers may only push referrers") && signer.code == .denied)
        let lacking = try #require(refusal(try caller(.pull), .pushBlobs))
        #expect(lacking.lacksRights && lacking.reason == "requested access to the resource is denied")
        // anonymous: a challenge naming the scope the request needs
        #expect(refusal(nil, .read)?.challenge == .init(scope: "repository:apps/web:pull", insufficientScope: false))
        #expect(refusal(nil, .pushReferrer)?.challenge == .init(scope: "repository:apps/web:pull,push", insufficientScope: false))
        // a workload never reads past quarantine, even for an owner
        #expect(refusal(try caller(.owner), .workloadPending)?.reason == "manifest quarantined (Pending)")
    }

    @Test func tokensNarrowTheDecision() async throws {
        let (access, _) = try await makeAccess()
        let pull = [AccessClaim(type: "repository", name: "apps/web", actions: ["pull"])]
        // a pull token of a QuarantineReader reads past quarantine (the role decides, the token narrows)
        let reader = try caller(.quarantineReader, token: pull)
        #expect(access.authorize(AccessRequest(caller: reader, address: here, repository: "apps/web", actions: .contentRead,
                                               target: Column.readPending.target)) == .allowed)
        // a pull token of a pusher does not push
        let pusher = try caller(.push, token: pull)
        #expect(access.authorize(AccessRequest(caller: pusher, address: here, repository: "apps/web", actions: .contentWrite,
                                               target: Column.pushBlobs.target))
                == .denied(.challenge(scope: "repository:apps/web:pull,push", insufficientScope: true)))
    }

    @Test func aManagementTokenIsJudgedByItsPrincipalOnRepositories() async throws {
        let (access, _) = try await makeAccess()
        let management = try caller(.owner, token: [AccessClaim(type: "registry", name: "management", actions: ["*"])])
        let request = AccessRequest(caller: management, address: here, repository: "apps/web", actions: [.metadataWrite, .contentDelete],
                                    target: AccessTarget(management: true))
        #expect(access.authorize(request) == .allowed)
        var outside = request
        outside.repository = "other/web"
        #expect(!access.authorize(outside).isAllowed)
        // the same token on /v2/ is narrowed to its claims
        var registryAPI = request
        registryAPI.target = .none
        #expect(access.authorize(registryAPI) == .denied(.challenge(scope: "repository:apps/web:pull,push,delete", insufficientScope: true)))
    }

    @Test func catalogNeedsTheCatalogScopeThenFollowsTheRoles() async throws {
        let (access, _) = try await makeAccess()
        let repoOnly = try caller(.pull, token: [AccessClaim(type: "repository", name: "apps/other", actions: ["pull"])])
        let listing = AccessTarget(listing: true)
        #expect(access.authorize(AccessRequest(caller: repoOnly, address: here, repository: nil, actions: [], target: listing))
                == .denied(.challenge(scope: "registry:catalog:*", insufficientScope: true, reason: "token lacks the catalog scope")))
        let catalog = try caller(.pull, token: [AccessClaim(type: "registry", name: "catalog", actions: ["*"])])
        #expect(access.authorize(AccessRequest(caller: catalog, address: here, repository: nil, actions: [], target: listing)) == .allowed)
        // each entry by the principal's rights, not the token's repository scopes
        #expect(access.authorize(AccessRequest(caller: catalog, address: here, repository: "apps/web", actions: .metadataRead,
                                               target: listing)) == .allowed)
        #expect(!access.authorize(AccessRequest(caller: catalog, address: here, repository: "other/web", actions: .metadataRead,
                                                target: listing)).isAllowed)
        // outside a listing, the same token is narrowed to what it names
        #expect(!access.authorize(AccessRequest(caller: catalog, address: here, repository: "apps/web", actions: .metadataRead)).isAllowed)
        // Basic credentials (no token) list by their rights
        #expect(access.authorize(AccessRequest(caller: try caller(.pull), address: here, repository: nil, actions: [],
                                               target: listing)) == .allowed)
    }
}
