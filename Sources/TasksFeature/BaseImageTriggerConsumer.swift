import Foundation
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import ServiceLifecycle
import Tasks

/// Base-image triggers (issue 16 items 4-5): an event consumer of the runner (durable cursor, at
/// least once, retries) that reads tag pushes and moves from the event log, as they happen, and
/// queues the tasks that build on the moved tag (`BaseImageTriggerGraph.triggered`), coalesced per
/// task (`BaseTriggerCoalescing`). Run as a feature service, so under a lease one node of a cluster
/// runs it. A delivered-again event queues nothing new: the run it queued is still queued
/// (merged) or has built from that digest (already built).
public struct BaseImageTriggerConsumer: EventConsumer {
    public static let name = "tasks:base-image"
    public var name: String { Self.name }
    /// Pushes from when the feature first runs: older moves have nothing left to trigger.
    public var start: EventConsumerStart { .end }

    let tasks: TaskService

    public func handle(_ events: [Event]) async throws {
        let moves = events.filter { ($0.action == .manifestPush || $0.action == .tagMove) && $0.tag != nil }
        guard !moves.isEmpty else { return }
        let graph = BaseImageTriggerGraph(try await tasks.store.tasks().map(BaseImageTriggerGraph.Node.init))
        // A push with a tag is two events (the push and the tag's move): one change.
        var seen = Set<String>()
        for event in moves {
            guard let tag = event.tag else { continue }
            let reference = event.repository + ":" + tag
            guard seen.insert(reference + "@" + (event.digest ?? "")).inserted else { continue }
            for name in graph.triggered(by: reference, pushedBy: Self.pushingTask(event.actor)) {
                try await tasks.baseImageMoved(name, reference: reference, digest: event.digest, now: Date(),
                                               event: event.sequence)
            }
        }
    }

    /// The task whose run pushed, from the event's actor (`token:run:<task>/<run id>`).
    static func pushingTask(_ actor: String?) -> String? {
        guard let actor, actor.hasPrefix("token:run:") else { return nil }
        return actor.dropFirst("token:run:".count).split(separator: "/").first.map(String.init)
    }
}

/// Runs the base-image trigger consumer with the server (a feature service; leased by the server).
struct BaseImageTriggerService: Service, EventConsumerHost {
    let runner: EventConsumerRunner
    let poll: Duration

    var consumerNames: [String] { [runner.consumer.name] }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            await runner.run(poll: poll, isStopping: { Task.isShuttingDownGracefully })
        }
    }
}

extension TaskService {
    /// The trigger string of runs a base image queued.
    static let baseImageTrigger = "base-image"

    /// `reference` (`repository:tag` in this registry, or `host/repository:tag` of another when
    /// `external`) moved to `digest`: queue `name` now, merge into its queued run, or defer to
    /// the end of its window. A move made before the task existed (its `event`, a sequence
    /// number of the event log, at or before the task's `createdAfterEvent`) queues nothing: the
    /// task's first run resolves its bases as they are then (found by a flaky interop test: a
    /// base pushed just before `task create`, read by the consumer just after it, queued a second
    /// first run beside the one asked for). The log's order, not clocks: nodes' clocks differ.
    func baseImageMoved(_ name: String, reference: String, digest: String?, now: Date, event: Int64? = nil,
                        external: Bool = false) async throws {
        guard let task = try await store.task(named: name), task.enabled, task.baseImageTrigger != nil,
              task.context != nil else { return }
        if let event, let createdAfter = task.createdAfterEvent, event <= createdAfter { return }
        let runs = try await store.taskRuns(task: name, limit: 20)
        let latest = runs.first { $0.status != .queued && $0.status != .cancelled }
        let full = external ? reference : configuration.registry + "/" + reference
        let builtRecord = latest?.baseImages.first { $0.reference == full }
        let built = builtRecord?.digest
        if !external, let colon = reference.lastIndex(of: ":"),
           await samePlatformImage(builtRecord, repository: String(reference[..<colon]), digest: digest) {
            // The index moved for another platform only: no rebuild (the multi-arch storm).
            logger.debug("a base's index moved without changing this platform's image",
                         metadata: ["task": "\(name)", "base": "\(reference)"])
            return
        }
        let decision = BaseTriggerCoalescing(window: configuration.baseTriggerWindow)
            .decide(now: now, digest: digest, lastTriggeredAt: task.baseTriggeredAt, dueAt: task.baseTriggerDueAt,
                    hasQueuedRun: runs.contains { $0.status == .queued }, latestBuiltDigest: built)
        switch decision {
        case .merged, .alreadyBuilt:
            return
        case .deferred(let until):
            guard task.baseTriggerDueAt != until else { return }
            try await recordBaseTrigger(name, setDue: true, dueAt: until)
        case .queueNow:
            let run = try await EventOrigin.$current.withValue(EventOrigin(actor: "base-image:" + reference, address: "-")) {
                try await queue(name, trigger: Self.baseImageTrigger, uploadedContext: nil)
            }
            try await recordBaseTrigger(name, triggeredAt: now, setDue: true, dueAt: nil)
            logger.info("a base image queued a task run", metadata: ["task": "\(name)", "base": "\(reference)", "run": "\(run.id)"])
        }
    }

