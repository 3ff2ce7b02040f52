import Access
import Foundation
import OCIModel
import RegistryStore
import Tasks

/// The base images a task's build steps declare, read from their Dockerfiles in a checked-out
/// source (someone else's files: a Dockerfile that is a link out of the source, or larger than
/// `TaskLimits.maxDockerfileBytes`, is refused; one that is missing is skipped, the run reports it).
/// Only bases with a tag count (a digest never moves): those in this registry as `repository:tag`
/// (their pushes are in the event log), those elsewhere as `host/repository:tag` (polled).
enum DeclaredBases {
    static func find(in file: TaskFile, source: String, registry: String) throws(TaskError) -> [TaskBaseRecord] {
        try declared(in: file, source: source, registry: registry).local
    }

    /// The full reference of a base in another registry: an unqualified one is Docker Hub's.
    static func externalReference(_ reference: ImageReference) -> String {
        (reference.host ?? "docker.io") + "/" + reference.repository + ":" + reference.tagOrLatest
    }

    static func declared(in file: TaskFile, source: String,
                         registry: String) throws(TaskError) -> (local: [TaskBaseRecord], external: [TaskBaseRecord]) {
        let root = URL(fileURLWithPath: source).resolvingSymlinksInPath().path
        var found: [TaskBaseRecord] = []
        var external: [TaskBaseRecord] = []
        func add(_ reference: ImageReference, runtime: Bool) {
            guard reference.digest == nil else { return }
            let local = reference.host == registry
            let record = TaskBaseRecord(reference: local ? reference.repository + ":" + reference.tagOrLatest
                                                         : Self.externalReference(reference), runtime: runtime)
            if let index = (local ? found : external).firstIndex(where: { $0.reference == record.reference }) {
                if local { found[index].runtime = found[index].runtime || runtime } else {
                    external[index].runtime = external[index].runtime || runtime
                }
            } else if local {
                found.append(record)
            } else {
                external.append(record)
            }
        }
        for step in file.steps {
            guard case .build(let arguments) = step.action else { continue }
            let base = step.workingDirectory.map { source + "/" + $0 } ?? source
            let context = arguments.context.hasPrefix("/") ? arguments.context : base + "/" + arguments.context
            let named = arguments.dockerfile ?? "Dockerfile"
            let path = URL(fileURLWithPath: named.hasPrefix("/") ? named : context + "/" + named).resolvingSymlinksInPath().path
            guard path.hasPrefix(root + "/") else {
                throw .invalid("line \(step.line): the Dockerfile of step \(step.id) is not inside the task's source")
            }
            guard let handle = FileHandle(forReadingAtPath: path) else { continue }
            defer { try? handle.close() }
            let limit = TaskLimits.default.maxDockerfileBytes
            let data = (try? handle.read(upToCount: limit + 1)) ?? Data()
            guard data.count <= limit else { throw .invalid("line \(step.line): the Dockerfile of step \(step.id) is too large") }
            let bases: DockerfileBases
            do {
                bases = try DockerfileBases(dockerfile: String(decoding: data, as: UTF8.self), buildArgs: arguments.buildArgValues,
                                            target: arguments.target)
            } catch {
                throw .invalid("line \(step.line): the Dockerfile of step \(step.id): \(error)")
            }
            if let runtime = bases.runtimeBase { add(runtime, runtime: true) }
            for reference in bases.buildTimeBases { add(reference, runtime: false) }
        }
        return (found, external)
    }

    /// `repository:tag` of the references the file's push steps name (in this registry).
    static func outputs(of file: TaskFile, registry: String) -> [String] {
        var names: [String] = []
        for step in file.steps {
            guard case .push(let references) = step.action else { continue }
            for reference in references where reference.host == registry && reference.digest == nil {
                let name = reference.repository + ":" + reference.tagOrLatest
                if !names.contains(name) { names.append(name) }
            }
        }
        return names
    }
}

