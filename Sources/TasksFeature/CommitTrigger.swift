import Access
import Crypto
import Foundation
import Logging
import RegistryCore
import RegistryStore
import ServiceLifecycle
import TaskRunner

extension OutboundPolicy.Destination {
    /// The `http.curloptResolve` pin of a checked destination (nil for an address literal, which
    /// git does not resolve). A name that cannot be expressed as a pin is refused rather than
    /// handed to git unpinned, where a re-resolution could reach an address the check refused
    /// (found in review: the pin failed open).
    var gitPin: String? {
        get throws(TaskError) {
            if let pin = GitRemote.pin(host: host, port: port, address: address.description, addressIsV4: address.isV4) { return pin }
            guard GitRemote.isAddressLiteral(host) else {
                throw .invalid("the git host \(host.prefix(80)) cannot be pinned to the address the outbound check allowed")
            }
            return nil
        }
    }
}

/// The tasks' push-webhook secrets: 256 random bits, shown once, kept sealed with AES-GCM under
/// the tasks' sealing key and bound to the task's name (a sealed value copied onto another task
/// does not open).
struct TaskSecrets: Sendable {
    let key: SymmetricKey

    static func context(_ task: String) -> Data { Data("berth-task:\(task.utf8.count):\(task):git-webhook".utf8) }

    func seal(_ secret: String, task: String) throws -> Data {
        try AES.GCM.seal(Data(secret.utf8), using: key, authenticating: Self.context(task)).combined!
    }

    func open(_ sealed: Data, task: String) -> String? {
        guard let box = try? AES.GCM.SealedBox(combined: sealed),
              let plain = try? AES.GCM.open(box, using: key, authenticating: Self.context(task)) else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }
}

extension TasksFeature {
    /// The name of the tasks' sealing key in the key material store.
    public static let keyMaterialName = "task-sealing-key"

    /// The key that seals the tasks' webhook secrets, shared by every node (created once).
    public static func sharedSealingKey(_ shared: SharedKeyMaterial) async throws -> SymmetricKey {
        let loaded = try await shared.loadOrCreate(keyMaterialName) { SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) } }
        guard loaded.plaintext.count == 32 else { throw KeyMaterialError("the stored task sealing key is not 32 bytes") }
        return SymmetricKey(data: loaded.plaintext)
    }
}

/// What a commit trigger did with one observation of a branch.
enum CommitObservation: Equatable {
    /// First sight of the branch (or of a new branch after the context changed): recorded, no run.
    case recorded
    /// The branch was already at that commit.
    case unchanged
    /// A run was queued for the commit.
    case queued(TaskRunRecord)
    /// Another writer moved the commit meanwhile, or the task is gone.
    case lost
}

extension TaskService {
    /// Records that `task`'s branch is at `commit`. A commit other than the one last seen queues a
    /// run (`trigger` `commit`, with the commit) when `queueOnFirstSight` or a commit was seen
    /// before on that branch; the stored commit moves in the same transaction, so a poll and a
    /// webhook (or two nodes) never queue one commit twice.
    func observe(task: String, branch: String, commit: String, queueOnFirstSight: Bool) async throws -> CommitObservation {
        for _ in 0..<3 {
            let seen = try await commitStore.taskCommit(task: task)
            let observed = try await observe(task: task, branch: branch, commit: commit, queueOnFirstSight: queueOnFirstSight, seen: seen)
            if observed != .lost { return observed }
        }
        return .lost
    }

    /// One attempt, against `seen`, the state read before (`.lost` when it changed since).
    func observe(task: String, branch: String, commit: String, queueOnFirstSight: Bool,
                 seen: TaskCommitState?) async throws -> CommitObservation {
        if let seen, seen.branch == branch, seen.commit == commit { return .unchanged }
        let known = seen?.branch == branch
        let trigger: String? = known || queueOnFirstSight ? "commit" : nil
        let advanced = try await EventOrigin.$current.withValue(EventOrigin(actor: "commit-trigger", address: "-")) {
            try await commitStore.advanceTaskCommit(task: task, branch: branch, expected: seen?.commit, commit: commit,
                                                    trigger: trigger)
        }
        guard let advanced else { return .lost }
        return advanced.run.map(CommitObservation.queued) ?? .recorded
    }
}

/// The polling half of the git-commit triggers, a feature service (leased: one node of a cluster
/// polls). Every `commitPollInterval` it asks each enabled task with the trigger on for its
/// branch's head (`git ls-remote`, after the outbound check, pinned to the address checked) and
/// queues a run when the head moved since the commit last seen. The first look at a branch only
/// records it; the last seen commit is stored, so a restart does not trigger again.
public struct CommitPollService: Service {
    let tasks: TaskService

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await pollAll()
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: tasks.configuration.commitPollInterval) }
        }
    }

    func pollAll() async {
        guard let all = try? await tasks.store.tasks() else { return }
        for task in all where task.enabled && task.commitTriggerEnabled == true && task.context != nil {
            if Task.isCancelled { return }
            do {
                try await poll(task)
            } catch {
                tasks.logger.warning("commit trigger: cannot look at the task's branch",
                                     metadata: ["task": "\(task.name)", "error": "\(error)"])
            }
        }
    }

    func poll(_ task: TaskRecord) async throws {
        guard let context = task.context else { return }
        let git = try GitContext(parsing: context)
        let destination: OutboundPolicy.Destination
        do { destination = try await tasks.configuration.outbound.check(git.url) } catch {
            throw TaskError.invalid("context refused: \(error.message)")
        }
        // Read before asking the remote: a webhook that records a newer commit meanwhile makes
        // this (older) answer lose, instead of queueing a run of the commit it replaced.
        let seen = try await tasks.commitStore.taskCommit(task: task.name)
        guard let head = try await tasks.configuration.checkout.headCommit(url: git.url, branch: git.branch,
                                                                           resolve: try destination.gitPin) else {
            throw TaskError.invalid("the repository has no branch \(git.branch)")
        }
        let observed = try await tasks.observe(task: task.name, branch: git.branch, commit: head, queueOnFirstSight: false,
                                               seen: seen)
        if case .queued(let run) = observed {
            tasks.logger.info("commit trigger queued a run",
                              metadata: ["task": "\(task.name)", "run": "\(run.id)", "commit": "\(head)"])
        }
    }
}
