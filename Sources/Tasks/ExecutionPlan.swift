/// The order in which a task's steps run: a DAG built from `when`.
///
/// Each step waits for the steps it names; `stages` groups the steps by how far from the start
/// they are (a step is in stage k+1 when the furthest step it waits for is in stage k), so the
/// steps of one stage never wait for each other and may run in parallel. `order` is a
/// topological order that keeps the file's order wherever `when` allows.
public struct ExecutionPlan: Sendable, Equatable {
    /// The step ids in file order.
    public let steps: [String]
    /// For each step, the steps it waits for, in the order written.
    public let dependencies: [String: [String]]
    public let order: [String]
    public let stages: [[String]]

    public enum PlanError: Error, Sendable, Equatable {
        case duplicateStep(String)
        /// `step` waits for `waitsFor`, which is no step.
        case unknownStep(step: String, waitsFor: String)
        /// The ids of a cycle, the first repeated at the end: `a → b → a` is `["a", "b", "a"]`.
        case cycle([String])
    }

    /// - Parameter steps: each step's id and the ids it waits for, in file order.
    public init(steps: [(id: String, waitsFor: [String])]) throws(PlanError) {
        var index: [String: Int] = [:]
        for (i, step) in steps.enumerated() {
            guard index[step.id] == nil else { throw .duplicateStep(step.id) }
            index[step.id] = i
        }
        var dependencies: [String: [String]] = [:]
        for step in steps {
            for dep in step.waitsFor where index[dep] == nil {
                throw .unknownStep(step: step.id, waitsFor: dep)
            }
            var seen = Set<String>()
            dependencies[step.id] = step.waitsFor.filter { seen.insert($0).inserted }
        }
        // Kahn's algorithm, always taking the earliest ready step in file order.
        var waiting = steps.map { Set(dependencies[$0.id] ?? []).count }
        var dependents = Array(repeating: [Int](), count: steps.count)
        for (i, step) in steps.enumerated() {
            for dep in Set(dependencies[step.id] ?? []) { dependents[index[dep]!].append(i) }
        }
        var level = Array(repeating: 0, count: steps.count)
        var ready = Set(steps.indices.filter { waiting[$0] == 0 })
        var order: [Int] = []
        while let next = ready.min() {
            ready.remove(next)
            order.append(next)
            for d in dependents[next] {
                level[d] = max(level[d], level[next] + 1)
                waiting[d] -= 1
                if waiting[d] == 0 { ready.insert(d) }
            }
        }
        guard order.count == steps.count else {
            throw .cycle(Self.findCycle(steps: steps, index: index, dependencies: dependencies,
                                        done: Set(order)))
        }
        self.steps = steps.map(\.id)
        self.dependencies = dependencies
        self.order = order.map { steps[$0].id }
        var stages: [[String]] = Array(repeating: [], count: (level.max() ?? -1) + 1)
        for i in steps.indices { stages[level[i]].append(steps[i].id) }
        self.stages = stages
    }

    /// The steps that may start once `completed` have finished (and are not among them).
    public func ready(after completed: Set<String>) -> [String] {
        steps.filter { !completed.contains($0) && (dependencies[$0] ?? []).allSatisfy(completed.contains) }
    }

    /// Walks "waits for" edges among the steps Kahn's algorithm could not order (each of which
    /// waits for another such step) until one repeats; returns that loop, starting at its
    /// earliest step in file order.
    private static func findCycle(steps: [(id: String, waitsFor: [String])], index: [String: Int],
                                  dependencies: [String: [String]], done: Set<Int>) -> [String] {
        let stuck = steps.indices.filter { !done.contains($0) }
        var path: [Int] = []
        var position: [Int: Int] = [:]
        var current = stuck[0]
        while position[current] == nil {
            position[current] = path.count
            path.append(current)
            // a stuck step waits for at least one stuck step
            let deps = dependencies[steps[current].id] ?? []
            current = deps.map { index[$0]! }.first { !done.contains($0) }!
        }
        var loop = Array(path[position[current]!...])
        let start = loop.firstIndex(of: loop.min()!)!
        loop = Array(loop[start...] + loop[..<start])
        return (loop + [loop[0]]).map { steps[$0].id }
    }
}