    /// Queues the runs coalesced to the end of their window (the queue's tick calls it).
    func fireDeferredBaseTriggers(now: Date) async {
        guard let all = try? await store.tasks() else { return }
        for task in all {
            guard let due = task.baseTriggerDueAt, due <= now else { continue }
            guard let current = try? await store.task(named: task.name), current.baseTriggerDueAt == due else { continue }
            var triggeredAt: Date?
            let runs = (try? await store.taskRuns(task: task.name, limit: 20)) ?? []
            let queued = runs.contains { $0.status == .queued }
            if !queued, current.enabled, current.baseImageTrigger != nil, await !builtFromCurrentBases(runs, task: current) {
                do {
                    let run = try await EventOrigin.$current.withValue(EventOrigin(actor: "base-image", address: "-")) {
                        try await queue(task.name, trigger: Self.baseImageTrigger, uploadedContext: nil)
                    }
                    triggeredAt = now
                    logger.info("a coalesced base-image trigger queued a task run", metadata: ["task": "\(task.name)", "run": "\(run.id)"])
                } catch {
                    logger.warning("a base-image trigger could not queue a run", metadata: ["task": "\(task.name)", "error": "\(error)"])
                }
            }
            try? await recordBaseTrigger(task.name, triggeredAt: triggeredAt, setDue: true, dueAt: nil)
        }
    }

    /// Writes only the trigger's bookkeeping onto the task as it is now (read again right before
    /// the write), so an edit made through the API while a run was being queued is kept (found in
    /// review: the whole record read before those awaits was written back, undoing a `disable` or
    /// a new webhook secret). Not a compare-and-swap: the window left is one store call.
    func recordBaseTrigger(_ name: String, triggeredAt: Date? = nil, setDue: Bool, dueAt: Date?) async throws {
        guard var fresh = try await store.task(named: name) else { return }
        if let triggeredAt { fresh.baseTriggeredAt = triggeredAt }
        if setDue { fresh.baseTriggerDueAt = dueAt }
        _ = try await store.updateTask(fresh)
    }

    /// Whether the latest started run recorded its bases and every one of them still points
    /// at the digest it built from (a trigger deferred while that run was resolving them is
    /// then already covered). A base in another registry points where it was last polled.
    func builtFromCurrentBases(_ runs: [TaskRunRecord], task: TaskRecord) async -> Bool {
        guard let images, let latest = runs.first(where: { $0.status != .queued && $0.status != .cancelled }),
              !latest.baseImages.isEmpty else { return false }
        for external in task.externalBases ?? [] {
            guard let polled = task.externalBaseDigests?[external.reference],
                  latest.baseImages.contains(where: { $0.reference == external.reference && $0.digest == polled }) else { return false }
        }
        for base in latest.baseImages where !(task.externalBases ?? []).contains(where: { $0.reference == base.reference }) {
            let reference = base.reference.dropFirst(configuration.registry.count + 1)
            guard base.reference.hasPrefix(configuration.registry + "/"), let colon = reference.lastIndex(of: ":") else { return false }
            let current = try? await images.tagTarget(repository: String(reference[..<colon]),
                                                      tag: String(reference[reference.index(after: colon)...]))
            if current?.string == base.digest { continue }
            guard await samePlatformImage(base, repository: String(reference[..<colon]), digest: current?.string) else { return false }
        }
        return true
    }