extension TaskService {
    /// The base-image trigger settings of a task as it is saved: its type checked, its outputs
    /// found, its declared bases read from its context (a shallow clone, after the outbound
    /// check), and refused when it would trigger itself or close a cycle of triggers.
    /// `mayPull` says whether the caller may pull a base (the run identity will).
    func validateBaseImageTrigger(_ record: inout TaskRecord, file: TaskFile, mayPull: (String) -> Bool) async throws(TaskError) {
        record.outputs = DeclaredBases.outputs(of: file, registry: configuration.registry)
        guard let type = record.baseImageTrigger else { return }
        guard let parsed = BaseImageTriggerType(parsing: type) else {
            throw .invalid("baseImageTriggerType must be Runtime or All")
        }
        record.baseImageTrigger = parsed.rawValue
        guard let context = record.context else {
            throw .invalid("a base-image trigger needs a git context (--context GIT_URL#BRANCH)")
        }
        let git = try GitContext(parsing: context)
        let checkout = sourcesDirectory + "/declare-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: checkout) }
        let destination: OutboundPolicy.Destination
        do {
            destination = try await configuration.outbound.check(git.url)
        } catch {
            throw .invalid("context refused: \(error.message)")
        }
        // Pinned to the address just checked, as runs and polls are (found in review: this clone
        // let git resolve the name again, so a DNS rebinding could reach a refused address).
        let pin = try destination.gitPin
        do {
            try FileManager.default.createDirectory(atPath: checkout, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try await configuration.checkout.gitClone(url: git.url, branch: git.branch, into: checkout + "/repo", resolve: pin)
        } catch {
            throw .invalid("cannot read the context's Dockerfiles for the base-image trigger: \(error)")
        }
        var source = checkout + "/repo"
        if let sub = git.directory {
            let root = URL(fileURLWithPath: source).resolvingSymlinksInPath().path
            let resolved = URL(fileURLWithPath: source + "/" + sub).resolvingSymlinksInPath().path
            guard resolved.hasPrefix(root + "/") else { throw .invalid("the context directory \(sub) leads out of the repository") }
            source = resolved
        }
        let declared = try DeclaredBases.declared(in: file, source: source, registry: configuration.registry)
        record.bases = declared.local
        record.externalBases = declared.external.isEmpty ? nil : declared.external
        // Digests seen of bases no longer declared are forgotten (a base declared again is first
        // recorded, not taken for a move).
        record.externalBaseDigests = record.externalBaseDigests?.filter { seen in declared.external.contains { $0.reference == seen.key } }
        try await checkTriggerGraph(record, mayPull: mayPull)
    }

    /// Refuses a task whose base-image trigger would rebuild it forever: its output is its own
    /// triggering base, or it closes a cycle with other tasks; and bases the caller may not pull.
    func checkTriggerGraph(_ record: TaskRecord, mayPull: (String) -> Bool) async throws(TaskError) {
        for base in record.bases ?? [] {
            let repository = String(base.reference[..<(base.reference.lastIndex(of: ":") ?? base.reference.endIndex)])
            guard mayPull(repository) else { throw .forbidden("you may not pull \(repository), which the task's Dockerfile builds on") }
        }
        let others: [TaskRecord]
        do { others = try await store.tasks().filter { $0.name != record.name } } catch { throw .invalid("cannot read the tasks: \(error)") }
        let graph = BaseImageTriggerGraph(others.map(BaseImageTriggerGraph.Node.init) + [.init(record)])
        if let output = graph.selfLoop(record.name) {
            throw .invalid("task \(record.name) pushes \(output), which is its own base image: "
                           + "its base-image trigger would rebuild it forever")
        }
        if let cycle = graph.cycle(through: record.name) {
            throw .invalid("a cycle of base-image triggers: \(cycle.joined(separator: " → ")) "
                           + "(each pushes a base of the next)")
        }
    }
}
