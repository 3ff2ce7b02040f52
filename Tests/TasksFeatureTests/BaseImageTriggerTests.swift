import Access
import Foundation
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore
import SQLiteStore
import Testing
@testable import TasksFeature

private typealias Node = BaseImageTriggerGraph.Node

/// The trigger graph of base images, pure: self-loops, cycles of any length, and which tasks a
/// moved tag queues (each level of a chain once).
@Suite struct BaseImageTriggerGraphTests {
    @Test func aTaskWhoseOutputIsItsOwnBaseIsASelfLoop() {
        let graph = BaseImageTriggerGraph([Node(task: "a", outputs: ["app:1"], triggers: ["app:1", "base:1"])])
        #expect(graph.selfLoop("a") == "app:1")
        #expect(graph.cycle(through: "a") == nil)
        #expect(graph.triggered(by: "app:1", pushedBy: "a") == [])
        let fine = BaseImageTriggerGraph([Node(task: "a", outputs: ["app:1"], triggers: ["app:2"])])
        #expect(fine.selfLoop("a") == nil)
    }

    @Test func cyclesOfAnyLengthAreFoundWithTheirPath() {
        let two = BaseImageTriggerGraph([Node(task: "a", outputs: ["a:1"], triggers: ["b:1"]),
                                         Node(task: "b", outputs: ["b:1"], triggers: ["a:1"])])
        #expect(two.cycle(through: "a") == ["a", "b", "a"])
        let three = BaseImageTriggerGraph([Node(task: "a", outputs: ["a:1"], triggers: ["c:1"]),
                                           Node(task: "b", outputs: ["b:1"], triggers: ["a:1"]),
                                           Node(task: "c", outputs: ["c:1"], triggers: ["b:1"]),
                                           Node(task: "d", outputs: ["d:1"], triggers: ["a:1"])])
        #expect(three.cycle(through: "a") == ["a", "b", "c", "a"])
        #expect(three.cycle(through: "d") == nil)
        // Tasks on a cycle are never queued; the one hanging off it is.
        #expect(three.triggered(by: "a:1") == ["d"])
        let chain = BaseImageTriggerGraph([Node(task: "mid", outputs: ["mid:1"], triggers: ["base:1"]),
                                           Node(task: "app", outputs: ["app:1"], triggers: ["mid:1"])])
        #expect(chain.cycle(through: "mid") == nil && chain.cycle(through: "app") == nil)
    }

    @Test func aMovedBaseQueuesEachLevelOfAChainOnceFromBelow() {
        // app names base too (build-time): base's push queues mid only; mid's push queues app.
        let graph = BaseImageTriggerGraph([Node(task: "mid", outputs: ["mid:1"], triggers: ["base:1"]),
                                           Node(task: "app", outputs: ["app:1"], triggers: ["mid:1", "base:1"]),
                                           Node(task: "other", outputs: ["other:1"], triggers: ["base:1"])])
        #expect(graph.triggered(by: "base:1") == ["mid", "other"])
        #expect(graph.triggered(by: "mid:1", pushedBy: "mid") == ["app"])
        #expect(graph.triggered(by: "app:1", pushedBy: "app") == [])
        #expect(graph.downstream(of: "mid") == ["app"])
    }

    @Test func runtimeTriggersOnlyOnTheRuntimeBaseAndAllOnBuildTimeBasesToo() {
        var task = TaskRecord(name: "t", taskFile: "", context: "https://git.example.com/x.git#main", schedule: nil, values: [:],
                              timeoutSeconds: 60, repositories: [], createdBy: "o", createdAt: Date(), updatedAt: Date(),
                              baseImageTrigger: "Runtime",
                              bases: [TaskBaseRecord(reference: "run:1", runtime: true), TaskBaseRecord(reference: "tool:1", runtime: false)])
        task.outputs = ["t:1"]
        #expect(Node(task).triggers == ["run:1"])
        task.baseImageTrigger = "All"
        #expect(Node(task).triggers == ["run:1", "tool:1"])
        task.baseImageTrigger = nil
        #expect(Node(task).triggers.isEmpty)
        task.baseImageTrigger = "All"
        task.enabled = false
        #expect(Node(task).triggers.isEmpty)
        #expect(BaseImageTriggerType(parsing: "runtime") == .runtime && BaseImageTriggerType(parsing: "ALL") == .all)
        #expect(BaseImageTriggerType(parsing: "Sometimes") == nil)
    }
}