    /// When `digest` in `repository` is an index (OCI or Docker manifest list): the digest of
    /// its manifest for `configuration.platform` (the first that matches, as a pull picks it);
    /// nil for a plain manifest, one that cannot be read, or an index without that platform.
    func platformManifest(repository: String, digest: OCIModel.Digest) async -> OCIModel.Digest? {
        guard let read = configuration.manifestContent,
              let content = try? await read(repository, digest),
              content.mediaType == "application/vnd.oci.image.index.v1+json"
                || content.mediaType == "application/vnd.docker.distribution.manifest.list.v2+json" else { return nil }
        struct Index: Decodable {
            struct Entry: Decodable {
                struct Platform: Decodable { let os: String?; let architecture: String?; let variant: String? }
                let digest: String
                let platform: Platform?
            }
            let manifests: [Entry]?
        }
        guard let index = try? JSONDecoder().decode(Index.self, from: Data(content.bytes)) else { return nil }
        let parts = configuration.platform.split(separator: "/").map(String.init)
        guard parts.count >= 2 else { return nil }
        let entry = index.manifests?.first { entry in
            guard let p = entry.platform, p.os == parts[0], p.architecture == parts[1] else { return false }
            return parts.count < 3 || p.variant == parts[2]
        }
        return entry.flatMap { try? OCIModel.Digest(parsing: $0.digest) }
    }

    /// Whether `digest` (a new target of a base's tag) gives the run's platform the image
    /// `built` recorded: an index whose platform manifest is unchanged (another platform's
    /// child was added or changed) rebuilds nothing.
    func samePlatformImage(_ built: TaskRunImageRecord?, repository: String, digest: String?) async -> Bool {
        guard let recorded = built?.platformDigest, built?.platform == configuration.platform,
              let digest, let parsed = try? OCIModel.Digest(parsing: digest),
              let child = await platformManifest(repository: repository, digest: parsed) else { return false }
        return child.string == recorded
    }

    /// The bases a run's checkout declares, with the digests their tags point at now (just
    /// before the build pulls them, so a later move is seen as a change, never missed).
    func resolvedBases(of file: TaskFile, source: String) async -> [TaskRunImageRecord] {
        guard let images = self.images, let declared = try? DeclaredBases.declared(in: file, source: source, registry: configuration.registry)
        else { return [] }
        var records: [TaskRunImageRecord] = []
        // Bases in other registries as their registry answers now (nil when it cannot be asked:
        // the build then reports its own pull failure).
        let poller = ExternalBasePollService(tasks: self)
        for base in declared.external {
            let digest = try? await poller.resolve(base.reference)
            records.append(TaskRunImageRecord(reference: base.reference, digest: digest, runtime: base.runtime))
        }
        for base in declared.local {
            guard let colon = base.reference.lastIndex(of: ":") else { continue }
            let digest = try? await images.tagTarget(repository: String(base.reference[..<colon]),
                                                     tag: String(base.reference[base.reference.index(after: colon)...]))
            var record = TaskRunImageRecord(reference: configuration.registry + "/" + base.reference, digest: digest?.string,
                                            runtime: base.runtime)
            if let digest, let child = await platformManifest(repository: String(base.reference[..<colon]), digest: digest) {
                record.platform = configuration.platform
                record.platformDigest = child.string
            }
            records.append(record)
        }
        return records
    }
}
