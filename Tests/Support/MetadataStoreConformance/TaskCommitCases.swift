import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let taskCommitCases: [Case] = [
        Case("advanceTaskCommit: compare-and-swap on the stored commit; a trigger queues one run with the commit, in one step") { s in
            let (c1, c2) = (String(repeating: "a", count: 40), String(repeating: "b", count: 40))
            _ = try await s.createTask(taskRecord("a"))
            let none = try await s.taskCommit(task: "a")
            #expect(none == nil)
            let before = try await s.latestEventSequence()
            // The first sight is recorded without a run.
            let baseline = try await s.advanceTaskCommit(task: "a", branch: "main", expected: nil, commit: c1, trigger: nil)
            #expect(baseline?.state.commit == c1 && baseline?.state.branch == "main" && baseline?.run == nil)
            // A writer that read no commit (or another one) loses, and nothing is queued.
            let stale = try await s.advanceTaskCommit(task: "a", branch: "main", expected: nil, commit: c2, trigger: "commit")
            let wrong = try await s.advanceTaskCommit(task: "a", branch: "main", expected: c2, commit: c2, trigger: "commit")
            #expect(stale == nil && wrong == nil)
            let moved = try await s.advanceTaskCommit(task: "a", branch: "main", expected: c1, commit: c2, trigger: "commit")
            let run = try #require(moved?.run)
            #expect(run.id == "cb1" && run.status == .queued && run.trigger == "commit" && run.commit == c2 && run.task == "a")
            let again = try await s.advanceTaskCommit(task: "a", branch: "main", expected: c1, commit: c2, trigger: "commit")
            #expect(again == nil)
            let stored = try await s.taskCommit(task: "a")
            #expect(stored?.commit == c2 && stored?.branch == "main")
            let reread = try await s.taskRun(id: "cb1")
            #expect(reread == run)
            let events = try await s.events(after: before, limit: 10)
            #expect(events.map(\.action) == [.taskRunQueued] && events.map(\.detail) == ["a/cb1"])
            // An unknown task, and a deleted one (its state goes with it).
            let unknown = try await s.advanceTaskCommit(task: "none", branch: "main", expected: nil, commit: c1, trigger: "commit")
            #expect(unknown == nil)
            _ = try await s.deleteTask(named: "a")
            let gone = try await s.taskCommit(task: "a")
            #expect(gone == nil)
            _ = try await s.createTask(taskRecord("a"))
            let fresh = try await s.taskCommit(task: "a")
            #expect(fresh == nil)
        },
    ]
}
