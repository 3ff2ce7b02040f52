import Testing
@testable import Tasks

@Suite struct ExecutionPlanTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let steps: [(id: String, waitsFor: [String])]
        let order: [String]
        let stages: [[String]]
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        .init(name: "one step", steps: [("a", [])], order: ["a"], stages: [["a"]]),
        .init(name: "a chain", steps: [("a", []), ("b", ["a"]), ("c", ["b"])], order: ["a", "b", "c"], stages: [["a"], ["b"], ["c"]]),
        .init(name: "all at once", steps: [("a", []), ("b", []), ("c", [])], order: ["a", "b", "c"], stages: [["a", "b", "c"]]),
        .init(name: "diamond", steps: [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["c", "b"])],
              order: ["a", "b", "c", "d"], stages: [["a"], ["b", "c"], ["d"]]),
        .init(name: "file order yields to when", steps: [("a", ["c"]), ("b", []), ("c", ["b"])],
              order: ["b", "c", "a"], stages: [["b"], ["c"], ["a"]]),
        .init(name: "uneven branches", steps: [("a", []), ("b", ["a"]), ("c", ["b"]), ("d", []), ("e", ["d", "c"])],
              order: ["a", "b", "c", "d", "e"], stages: [["a", "d"], ["b"], ["c"], ["e"]]),
        .init(name: "repeated dependency", steps: [("a", []), ("b", ["a", "a"])], order: ["a", "b"], stages: [["a"], ["b"]]),
    ]

    @Test(arguments: cases)
    func ordersSteps(_ c: Case) throws {
        let plan = try ExecutionPlan(steps: c.steps)
        #expect(plan.order == c.order)
        #expect(plan.stages == c.stages)
        // every step comes after what it waits for
        for step in c.steps {
            for dep in step.waitsFor {
                #expect(plan.order.firstIndex(of: dep)! < plan.order.firstIndex(of: step.id)!)
            }
        }
    }

    struct BadCase: Sendable, CustomTestStringConvertible {
        let name: String
        let steps: [(id: String, waitsFor: [String])]
        let error: ExecutionPlan.PlanError
        var testDescription: String { name }
    }

    static let badCases: [BadCase] = [
        .init(name: "self", steps: [("a", ["a"])], error: .cycle(["a", "a"])),
        .init(name: "two", steps: [("a", []), ("b", ["c"]), ("c", ["b"])], error: .cycle(["b", "c", "b"])),
        .init(name: "behind a healthy prefix", steps: [("x", []), ("a", ["x", "d"]), ("b", ["a"]), ("c", ["b"]), ("d", ["c"])],
              error: .cycle(["a", "d", "c", "b", "a"])),
        .init(name: "reached from outside the loop", steps: [("a", ["b"]), ("b", ["c"]), ("c", ["b"])], error: .cycle(["b", "c", "b"])),
        .init(name: "unknown", steps: [("a", []), ("b", ["z"])], error: .unknownStep(step: "b", waitsFor: "z")),
        .init(name: "duplicate", steps: [("a", []), ("a", [])], error: .duplicateStep("a")),
    ]

    @Test(arguments: badCases)
    func refuses(_ c: BadCase) {
        #expect(throws: c.error) { _ = try ExecutionPlan(steps: c.steps) }
    }

    @Test func readyFollowsCompletion() throws {
        let plan = try ExecutionPlan(steps: [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", [])])
        #expect(plan.ready(after: []) == ["a", "e"])
        #expect(plan.ready(after: ["a"]) == ["b", "c", "e"])
        #expect(plan.ready(after: ["a", "b", "e"]) == ["c"])
        #expect(plan.ready(after: ["a", "b", "c", "e"]) == ["d"])
        #expect(plan.ready(after: ["a", "b", "c", "d", "e"]) == [])
    }
}
