import Foundation
import RegistryStore
import Testing

func taskRecord(_ name: String, repositories: [String] = ["app"]) -> TaskRecord {
    TaskRecord(name: name, taskFile: "version: v1.1.0\nsteps:\n  - build: -t $Registry/app:$ID .\n", context: nil,
               schedule: nil, values: ["k": "v"], timeoutSeconds: 600, repositories: repositories, createdBy: "admin",
               createdAt: Date(timeIntervalSince1970: 1_700_000_000), updatedAt: Date(timeIntervalSince1970: 1_700_000_000))
}

extension MetadataStoreConformance {
    static let taskCases: [Case] = [
        Case("appendTaskRunLog/taskRunLog: appended only at the log's length, read from any offset across chunks, gone with the run") { s in
            _ = try await s.createTask(taskRecord("logs"))
            let run = try #require(try await s.queueTaskRun(task: "logs", trigger: "manual", uploadedContext: nil))
            let none = try await s.taskRunLog(id: run.id, offset: 0, limit: 100)
            #expect(none == nil)
            let first = try await s.appendTaskRunLog(id: run.id, offset: 0, bytes: Array("hello ".utf8))
            let retried = try await s.appendTaskRunLog(id: run.id, offset: 0, bytes: Array("hello ".utf8))   // a retry: not twice
            let gap = try await s.appendTaskRunLog(id: run.id, offset: 99, bytes: Array("x".utf8))
            let second = try await s.appendTaskRunLog(id: run.id, offset: 6, bytes: Array("world\n".utf8))
            let unknown = try await s.appendTaskRunLog(id: "cb999", offset: 0, bytes: Array("x".utf8))
            #expect(first && !retried && !gap && second && !unknown)
            let whole = try await s.taskRunLog(id: run.id, offset: 0, limit: 100)
            let across = try await s.taskRunLog(id: run.id, offset: 4, limit: 4)
            let tail = try await s.taskRunLog(id: run.id, offset: 12, limit: 100)
            let past = try await s.taskRunLog(id: run.id, offset: 500, limit: 100)
            #expect(whole.map { String(decoding: $0, as: UTF8.self) } == "hello world\n")
            #expect(across.map { String(decoding: $0, as: UTF8.self) } == "o wo")
            #expect(tail == [] && past == [])
            let binary: [UInt8] = [0, 255, 10, 13]
            let appended = try await s.appendTaskRunLog(id: run.id, offset: 12, bytes: binary)
            let read = try await s.taskRunLog(id: run.id, offset: 12, limit: 10)
            #expect(appended && read == binary)
            _ = try await s.deleteTask(named: "logs")
            let gone = try await s.taskRunLog(id: run.id, offset: 0, limit: 100)
            #expect(gone == nil)
        },
        Case("createTask(markEventLog:): the stored task names the log's last event, in order with concurrent appends") { s in
            let empty = try await s.createTask(taskRecord("first"), markEventLog: true)
            #expect(empty?.createdAfterEvent == 0)
            try await link(s, "r", "a", "b")
            let marked = try #require(try await s.createTask(taskRecord("marked"), markEventLog: true))
            let last = try await s.latestEventSequence()
            #expect(marked.createdAfterEvent == last && last > 0)
            await #expect(try s.task(named: "marked") == marked)
            // unmarked, the record is kept as given; a taken name is nil and changes nothing
            var given = taskRecord("given")
            given.createdAfterEvent = 7
            await #expect(try s.createTask(given, markEventLog: false)?.createdAfterEvent == 7)
            await #expect(try s.createTask(taskRecord("marked"), markEventLog: true) == nil)
            await #expect(try s.task(named: "marked") == marked)
            // with appends racing: an event that was committed before a task became visible is at
            // or before the task's mark (a mark read outside the inserting transaction can be lower)
            let outcomes = try await withThrowingTaskGroup(of: (Int64, Set<String>)?.self) { group in
                for n in 0..<8 {
                    group.addTask {
                        try await link(s, "r\(n)", "blob-\(n)")
                        let committed = try await s.latestEventSequence()
                        return (committed, Set(try await s.tasks().map(\.name)))
                    }
                    group.addTask {
                        _ = try await s.createTask(taskRecord("race-\(n)"), markEventLog: true)
                        return nil
                    }
                }
                var all: [(Int64, Set<String>)] = []
                for try await o in group { if let o { all.append(o) } }
                return all
            }
            let marks = Dictionary(uniqueKeysWithValues: try await s.tasks().map { ($0.name, $0.createdAfterEvent ?? -1) })
            for (committed, visible) in outcomes {
                for (name, mark) in marks where name.hasPrefix("race-") && !visible.contains(name) {
                    #expect(mark >= committed, "task \(name) marked \(mark), stored after event \(committed) was committed")
                }
            }
        },
        Case("createTask/task/tasks/updateTask/deleteTask: kept as given, a taken name refused, runs deleted with the task") { s in
            let created = try await s.createTask(taskRecord("b"))
            var other = taskRecord("b", repositories: ["x"])
            other.context = "https://example.com/r.git#main"
            let again = try await s.createTask(other)
            _ = try await s.createTask(taskRecord("a"))
            #expect(created && !again)
            let stored = try await s.task(named: "b")
            #expect(stored == taskRecord("b"))
            let names = try await s.tasks().map(\.name)
            #expect(names == ["a", "b"])
            var changed = taskRecord("b", repositories: ["y", "z"])
            changed.schedule = "0 2 * * *"
            changed.lastScheduledAt = Date(timeIntervalSince1970: 1_700_000_100)
            let updated = try await s.updateTask(changed)
            let updatedMissing = try await s.updateTask(taskRecord("none"))
            #expect(updated && !updatedMissing)
            let reread = try await s.task(named: "b")
            #expect(reread == changed)
            _ = try await s.queueTaskRun(task: "b", trigger: "manual", uploadedContext: nil)
            let deleted = try await s.deleteTask(named: "b")
            let deletedAgain = try await s.deleteTask(named: "b")
            #expect(deleted && !deletedAgain)
            let gone = try await s.task(named: "b")
            let runs = try await s.taskRuns(task: "b", limit: 10)
            #expect(gone == nil && runs.isEmpty)
        },
        Case("queueTaskRun: ids cb1, cb2, ... from one sequence across tasks, never reused; each with its queued event") { s in
            _ = try await s.createTask(taskRecord("a"))
            _ = try await s.createTask(taskRecord("b"))
            let before = try await s.latestEventSequence()
            let r1 = try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: "/x/ctx.tar")
            let r2 = try await s.queueTaskRun(task: "b", trigger: "schedule", uploadedContext: nil)
            let unknown = try await s.queueTaskRun(task: "none", trigger: "manual", uploadedContext: nil)
            #expect(r1?.id == "cb1" && r2?.id == "cb2" && unknown == nil)
            #expect(r1?.status == .queued && r1?.trigger == "manual" && r1?.uploadedContext == "/x/ctx.tar")
            _ = try await s.deleteTask(named: "b")
            let r3 = try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: nil)
            #expect(r3?.id == "cb3")
            let events = try await s.events(after: before, limit: 10)
            let queued = events.filter { $0.action == .taskRunQueued }.map(\.detail)
            #expect(queued == ["a/cb1", "b/cb2", "a/cb3"])
            #expect(events.allSatisfy { $0.repository == "" })
            let stored = try await s.taskRun(id: "cb1")
            #expect(stored == r1)
            // The run keeps the task as it was when queued; a later change of the task does not move it.
            #expect(r1?.taskAtQueue == taskRecord("a"))
            var changed = taskRecord("a")
            changed.taskFile = "version: v1.1.0\nsteps:\n  - build: -t $Registry/other:$ID .\n"
            _ = try await s.updateTask(changed)
            let kept = try await s.taskRun(id: "cb1")
            #expect(kept?.taskAtQueue == taskRecord("a"))
            let all = try await s.taskRuns(task: nil, limit: 10).map(\.id)
            let ofA = try await s.taskRuns(task: "a", limit: 1).map(\.id)
            #expect(all == ["cb3", "cb1"] && ofA == ["cb3"])
        },
        Case("queueTaskRun(ifDefinition:): queued while the task holds that definition; else refused, nothing queued") { s in
            _ = try await s.createTask(taskRecord("a"))
            let saved = taskRecord("a").definitionDigest
            let first = try await s.queueTaskRun(task: "a", trigger: "upload", uploadedContext: nil, ifDefinition: saved)
            #expect(first?.id == "cb1")
            // the triggers' bookkeeping is not the definition
            var triggered = taskRecord("a")
            triggered.lastScheduledAt = Date(timeIntervalSince1970: 1_800_000_000)
            triggered.externalBaseDigests = ["docker.io/library/x:1": "sha256:" + String(repeating: "a", count: 64)]
            #expect(triggered.definitionDigest == saved)
            _ = try await s.updateTask(triggered)
            #expect(try await s.queueTaskRun(task: "a", trigger: "upload", uploadedContext: nil, ifDefinition: saved)?.id == "cb2")
            // another caller saved another file: refused in the queueing transaction
            var other = triggered
            other.taskFile = "version: v1.1.0\nsteps:\n  - build: -t $Registry/other:$ID .\n"
            #expect(other.definitionDigest != saved)
            _ = try await s.updateTask(other)
            var values = triggered
            values.values = ["x": "2"]
            #expect(values.definitionDigest != saved)
            let before = try await s.latestEventSequence()
            await #expect(throws: TaskDefinitionChanged(task: "a")) {
                try await s.queueTaskRun(task: "a", trigger: "upload", uploadedContext: nil, ifDefinition: saved)
            }
            #expect(try await s.latestEventSequence() == before)
            #expect(try await s.taskRuns(task: "a", limit: 10).map(\.id) == ["cb2", "cb1"])
            // an unknown task is still nil; without a definition, any
            #expect(try await s.queueTaskRun(task: "none", trigger: "upload", uploadedContext: nil, ifDefinition: saved) == nil)
            #expect(try await s.queueTaskRun(task: "a", trigger: "upload", uploadedContext: nil, ifDefinition: nil)?.id == "cb3")
        },
        Case("startNextTaskRun: oldest queued first, one run of a task at a time, others' runs meanwhile") { s in
            _ = try await s.createTask(taskRecord("a"))
            _ = try await s.createTask(taskRecord("b"))
            _ = try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: nil)   // cb1
            _ = try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: nil)   // cb2
            _ = try await s.queueTaskRun(task: "b", trigger: "manual", uploadedContext: nil)   // cb3
            let first = try await s.startNextTaskRun(node: "n1")
            #expect(first?.id == "cb1" && first?.status == .running && first?.node == "n1" && first?.startedAt != nil)
            let second = try await s.startNextTaskRun(node: "n1")
            #expect(second?.id == "cb3")
            let none = try await s.startNextTaskRun(node: "n2")
            #expect(none == nil)
            var done = try #require(first)
            done.status = .succeeded
            done.finishedAt = Date()
            done.pushed = [TaskRunImageRecord(reference: "r/app:cb1", digest: "sha256:" + String(repeating: "a", count: 64))]
            done.steps = [TaskRunStepRecord(id: "build", status: "succeeded", attempts: ["exit code 0"], exitCode: 0,
                                            reason: nil, startedAt: Date(), finishedAt: Date())]
            let finished = try await s.updateTaskRun(done, expected: .running)
            let stale = try await s.updateTaskRun(done, expected: .running)
            #expect(finished && !stale)
            let reread = try await s.taskRun(id: "cb1")
            #expect(reread == done)
            let third = try await s.startNextTaskRun(node: "n1")
            #expect(third?.id == "cb2")
            let running = try await s.runningTaskRuns().map(\.id)
            #expect(running == ["cb2", "cb3"])
        },
        Case("startNextTaskRun: of many nodes asking at once, a queued run starts once") { s in
            _ = try await s.createTask(taskRecord("a"))
            _ = try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: nil)
            _ = try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: nil)
            let started = try await withThrowingTaskGroup(of: String?.self) { group in
                for i in 0..<6 { group.addTask { try await s.startNextTaskRun(node: "n\(i)")?.id } }
                var ids: [String] = []
                for try await id in group { if let id { ids.append(id) } }
                return ids
            }
            #expect(started == ["cb1"])
        },
        Case("updateTaskRun: a status change appends its event; the same status appends none") { s in
            _ = try await s.createTask(taskRecord("a"))
            var run = try #require(try await s.queueTaskRun(task: "a", trigger: "manual", uploadedContext: nil))
            let before = try await s.latestEventSequence()
            run.cancelRequested = true
            let same = try await s.updateTaskRun(run, expected: .queued)
            run.status = .cancelled
            run.reason = "cancelled"
            let cancelled = try await s.updateTaskRun(run, expected: .queued)
            #expect(same && cancelled)
            let events = try await s.events(after: before, limit: 10).map(\.action)
            #expect(events == [.taskRunCancelled])
            let none = try await s.startNextTaskRun(node: "n")
            #expect(none == nil)
        },
    ]
}
