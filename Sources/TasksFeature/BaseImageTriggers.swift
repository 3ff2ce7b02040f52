import Foundation
import RegistryStore

/// Which bases of a task trigger it.
public enum BaseImageTriggerType: String, Sendable, CaseIterable {
    /// Only the runtime base: the image the built stage stands on.
    case runtime = "Runtime"
    /// Build-time bases too (other stages' `FROM`, `COPY --from=<image>`).
    case all = "All"

    /// `Runtime` or `All`, in any case.
    public init?(parsing text: String) {
        guard let found = Self.allCases.first(where: { $0.rawValue.lowercased() == text.lowercased() }) else { return nil }
        self = found
    }
}

/// The trigger graph of base images (issue 16 items 4-5), pure: which tasks a moved tag queues,
/// and which tasks would loop. A node is a task with its outputs (the `repository:tag`s its push
/// steps name) and the bases that trigger it (by its trigger type); an edge U → T says U's output
/// is one of T's triggering bases.
///
/// - A task whose output is one of its own triggering bases would rebuild forever: refused.
/// - A cycle of edges (A's output is B's base and B's output A's, any length) likewise.
/// - A moved tag queues only the dependents that no other dependent of the same tag leads to:
///   in a chain base → mid → app where app names base too, base's push queues mid, and app is
///   queued by mid's push, so each level builds once, after the level below.
public struct BaseImageTriggerGraph: Sendable {
    public struct Node: Sendable, Equatable {
        public var task: String
        public var outputs: Set<String>
        /// The bases that trigger it (empty when its trigger is off).
        public var triggers: Set<String>
        public init(task: String, outputs: Set<String>, triggers: Set<String>) {
            self.task = task; self.outputs = outputs; self.triggers = triggers
        }
    }

    public let nodes: [String: Node]

    public init(_ nodes: [Node]) {
        var byName: [String: Node] = [:]
        for node in nodes { byName[node.task] = node }
        self.nodes = byName
    }

    /// The tasks a task's outputs trigger.
    public func children(of task: String) -> [String] {
        guard let outputs = nodes[task]?.outputs, !outputs.isEmpty else { return [] }
        return nodes.values.filter { $0.task != task && !$0.triggers.isDisjoint(with: outputs) }.map(\.task).sorted()
    }

    /// The output of `task` that is one of its own triggering bases, if any.
    public func selfLoop(_ task: String) -> String? {
        guard let node = nodes[task] else { return nil }
        return node.outputs.intersection(node.triggers).sorted().first
    }

    /// A cycle through `task` (the task names in order, starting and ending with it), if any.
    public func cycle(through task: String) -> [String]? {
        // Depth-first from the task's children, remembering the path back.
        var parent: [String: String] = [:]
        var pending = children(of: task).map { ($0, task) }
        var seen = Set<String>()
        while let (current, from) = pending.popLast() {
            guard seen.insert(current).inserted else { continue }
            parent[current] = from
            if current == task {
                var path = [task]
                var at = from
                while at != task, let up = parent[at] { path.append(at); at = up }
                path.append(task)
                return path.reversed()
            }
            for child in children(of: current) where child == task || !seen.contains(child) { pending.append((child, current)) }
        }
        return nil
    }

    /// Every task reachable from `task` through its outputs (not itself unless it is on a cycle).
    public func downstream(of task: String) -> Set<String> {
        var reached = Set<String>()
        var pending = children(of: task)
        while let current = pending.popLast() {
            guard reached.insert(current).inserted else { continue }
            pending += children(of: current)
        }
        return reached
    }

    /// The tasks a move of `reference` queues: those it triggers, less those another of them
    /// leads to (they are queued by that one's push), less `pushedBy` (a task never triggers
    /// itself) and tasks on a cycle (left alone, and reported by `cycle(through:)`).
    public func triggered(by reference: String, pushedBy: String? = nil) -> [String] {
        // A task on a cycle is never queued, so it leads to nothing either.
        let direct = Set(nodes.values.filter { $0.triggers.contains(reference) && $0.task != pushedBy }.map(\.task))
            .filter { cycle(through: $0) == nil }
        return direct.sorted().filter { task in
            !direct.contains { other in other != task && downstream(of: other).contains(task) }
        }
    }
}

extension BaseImageTriggerGraph.Node {
    /// A stored task as a node: its outputs and, when its base-image trigger is on, the bases of
    /// the trigger's type.
    public init(_ task: TaskRecord) {
        let type = task.baseImageTrigger.flatMap(BaseImageTriggerType.init(parsing:))
        let triggers: [String]
        switch type {
        case nil: triggers = []
        case .runtime?: triggers = (task.bases ?? []).filter(\.runtime).map(\.reference)
        case .all?: triggers = (task.bases ?? []).map(\.reference)
        }
        self.init(task: task.name, outputs: Set(task.outputs ?? []), triggers: task.enabled ? Set(triggers) : [])
    }
}

/// How base-image triggers of one task are coalesced within a window: the first trigger queues
/// a run at once (a push to a dependent run's start stays fast); later ones are merged into a
/// run that is still queued (it builds from the newest base when it starts), dropped when the
/// latest run already built from that very digest, and otherwise deferred to one run at the end
/// of the window. So a task is queued by its bases at most once per window, and never left
/// built from an older base than the newest one pushed.
public struct BaseTriggerCoalescing: Sendable {
    public enum Decision: Sendable, Equatable {
        case queueNow
        /// A queued run already covers it.
        case merged
        /// The latest run built from this digest already.
        case alreadyBuilt
        /// Queue at this time (the window's end), unless a run is queued by then.
        case deferred(until: Date)
    }

    public var window: TimeInterval

    public init(window: TimeInterval) { self.window = window }

    /// - Parameters:
    ///   - lastTriggeredAt: when a base-image trigger last queued a run of the task.
    ///   - hasQueuedRun: a run of the task is queued and has not started.
    ///   - latestBuiltDigest: the digest the latest started run resolved this base to.
    public func decide(now: Date, digest: String?, lastTriggeredAt: Date?, dueAt: Date?, hasQueuedRun: Bool,
                       latestBuiltDigest: String?) -> Decision {
        if hasQueuedRun { return .merged }
        if let digest, digest == latestBuiltDigest { return .alreadyBuilt }
        if let dueAt { return .deferred(until: dueAt) }
        guard let last = lastTriggeredAt, now < last.addingTimeInterval(window) else { return .queueNow }
        return .deferred(until: last.addingTimeInterval(window))
    }
}
