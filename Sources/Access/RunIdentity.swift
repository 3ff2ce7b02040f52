import Foundation
import OCIModel

/// The short-lived identity of one build-task run (issue 16): push and pull on exactly the task's
/// repositories, nothing registry-wide (so nothing on `/api/v1`), and nothing after the run's
/// deadline. It is presented as a user name and password (`AccessControl.runTokenUser` and a
/// signed token of type `run`), which the token endpoint and Basic authentication accept like
/// any credentials; every token issued from it names the same subject, and the subject carries
/// the deadline, so no access or refresh token obtained with it outlives the run.
///
/// The subject is `run:<task>/<run id>:<deadline, seconds since 1970>:<repository>,<repository>…`,
/// followed by `:<repository>,…` of the repositories it may only pull (the task's base images in
/// this registry) when there are any or it has `berth` steps, and then by
/// `:berth-commands=<repository>,…` of those it may delete in (signed inside the token; task
/// names, run ids and repository names hold no `:`).
public struct RunIdentity: Sendable, Equatable {
    public var task: String
    public var runID: String
    public var repositories: [String]
    /// Repositories it may pull from and not push to (its base images).
    public var pullRepositories: [String]
    public var deadline: Date
    /// The run has `berth` steps (Berth's own CLI): it may also delete in `deleteRepositories`
    /// (the task's scope, never the repositories its file pushes to), and use the management
    /// API's endpoints that are judged per repository there (its token may carry
    /// `registry:management`, which grants nothing registry-wide).
    public var commands: Bool { !deleteRepositories.isEmpty }
    /// Of `repositories`, those it may delete in (only with `berth` steps).
    public var deleteRepositories: [String]

    /// `commands`: delete in `deleteRepositories` (all of `repositories` when nil).
    public init(task: String, runID: String, repositories: [String], pullRepositories: [String] = [], deadline: Date,
                commands: Bool = false, deleteRepositories: [String]? = nil) {
        self.task = task; self.runID = runID; self.repositories = repositories
        self.deleteRepositories = commands ? (deleteRepositories ?? repositories).filter { repositories.contains($0) } : []
        self.pullRepositories = pullRepositories.filter { !repositories.contains($0) }
        self.deadline = Date(timeIntervalSince1970: deadline.timeIntervalSince1970.rounded(.down))
    }

    static let prefix = "run:"

    var subject: String {
        Self.prefix + task + "/" + runID + ":" + String(Int64(deadline.timeIntervalSince1970)) + ":"
            + repositories.joined(separator: ",")
            + (pullRepositories.isEmpty && !commands ? "" : ":" + pullRepositories.joined(separator: ","))
            + (commands ? ":" + Self.commandsMark + "=" + deleteRepositories.joined(separator: ",") : "")
    }

    static let commandsMark = "berth-commands"

    init?(subject: String) {
        guard subject.hasPrefix(Self.prefix) else { return nil }
        let parts = subject.dropFirst(Self.prefix.count).split(separator: ":", maxSplits: 4, omittingEmptySubsequences: false)
        guard (3...5).contains(parts.count), let seconds = Int64(parts[1]) else { return nil }
        let commands = parts.count == 5
        var deletes: [String] = []
        if commands {
            guard parts[4].hasPrefix(Self.commandsMark + "=") else { return nil }
            deletes = parts[4].dropFirst(Self.commandsMark.count + 1).split(separator: ",").map(String.init)
            guard !deletes.isEmpty else { return nil }
        }
        let name = parts[0].split(separator: "/", omittingEmptySubsequences: false)
        guard name.count == 2, !name[0].isEmpty, !name[1].isEmpty else { return nil }
        let repositories = parts[2].split(separator: ",").map(String.init)
        guard !repositories.isEmpty, repositories.allSatisfy(RepositoryName.isValid) else { return nil }
        // (review: the pulls of a run with berth steps, its fourth of five parts, were dropped)
        let pulls = parts.count >= 4 ? parts[3].split(separator: ",").map(String.init) : []
        guard parts.count == 3 || commands || !pulls.isEmpty, pulls.allSatisfy(RepositoryName.isValid) else { return nil }
        guard deletes.allSatisfy(repositories.contains) else { return nil }
        self.init(task: String(name[0]), runID: String(name[1]), repositories: repositories, pullRepositories: pulls,
                  deadline: Date(timeIntervalSince1970: Double(seconds)), commands: commands, deleteRepositories: deletes)
    }

    /// Push and pull on each of its repositories, pull on its pull repositories, until its
    /// deadline; nil after it.
    func principal(now: Date = Date()) -> Principal? {
        guard now < deadline else { return nil }
        let grants = repositories.compactMap { repository in
            let own = deleteRepositories.contains(repository) ? Role.push.actions.union(Role.delete.actions) : Role.push.actions
            return (try? RepositoryPattern(repository)).map { Grant($0, own) }
        } + pullRepositories.compactMap { repository in
            (try? RepositoryPattern(repository)).map { Grant($0, Role.pull.actions) }
        }
        return Principal(kind: .token, name: "run:" + task + "/" + runID, grants: grants, managementByGrants: commands)
    }
}

extension AccessControl {
    /// The well-known user name with which a run's token is presented as a password (not a valid
    /// identity or token name).
    public static let runTokenUser = "berth~run"

    /// Mints the credentials of a run: a token of type `run` for `identity`, valid until its
    /// deadline. Hand them only to the run (its auth file); never log them.
    public func issueRunCredentials(_ identity: RunIdentity, audience: String,
                                    now: Date = Date()) async throws -> (username: String, password: String) {
        guard !identity.repositories.isEmpty, identity.repositories.allSatisfy(RepositoryName.isValid),
              identity.pullRepositories.allSatisfy(RepositoryName.isValid),
              RunIdentity(subject: identity.subject) == identity else {
            throw AccessError.invalid("a run identity needs valid repository names, a task name and a run id")
        }
        let lifetime = max(1, identity.deadline.timeIntervalSince(now))
        let (token, _) = try await tokens.issue(subject: identity.subject, subjectID: nil, audience: audience, type: "run",
                                                generation: 0, access: nil, now: now, lifetime: lifetime)
        return (Self.runTokenUser, token)
    }
}