/// Coalescing with a fake clock: the first trigger queues at once, the rest of a window at most
/// one more run at its end; a queued run or a run built from that digest absorbs a trigger.
@Suite struct BaseTriggerCoalescingTests {
    let t0 = Date(timeIntervalSince1970: 1_000_000)
    let rule = BaseTriggerCoalescing(window: 5)

    @Test func theFirstTriggerQueuesAtOnceAndLaterOnesInTheWindowAreDeferredToItsEnd() {
        #expect(rule.decide(now: t0, digest: "d1", lastTriggeredAt: nil, dueAt: nil, hasQueuedRun: false,
                            latestBuiltDigest: nil) == .queueNow)
        let later = t0.addingTimeInterval(1)
        #expect(rule.decide(now: later, digest: "d2", lastTriggeredAt: t0, dueAt: nil, hasQueuedRun: false,
                            latestBuiltDigest: "d1") == .deferred(until: t0.addingTimeInterval(5)))
        // Already deferred: the same end, not a new one.
        #expect(rule.decide(now: t0.addingTimeInterval(3), digest: "d3", lastTriggeredAt: t0, dueAt: t0.addingTimeInterval(5),
                            hasQueuedRun: false, latestBuiltDigest: "d1") == .deferred(until: t0.addingTimeInterval(5)))
        // After the window: at once again.
        #expect(rule.decide(now: t0.addingTimeInterval(5), digest: "d4", lastTriggeredAt: t0, dueAt: nil, hasQueuedRun: false,
                            latestBuiltDigest: "d1") == .queueNow)
    }

    @Test func aQueuedRunOrARunBuiltFromThatDigestAbsorbsTheTrigger() {
        #expect(rule.decide(now: t0, digest: "d2", lastTriggeredAt: t0, dueAt: nil, hasQueuedRun: true,
                            latestBuiltDigest: "d1") == .merged)
        #expect(rule.decide(now: t0.addingTimeInterval(60), digest: "d2", lastTriggeredAt: t0, dueAt: nil, hasQueuedRun: false,
                            latestBuiltDigest: "d2") == .alreadyBuilt)
    }
}

private var quiet: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

/// The service side on a real store: declared bases read from a checkout, loops refused with
/// their message, and five moves of a base in one window queue each dependent once, then one
/// coalesced run at the window's end.
@Suite struct BaseImageTriggerServiceTests {
    static let registry = "berth.test:5000"

