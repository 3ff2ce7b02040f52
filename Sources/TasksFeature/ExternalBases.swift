import Foundation
import Logging
import OCIModel
import RegistryCore
import RegistryStore
import ServiceLifecycle
import Tasks
import UpstreamClient

/// Base-image triggers on bases in other registries (issue 16 item 4: "bases in other registries
/// are polled"), a feature service (leased: one node of a cluster polls). Every
/// `externalBasePollInterval` it resolves each external base that an enabled task with the
/// trigger declares (its runtime base, and its build-time bases for type `All`) to the digest its
/// tag points at, once per base per pass whatever the number of tasks, and compares it with the
/// digest the task last saw (`TaskRecord.externalBaseDigests`). The first look only records it; a
/// different digest records it and queues a run through the same coalescing as a push in this
/// registry (`TaskService.baseImageMoved`). The registry is asked with a HEAD of the manifest
/// (no pull counted where HEADs are free), through `UpstreamClient`: every destination checked by
/// the outbound policy, HTTPS unless the operator named the registry in `insecureBaseRegistries`.
public struct ExternalBasePollService: Service {
    let tasks: TaskService

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await pollAll(now: Date())
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: tasks.configuration.externalBasePollInterval) }
        }
    }

    /// The external bases a task watches: its runtime base, and the build-time ones for `All`.
    static func watched(_ task: TaskRecord) -> [String] {
        guard task.enabled, task.context != nil, let type = task.baseImageTrigger.flatMap(BaseImageTriggerType.init(parsing:)) else {
            return []
        }
        return (task.externalBases ?? []).filter { type == .all || $0.runtime }.map(\.reference)
    }

    /// One pass over every task. Returns the tasks it queued (or deferred) a run for, for tests.
    @discardableResult
    func pollAll(now: Date) async -> [String] {
        guard let all = try? await tasks.store.tasks() else { return [] }
        var resolved: [String: Result<String, any Error>] = [:]
        var triggered: [String] = []
        for task in all {
            let references = Self.watched(task)
            guard !references.isEmpty else { continue }
            var seen: [String: String] = [:]
            var moved: [(reference: String, digest: String)] = []
            for reference in references {
                if Task.isCancelled { return triggered }
                if resolved[reference] == nil {
                    do {
                        resolved[reference] = .success(try await resolve(reference))
                    } catch {
                        resolved[reference] = .failure(error)
                        tasks.logger.warning("base-image trigger: cannot resolve a base in another registry",
                                             metadata: ["base": "\(reference)", "error": "\(String(describing: error).prefix(300))"])
                    }
                }
                guard case .success(let digest)? = resolved[reference] else { continue }
                seen[reference] = digest
                if let before = task.externalBaseDigests?[reference], before != digest { moved.append((reference, digest)) }
            }
            guard !seen.isEmpty else { continue }
            do {
                // Recorded first: a run queued below, or a crash between the two, never makes the
                // same move queue twice.
                guard try await record(task.name, seen: seen) else { continue }
                for move in moved {
                    try await tasks.baseImageMoved(task.name, reference: move.reference, digest: move.digest, now: now, external: true)
                }
                if !moved.isEmpty { triggered.append(task.name) }
            } catch {
                tasks.logger.warning("base-image trigger: cannot record a base in another registry",
                                     metadata: ["task": "\(task.name)", "error": "\(error)"])
            }
        }
        return triggered
    }

    /// Writes the digests seen onto the task as it is now (read again right before the write, as
    /// `recordBaseTrigger` does); false when the task is gone or its trigger was turned off.
    func record(_ name: String, seen: [String: String]) async throws -> Bool {
        guard var fresh = try await tasks.store.task(named: name), fresh.baseImageTrigger != nil else { return false }
        var digests = fresh.externalBaseDigests ?? [:]
        for (reference, digest) in seen where fresh.externalBases?.contains(where: { $0.reference == reference }) == true {
            digests[reference] = digest
        }
        guard digests != fresh.externalBaseDigests ?? [:] else { return true }
        fresh.externalBaseDigests = digests
        return try await tasks.store.updateTask(fresh)
    }

    func resolve(_ reference: String) async throws -> String {
        if let resolve = tasks.configuration.resolveExternalBase { return try await resolve(reference) }
        return try await Self.upstreamDigest(reference, configuration: tasks.configuration)
    }

    /// The digest `host/repository:tag` points at in its registry: the `Docker-Content-Digest` of
    /// a HEAD, else the digest of the manifest fetched (and parsed, within `UpstreamLimits`).
    static func upstreamDigest(_ reference: String, configuration: TasksConfiguration) async throws -> String {
        let parsed = try ImageReference(parsing: reference)
        guard let host = parsed.host, let tag = parsed.tag else {
            throw TaskError.invalid("\(reference.prefix(200)) is not host/repository:tag")
        }
        // Docker Hub's official images live under library/.
        let repository = host == "docker.io" && !parsed.repository.contains("/") ? "library/" + parsed.repository : parsed.repository
        let client = try UpstreamClient(registry: host, plainHTTP: insecure(host, configuration.insecureBaseRegistries),
                                        policy: configuration.outbound)
        if let stated = try await client.manifestDigest(repository: repository, tag: tag) { return stated.string }
        return try await client.manifest(repository: repository, reference: .tag(tag)).digest.string
    }

    /// Whether `host` (`name[:port]`) is named in the insecure list, with its port or without one
    /// (then every port of that name).
    static func insecure(_ host: String, _ list: Set<String>) -> Bool {
        if list.contains(host) { return true }
        guard !host.hasSuffix("]"), let colon = host.lastIndex(of: ":") else { return false }
        return list.contains(String(host[..<colon]))
    }
}