    func service(window: TimeInterval = 5) throws -> (TaskService, SQLiteMetadataStore, String) {
        let dir = NSTemporaryDirectory() + "berth-trig-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: Self.registry, serviceName: "s",
                                               transport: .plainHTTP, outbound: OutboundPolicy())
        configuration.baseTriggerWindow = window
        return (TaskService(store: store, configuration: configuration, logger: quiet), store, dir)
    }

    static func file(output: String) -> String {
        """
        version: v1.1.0
        steps:
          - build: -t $Registry/\(output) --build-arg REG=$Registry .
          - push: [$Registry/\(output)]
        """
    }

    func record(_ name: String, output: String, bases: [TaskBaseRecord], type: String? = "All") -> TaskRecord {
        var r = TaskRecord(name: name, taskFile: Self.file(output: output), context: "https://git.example.com/\(name).git#main",
                           schedule: nil, values: [:], timeoutSeconds: 600, repositories: [], createdBy: "o",
                           createdAt: Date(), updatedAt: Date(), baseImageTrigger: type, bases: bases)
        r.outputs = [output]
        return r
    }

    @Test func basesAreReadFromTheDockerfileOfEachBuildStep() throws {
        let (tasks, _, dir) = try service()
        let source = dir + "/src"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try """
            ARG REG
            FROM ${REG}/tools:1 AS tools
            FROM docker.io/library/alpine:3 AS elsewhere
            FROM ${REG}/base:1.0
            COPY --from=tools /x /x
            COPY --from=elsewhere /etc/alpine-release /r
            """.write(toFile: source + "/Dockerfile", atomically: true, encoding: .utf8)
        let file = try tasks.parse(record("app", output: "app:1", bases: []), runID: "cb0")
        let bases = try DeclaredBases.find(in: file, source: source, registry: Self.registry)
        #expect(bases == [TaskBaseRecord(reference: "base:1.0", runtime: true), TaskBaseRecord(reference: "tools:1", runtime: false)])
        // Bases in other registries are declared too, by their full reference (polled, not in the event log).
        let external = try DeclaredBases.declared(in: file, source: source, registry: Self.registry).external
        #expect(external == [TaskBaseRecord(reference: "docker.io/library/alpine:3", runtime: false)])
        #expect(DeclaredBases.externalReference(try ImageReference(parsing: "debian")) == "docker.io/debian:latest")
        #expect(DeclaredBases.outputs(of: file, registry: Self.registry) == ["app:1"])
        // A Dockerfile that leads out of the source is refused.
        try FileManager.default.removeItem(atPath: source + "/Dockerfile")
        try FileManager.default.createSymbolicLink(atPath: source + "/Dockerfile", withDestinationPath: "/etc/hostname")
        #expect(throws: TaskError.self) { _ = try DeclaredBases.find(in: file, source: source, registry: Self.registry) }
    }

    @Test func aSelfLoopAndACycleAreRefusedWithTheirMessage() async throws {
        let (tasks, store, _) = try service()
        let loop = record("loop", output: "app:1", bases: [TaskBaseRecord(reference: "app:1", runtime: true)])
        await #expect(throws: TaskError.invalid("task loop pushes app:1, which is its own base image: "
                                                + "its base-image trigger would rebuild it forever")) {
            try await tasks.checkTriggerGraph(loop, mayPull: { _ in true })
        }
        // Runtime does not count a build-time base: no loop then.
        var runtimeOnly = record("loop", output: "app:1", bases: [TaskBaseRecord(reference: "app:1", runtime: false)], type: "Runtime")
        try await tasks.checkTriggerGraph(runtimeOnly, mayPull: { _ in true })
        runtimeOnly.baseImageTrigger = nil
        try await tasks.checkTriggerGraph(runtimeOnly, mayPull: { _ in true })

        #expect(try await store.createTask(record("a", output: "a:1", bases: [TaskBaseRecord(reference: "c:1", runtime: true)])))
        #expect(try await store.createTask(record("b", output: "b:1", bases: [TaskBaseRecord(reference: "a:1", runtime: true)])))
        let closing = record("c", output: "c:1", bases: [TaskBaseRecord(reference: "b:1", runtime: true)])
        await #expect(throws: TaskError.invalid("a cycle of base-image triggers: c → a → b → c (each pushes a base of the next)")) {
            try await tasks.checkTriggerGraph(closing, mayPull: { _ in true })
        }
        // A base the caller may not pull is refused too.
        let fine = record("d", output: "d:1", bases: [TaskBaseRecord(reference: "secret/base:1", runtime: true)])
        await #expect(throws: TaskError.forbidden("you may not pull secret/base, which the task's Dockerfile builds on")) {
            try await tasks.checkTriggerGraph(fine, mayPull: { $0 != "secret/base" })
        }
    }

    @Test func fiveMovesOfABaseInOneWindowQueueEachDependentOnceThenOneAtTheWindowsEnd() async throws {
        let (tasks, store, _) = try service(window: 5)
        #expect(try await store.createTask(record("mid", output: "mid:1", bases: [TaskBaseRecord(reference: "base:1.0", runtime: true)])))
        let t0 = Date()
        // Five pushes while mid's first run is still queued: one run.
        for n in 0..<5 {
            try await tasks.baseImageMoved("mid", reference: "base:1.0", digest: "sha256:d\(n)", now: t0.addingTimeInterval(Double(n) * 0.1))
        }
        var runs = try await store.taskRuns(task: "mid", limit: 10)
        #expect(runs.map(\.trigger) == ["base-image"])
        // It starts and resolves the base to the fourth digest; the fifth move is newer: one more
        // run, at the window's end, however many moves come meanwhile.
        var started = try #require(try await store.startNextTaskRun(node: "n"))
        started.baseImages = [TaskRunImageRecord(reference: Self.registry + "/base:1.0", digest: "sha256:d3", runtime: true)]
        #expect(try await store.updateTaskRun(started, expected: .running))
        try await tasks.baseImageMoved("mid", reference: "base:1.0", digest: "sha256:d3", now: t0.addingTimeInterval(1))
        try await tasks.baseImageMoved("mid", reference: "base:1.0", digest: "sha256:d4", now: t0.addingTimeInterval(1.1))
        try await tasks.baseImageMoved("mid", reference: "base:1.0", digest: "sha256:d4", now: t0.addingTimeInterval(1.2))
        #expect(try await store.taskRuns(task: "mid", limit: 10).count == 1)
        #expect(try await store.task(named: "mid")?.baseTriggerDueAt == t0.addingTimeInterval(5))
        await tasks.fireDeferredBaseTriggers(now: t0.addingTimeInterval(4.9))
        #expect(try await store.taskRuns(task: "mid", limit: 10).count == 1)
        await tasks.fireDeferredBaseTriggers(now: t0.addingTimeInterval(5))
        runs = try await store.taskRuns(task: "mid", limit: 10)
        #expect(runs.map(\.status) == [.queued, .running])
        #expect(try await store.task(named: "mid")?.baseTriggerDueAt == nil)
        await tasks.fireDeferredBaseTriggers(now: t0.addingTimeInterval(6))
        #expect(try await store.taskRuns(task: "mid", limit: 10).count == 2)
    }

    @Test func theConsumerQueuesTheLowestLevelAndNeverThePushingTask() async throws {
        let (tasks, store, _) = try service()
        #expect(try await store.createTask(record("mid", output: "mid:1", bases: [TaskBaseRecord(reference: "base:1.0", runtime: true)])))
        #expect(try await store.createTask(record("app", output: "app:1", bases: [
            TaskBaseRecord(reference: "mid:1", runtime: true), TaskBaseRecord(reference: "base:1.0", runtime: false)])))
        let consumer = BaseImageTriggerConsumer(tasks: tasks)
        func push(_ repository: String, _ tag: String, actor: String) -> Event {
            Event(sequence: 1, timestamp: Date(), action: .manifestPush, repository: repository, digest: "sha256:" + repository,
                  tag: tag, mediaType: nil, size: nil, detail: nil, actor: actor, address: nil, requestID: nil, requestHost: nil,
                  requestMethod: nil, userAgent: nil)
        }
        try await consumer.handle([push("base", "1.0", actor: "identity:owner")])
        #expect(try await store.taskRuns(task: "mid", limit: 10).count == 1)
        #expect(try await store.taskRuns(task: "app", limit: 10).isEmpty)
        try await consumer.handle([push("mid", "1", actor: "token:run:mid/cb1")])
        #expect(try await store.taskRuns(task: "app", limit: 10).map(\.trigger) == ["base-image"])
        // The top level's push queues nothing more.
        try await consumer.handle([push("app", "1", actor: "token:run:app/cb2")])
        #expect(try await store.taskRuns(task: "app", limit: 10).count == 1)
        #expect(BaseImageTriggerConsumer.pushingTask("token:run:mid/cb1") == "mid")
        #expect(BaseImageTriggerConsumer.pushingTask("identity:owner") == nil)
    }

    /// A base pushed before its dependent task existed queues nothing when the consumer reads the
    /// push only after the task's creation (the task's first run resolves the base itself); a push
    /// after the creation queues a run. The event log's order decides, whatever the clocks say.
    @Test func aMoveMadeBeforeTheTaskExistedQueuesNothing() async throws {
        let (tasks, store, _) = try service()
        // Two events in the log before the task is made.
        for n in 0..<2 {
            try await store.appendScanEvent(repository: "other", digest: Digest.compute(Array("\(n)".utf8)), tag: nil, detail: "x")
        }
        // Creating a task records the log's last sequence number.
        let plain = TaskRecord(name: "plain", taskFile: "version: v1.1.0\nsteps:\n  - cmd: \(Self.registry)/tools:1 echo hi\n",
                               context: nil, schedule: nil, values: [:], timeoutSeconds: 600, repositories: [], createdBy: "o",
                               createdAt: Date(), updatedAt: Date())
        let made = try await tasks.create(plain, mayPush: { _ in true }, mayPull: { _ in true })
        let before = try #require(made.createdAfterEvent)
        #expect(before == (try await store.latestEventSequence()) && before > 0)
        #expect(try await store.task(named: "plain")?.createdAfterEvent == before)
        // A task with a base-image trigger made then (its context is not cloned here).
        var mid = record("mid", output: "mid:1", bases: [TaskBaseRecord(reference: "base:1.0", runtime: true)])
        mid.createdAfterEvent = before
        #expect(try await store.createTask(mid))
        let consumer = BaseImageTriggerConsumer(tasks: tasks)
        func push(_ sequence: Int64, at time: Date) -> Event {
            Event(sequence: sequence, timestamp: time, action: .manifestPush, repository: "base", digest: "sha256:\(sequence)",
                  tag: "1.0", mediaType: nil, size: nil, detail: nil, actor: "identity:owner", address: nil, requestID: nil,
                  requestHost: nil, requestMethod: nil, userAgent: nil)
        }
        // Made before (its clock even says later): nothing.
        try await consumer.handle([push(before, at: Date().addingTimeInterval(60))])
        #expect(try await store.taskRuns(task: "mid", limit: 10).isEmpty)
        // Made after (its clock even says earlier): a run.
        try await consumer.handle([push(before + 1, at: Date().addingTimeInterval(-60))])
        #expect(try await store.taskRuns(task: "mid", limit: 10).map(\.trigger) == ["base-image"])
    }

    /// Bases in other registries, polled: the first look records the digest, an unchanged one
    /// does nothing, a new one queues each task that watches it once (Runtime: the runtime base
    /// only; a disabled task never), the registry is asked once per base per pass whatever the
    /// number of tasks, and a registry that cannot be asked changes nothing.
    @Test func aBaseInAnotherRegistryIsRecordedFirstThenANewDigestQueuesEachWatchingTaskOnce() async throws {
        let answers = NIOLockedValueBox<(digest: String?, asked: Int)>(("sha256:d1", 0))
        let dir = NSTemporaryDirectory() + "berth-ext-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: Self.registry, serviceName: "s",
                                               transport: .plainHTTP, outbound: OutboundPolicy())
        configuration.resolveExternalBase = { reference in
            #expect(reference == "ext.example:5000/base:1")
            let digest = answers.withLockedValue { state -> String? in
                state.asked += 1
                return state.digest
            }
            guard let digest else { throw TaskError.invalid("the registry is down") }
            return digest
        }
        let tasks = TaskService(store: store, configuration: configuration, logger: quiet)
        let base = "ext.example:5000/base:1"
        func watching(_ name: String, runtime: Bool, type: String, enabled: Bool = true) -> TaskRecord {
            var r = record(name, output: name + ":1", bases: [], type: type)
            r.externalBases = [TaskBaseRecord(reference: base, runtime: runtime)]
            r.enabled = enabled
            return r
        }
        #expect(try await store.createTask(watching("a", runtime: true, type: "Runtime")))
        #expect(try await store.createTask(watching("b", runtime: false, type: "All")))
        #expect(try await store.createTask(watching("c", runtime: false, type: "Runtime")))   // a build-time base: not watched
        #expect(try await store.createTask(watching("d", runtime: true, type: "Runtime", enabled: false)))
        let poller = ExternalBasePollService(tasks: tasks)
        func runs(_ name: String) async throws -> [String] { try await store.taskRuns(task: name, limit: 10).map(\.trigger) }

        // First look: recorded, nothing queued; the registry asked once for the two watchers.
        #expect(await poller.pollAll(now: Date()).isEmpty)
        #expect(answers.withLockedValue { $0.asked } == 1)
        #expect(try await store.task(named: "a")?.externalBaseDigests == [base: "sha256:d1"])
        #expect(try await store.task(named: "b")?.externalBaseDigests == [base: "sha256:d1"])
        #expect(try await store.task(named: "c")?.externalBaseDigests == nil)
        // Unchanged: nothing.
        #expect(await poller.pollAll(now: Date()).isEmpty)
        // Down: nothing changes.
        answers.withLockedValue { $0.digest = nil }
        #expect(await poller.pollAll(now: Date()).isEmpty)
        #expect(try await store.task(named: "a")?.externalBaseDigests == [base: "sha256:d1"])
        // Moved: a and b queued once each, c and d never; the show view names the new digest.
        answers.withLockedValue { $0.digest = "sha256:d2" }
        #expect(await poller.pollAll(now: Date()).sorted() == ["a", "b"])
        #expect(try await runs("a") == ["base-image"])
        #expect(try await runs("b") == ["base-image"])
        #expect(try await runs("c").isEmpty)
        #expect(try await runs("d").isEmpty)
        #expect(try await store.task(named: "a")?.externalBaseDigests == [base: "sha256:d2"])
        // Polled again at the same digest: no second run.
        #expect(await poller.pollAll(now: Date()).isEmpty)
        #expect(try await runs("a").count == 1)
        #expect(answers.withLockedValue { $0.asked } == 5)
        // Plain HTTP only for registries the operator named (a name without port: every port).
        #expect(ExternalBasePollService.insecure("lab.example:5000", ["lab.example:5000"]))
        #expect(ExternalBasePollService.insecure("127.0.0.1:41234", ["127.0.0.1"]))
        #expect(!ExternalBasePollService.insecure("lab.example:5000", ["lab.example:5001"]))
        #expect(!ExternalBasePollService.insecure("evil-lab.example", ["lab.example"]))
        #expect(!ExternalBasePollService.insecure("[::1]", ["::1"]))
    }
}
