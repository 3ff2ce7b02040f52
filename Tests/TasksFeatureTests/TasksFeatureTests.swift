@testable import Access
import Backends
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import SQLiteStore
import Testing
import TaskRunner
@testable import TasksFeature

private func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "berth-tasks-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private var quiet: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

private func basic(_ user: String, _ password: String) -> HTTPFields {
    [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()]
}

private func pushBlob(_ client: any TestClientProtocol, _ repository: String, _ auth: HTTPFields) async throws -> HTTPResponse.Status {
    let bytes = Array("layer of \(repository)".utf8)
    var headers = auth
    headers[.contentLength] = String(bytes.count)
    return try await client.execute(uri: "/v2/\(repository)/blobs/uploads/?digest=\(Digest.compute(bytes).string)",
                                    method: .post, headers: headers, body: ByteBuffer(bytes: bytes)).status
}

/// A run's identity: push and pull on its task's repositories and nothing else, refused on the
/// management API, and dead after its deadline.
@Suite struct RunIdentityTests {
    @Test func aRunIdentityPushesToItsRepositoriesOnlyAndHasNothingOnTheManagementAPI() async throws {
        let dir = try temporaryDirectory()
        let registry = try Registry.embedded(dataDirectory: dir, logger: quiet)
        let access = try await AccessControl.open(store: registry.metadata as! any AccessStateStore & KeyMaterialStore,
                                                  keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: "owner-pw")
        let app = try await BerthServer.makeApplication(registry: registry, access: access, host: "127.0.0.1", port: 0,
                                                        serviceName: "berth-test", logger: quiet)
        let identity = RunIdentity(task: "ci", runID: "cb7", repositories: ["team/app"], deadline: Date().addingTimeInterval(600))
        let (user, password) = try await access.issueRunCredentials(identity, audience: "berth-test")
        #expect(user == AccessControl.runTokenUser)
        let expired = RunIdentity(task: "ci", runID: "cb8", repositories: ["team/app"], deadline: Date().addingTimeInterval(-1))
        let (_, expiredPassword) = try await access.issueRunCredentials(expired, audience: "berth-test")
        let (_, otherAudience) = try await access.issueRunCredentials(identity, audience: "elsewhere")
        try await app.test(.router) { client in
            let run = basic(user, password)
            // Basic credentials: its repository yes, any other no.
            #expect(try await pushBlob(client, "team/app", run) == .created)
            #expect(try await pushBlob(client, "team/other", run) == .forbidden)
            #expect(try await pushBlob(client, "app", run) == .forbidden)
            // Nothing registry-wide: the management API and the catalog refuse it.
            #expect(try await client.execute(uri: "/api/v1/identities", method: .get, headers: run).status == .forbidden)
            #expect(try await client.execute(uri: "/api/v1/registry", method: .patch, headers: run,
                                             body: ByteBuffer(string: "{}")).status == .forbidden)
            // Through the token endpoint: a token for its repository works there and only there;
            // asked for more, it is granted nothing more.
            let answer = try await client.execute(uri: "/oauth2/token?service=berth-test&scope=repository:team/app:pull,push"
                                                  + "&scope=repository:team/other:push&scope=registry:catalog:*",
                                                  method: .get, headers: run)
            #expect(answer.status == .ok)
            struct Token: Decodable { let token: String }
            let token = try JSONDecoder().decode(Token.self, from: Data(buffer: answer.body)).token
            let bearer: HTTPFields = [.authorization: "Bearer " + token]
            #expect(try await pushBlob(client, "team/app", bearer) == .created)
            #expect(try await pushBlob(client, "team/other", bearer) != .created)
            // The catalog shows it only what it may read.
            #expect(try await pushBlob(client, "team/other", basic("owner", "owner-pw")) == .created)
            let catalog = try await client.execute(uri: "/v2/_catalog", method: .get, headers: bearer)
            struct Catalog: Decodable { let repositories: [String] }
            let listed = (try? JSONDecoder().decode(Catalog.self, from: Data(buffer: catalog.body)))?.repositories ?? []
            #expect(!listed.contains("team/other"), "\(listed)")
            #expect(try await client.execute(uri: "/api/v1/identities", method: .get, headers: bearer).status != .ok)
            // After its deadline, or for another audience, it is no credential at all.
            #expect(try await pushBlob(client, "team/app", basic(user, expiredPassword)) == .unauthorized)
            #expect(try await pushBlob(client, "team/app", basic(user, otherAudience)) == .unauthorized)
            #expect(try await pushBlob(client, "team/app", basic(user, password + "x")) == .unauthorized)
        }
    }

    /// Review: a run with `berth` steps keeps its base images' pull rights, and may delete only in
    /// its scope, not in every repository its file pushes to.
    @Test func aRunIdentityWithCommandsKeepsItsPullsAndDeletesOnlyInItsScope() async throws {
        let dir = try temporaryDirectory()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        let access = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        let identity = RunIdentity(task: "nightly", runID: "cb3", repositories: ["team/app", "team/build"], pullRepositories: ["base/os"],
                                   deadline: Date().addingTimeInterval(600), commands: true, deleteRepositories: ["team/app"])
        #expect(identity.commands && identity.deleteRepositories == ["team/app"] && identity.pullRepositories == ["base/os"])
        _ = try await access.issueRunCredentials(identity, audience: "s")   // round-trips
        let principal = try #require(identity.principal())
        func actions(_ repository: String) -> Action {
            principal.grants.filter { $0.pattern.matches(repository) }.reduce(Action()) { $0.union($1.actions) }
        }
        #expect(actions("team/app").isSuperset(of: Role.delete.actions))
        #expect(!actions("team/build").isSuperset(of: Role.delete.actions) && actions("team/build").isSuperset(of: Role.push.actions))
        #expect(actions("base/os") == Role.pull.actions)
        // a delete list naming a repository outside its repositories does not parse
        #expect(RunIdentity(subject: "run:nightly/cb3:1999999999:team/app::berth-commands=team/other") == nil)
    }

    @Test func aRunIdentityNeedsValidRepositories() async throws {
        let dir = try temporaryDirectory()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        let access = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        for repositories in [[], ["UPPER"], ["a,b"]] {
            await #expect(throws: AccessError.self) {
                _ = try await access.issueRunCredentials(RunIdentity(task: "t", runID: "cb1", repositories: repositories,
                                                                     deadline: Date().addingTimeInterval(60)), audience: "s")
            }
        }
    }
}

/// Tasks and runs through the service the API and the queue share (no run is executed here).
@Suite struct TaskServiceTests {
    static let registry = "berth.test:5000"
    static let file = """
        version: v1.1.0
        steps:
          - id: build
            build: -t $Registry/team/app:$ID .
          - id: push
            push: [$Registry/team/app:$ID]
        """

    func service() throws -> (TaskService, SQLiteMetadataStore) {
        let dir = try temporaryDirectory()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        let configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: Self.registry, serviceName: "s",
                                               transport: .plainHTTP, outbound: OutboundPolicy())
        return (TaskService(store: store, configuration: configuration, logger: quiet), store)
    }

    func task(_ name: String, file: String = TaskServiceTests.file, context: String? = "https://git.example.com/app.git#main",
              schedule: String? = nil) -> TaskRecord {
        TaskRecord(name: name, taskFile: file, context: context, schedule: schedule, values: [:], timeoutSeconds: 600,
                   repositories: [], createdBy: "identity:owner", createdAt: Date(), updatedAt: Date())
    }

    @Test func aTaskIsCheckedWhenSavedAndKeepsTheRepositoriesItPushesTo() async throws {
        let (tasks, _) = try service()
        let created = try await tasks.create(task("app"), mayPush: { _ in true })
        #expect(created.repositories == ["team/app"])
        // A bad file is refused with its line.
        let bad = "version: v1.1.0\nsteps:\n  - id: build\n    build: -t x .\n    colour: blue\n"
        do {
            _ = try await tasks.create(task("bad", file: bad), mayPush: { _ in true })
            Issue.record("a bad task file was saved")
        } catch TaskError.invalid(let message) {
            #expect(message.contains("line 5"), "\(message)")
        }
        // A push elsewhere, a repository the creator may not push to, a bad name, context or schedule.
        let elsewhere = "version: v1.1.0\nsteps:\n  - push: [docker.io/library/app:1]\n"
        await #expect(throws: TaskError.self) { _ = try await tasks.create(task("other", file: elsewhere), mayPush: { _ in true }) }
        await #expect(throws: TaskError.forbidden("you may not push to team/app, which the task's push steps name")) {
            _ = try await tasks.create(task("denied"), mayPush: { $0 != "team/app" })
        }
        await #expect(throws: TaskError.self) { _ = try await tasks.create(task("../x"), mayPush: { _ in true }) }
        await #expect(throws: TaskError.self) {
            _ = try await tasks.create(task("git", context: "file:///etc#main"), mayPush: { _ in true })
        }
        await #expect(throws: TaskError.self) {
            _ = try await tasks.create(task("git", context: "https://127.0.0.1/x.git#main"), mayPush: { _ in true })
        }
        await #expect(throws: TaskError.self) {
            _ = try await tasks.create(task("git", context: "https://git.example.com/x.git#--upload-pack=x"), mayPush: { _ in true })
        }
        await #expect(throws: TaskError.self) { _ = try await tasks.create(task("cron", schedule: "61 * * * *"), mayPush: { _ in true }) }
        await #expect(throws: TaskError.invalid("a schedule needs a git context (--context GIT_URL#BRANCH) for the task's build steps")) {
            _ = try await tasks.create(task("cron", context: nil, schedule: "0 2 * * *"), mayPush: { _ in true })
        }
        let nightly = try await tasks.create(task("nightly", schedule: "0 2 * * *"), mayPush: { _ in true })
        #expect(nightly.schedule == "0 2 * * *")
        await #expect(throws: TaskError.conflict("task app exists")) { _ = try await tasks.create(task("app"), mayPush: { _ in true }) }
    }

    @Test func runsOfATaskStartOneAtATimeInOrderAndCancelStopsThem() async throws {
        let (tasks, store) = try service()
        _ = try await tasks.create(task("a"), mayPush: { _ in true })
        _ = try await tasks.create(task("b"), mayPush: { _ in true })
        _ = try await tasks.create(task("local", context: nil), mayPush: { _ in true })
        await #expect(throws: TaskError.self) { _ = try await tasks.queue("local", trigger: "manual", uploadedContext: nil) }
        let a1 = try await tasks.queue("a", trigger: "manual", uploadedContext: nil)
        let a2 = try await tasks.queue("a", trigger: "manual", uploadedContext: nil)
        let b1 = try await tasks.queue("b", trigger: "manual", uploadedContext: nil)
        let a3 = try await tasks.queue("a", trigger: "manual", uploadedContext: nil)
        #expect([a1.id, a2.id, b1.id, a3.id] == ["cb1", "cb2", "cb3", "cb4"])
        // The queue starts a1, then b1 (a has a run going), then nothing until a1 ends.
        #expect(try await store.startNextTaskRun(node: "n")?.id == "cb1")
        #expect(try await store.startNextTaskRun(node: "n")?.id == "cb3")
        #expect(try await store.startNextTaskRun(node: "n") == nil)
        // Cancelling a queued run ends it at once; the queue passes it by.
        let cancelled = try await tasks.cancel("a", "cb2")
        #expect(cancelled.status == .cancelled)
        // Cancelling a running one asks the node running it to stop.
        let asked = try await tasks.cancel("a", "cb1")
        #expect(asked.status == .running && asked.cancelRequested)
        #expect(try await store.taskRun(id: "cb1")?.cancelRequested == true)
        var ended = try #require(try await store.taskRun(id: "cb1"))
        ended.status = .cancelled
        #expect(try await store.updateTaskRun(ended, expected: .running))
        await #expect(throws: TaskError.conflict("run cb1 has finished (cancelled)")) { _ = try await tasks.cancel("a", "cb1") }
        await #expect(throws: TaskError.notFound("run cb3 of task a")) { _ = try await tasks.cancel("a", "cb3") }
        #expect(try await store.startNextTaskRun(node: "n")?.id == "cb4")
        // Each change of status is in the event log.
        let events = try await store.events(after: 0, limit: 100).filter { $0.action.rawValue.hasPrefix("task.run.") }
        #expect(events.map { "\($0.action.rawValue) \($0.detail ?? "")" } == [
            "task.run.queued a/cb1", "task.run.queued a/cb2", "task.run.queued b/cb3", "task.run.queued a/cb4",
            "task.run.started a/cb1", "task.run.started b/cb3", "task.run.cancelled a/cb2", "task.run.cancelled a/cb1",
            "task.run.started a/cb4",
        ])
        // A task with a run going is not deleted.
        await #expect(throws: TaskError.self) { try await tasks.delete("a") }
    }

    /// Review leftovers: an older run still running blocks deleting its task (not only the newest
    /// run), and a context uploaded for a run that never starts (cancelled while queued, or its
    /// task deleted) is removed.
    @Test func uploadsOfRunsThatNeverStartAreRemovedAndAnOlderRunningRunBlocksDelete() async throws {
        let (tasks, store) = try service()
        _ = try await tasks.create(task("a"), mayPush: { _ in true })
        _ = try await tasks.create(task("b"), mayPush: { _ in true })
        try FileManager.default.createDirectory(atPath: tasks.uploadsDirectory, withIntermediateDirectories: true)
        func upload(_ name: String) -> String {
            let path = tasks.uploadsDirectory + "/" + name + ".tar"
            FileManager.default.createFile(atPath: path, contents: Data("tar".utf8))
            return path
        }
        let (u1, u2, u3) = (upload("one"), upload("two"), upload("three"))
        _ = try await tasks.queue("a", trigger: "upload", uploadedContext: u1)          // cb1
        _ = try await tasks.queue("a", trigger: "upload", uploadedContext: u2)          // cb2
        #expect(try await store.startNextTaskRun(node: "n")?.id == "cb1")
        // cb1 (older) runs, cb2 (newest) waits: the task is not deleted.
        await #expect(throws: TaskError.conflict("task a has a run in progress; cancel it first")) { try await tasks.delete("a") }
        _ = try await tasks.cancel("a", "cb2")
        #expect(!FileManager.default.fileExists(atPath: u2) && FileManager.default.fileExists(atPath: u1))
        // A deleted task's waiting runs take their uploads with them.
        _ = try await tasks.queue("b", trigger: "upload", uploadedContext: u3)          // cb3
        try await tasks.delete("b")
        #expect(!FileManager.default.fileExists(atPath: u3))
    }

    @Test func aTimerIsDueOncePerSlot() throws {
        let created = Date(timeIntervalSince1970: 1_800_000_030)   // 30 s past a minute
        var t = task("nightly", schedule: "*/5 * * * *")
        t.createdAt = created
        let slot = Date(timeIntervalSince1970: 1_800_000_300)        // the next multiple of 5 minutes
        #expect(!TaskQueueService.timerDue(t, now: slot.addingTimeInterval(-1)))
        #expect(TaskQueueService.timerDue(t, now: slot))
        t.lastScheduledAt = slot
        #expect(!TaskQueueService.timerDue(t, now: slot.addingTimeInterval(299)))
        #expect(TaskQueueService.timerDue(t, now: slot.addingTimeInterval(300)))
        t.enabled = false
        #expect(!TaskQueueService.timerDue(t, now: slot.addingTimeInterval(300)))
    }
}

/// A timer fires through the queue service's own tick (the service runs, its clock is the test's):
/// nothing before the slot, one run at the slot however many ticks pass, one more at the next slot.
@Suite struct TimerTickTests {
    @Test func aTimerFiresThroughTheQueuesTickOncePerSlot() async throws {
        let dir = try temporaryDirectory()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        let access = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        let created = Date(timeIntervalSince1970: 1_800_000_030)      // 30 s past a minute
        let slot = Date(timeIntervalSince1970: 1_800_000_300)         // the next multiple of 5 minutes
        let clock = NIOLockedValueBox(slot.addingTimeInterval(-1))
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: "berth.test:5000", serviceName: "s",
                                               transport: .plainHTTP, outbound: OutboundPolicy())
        configuration.tick = .milliseconds(20)
        configuration.maxConcurrentRuns = 0      // the runs stay queued: this test is about the timer
        configuration.now = { clock.withLockedValue { $0 } }
        #expect(try await store.createTask(TaskRecord(name: "nightly", taskFile: TaskServiceTests.file,
                                                      context: "https://git.example.com/app.git#main", schedule: "*/5 * * * *",
                                                      values: [:], timeoutSeconds: 600, repositories: [], createdBy: "identity:owner",
                                                      createdAt: created, updatedAt: created)))
        let tasks = TaskService(store: store, configuration: configuration, logger: quiet)
        let service = Task { try await TaskQueueService(tasks: tasks, access: access).run() }
        defer { service.cancel() }

        func runs() async throws -> [TaskRunRecord] { try await store.taskRuns(task: "nightly", limit: 10) }
        /// Waits (bounded, generously) until `count` runs exist, then lets the queue tick a while
        /// longer so a run too many would show.
        func waitForRuns(_ count: Int) async throws -> [TaskRunRecord] {
            for _ in 0..<600 where try await runs().count < count { try await Task.sleep(for: .milliseconds(50)) }
            return try await settled()
        }
        /// The runs after the queue has ticked a while (some 15 ticks).
        func settled() async throws -> [TaskRunRecord] {
            try await Task.sleep(for: .milliseconds(300))
            return try await runs()
        }

        #expect(try await settled().isEmpty)                           // a second before the slot
        clock.withLockedValue { $0 = slot }
        let first = try await waitForRuns(1)
        #expect(first.count == 1)
        #expect(first.first?.trigger == "schedule" && first.first?.status == .queued)
        #expect(try await store.task(named: "nightly")?.lastScheduledAt == slot)
        clock.withLockedValue { $0 = slot.addingTimeInterval(299) }     // later in the same slot
        #expect(try await settled().count == 1)
        clock.withLockedValue { $0 = slot.addingTimeInterval(300) }     // the next slot
        let second = try await waitForRuns(2)
        #expect(second.count == 2)
        #expect(second.allSatisfy { $0.trigger == "schedule" })
        service.cancel()
        _ = await service.result
    }
}

/// A run's log in the metadata store: lines appended in order as they are flushed, a retried
/// flush never doubles them, the stored log stops at its cap with a line saying where the rest
/// is, and the API's reader prefers the store to the node's own file.
@Suite struct StoredRunLogTests {
    @Test func linesAreStoredInOrderUpToTheCapAndTheStoreIsReadBeforeTheFile() async throws {
        let dir = try temporaryDirectory()
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        _ = try await store.createTask(TaskRecord(name: "t", taskFile: "", context: nil, schedule: nil, values: [:], timeoutSeconds: 60,
                                                  repositories: [], createdBy: "o", createdAt: Date(), updatedAt: Date()))
        let run = try #require(try await store.queueTaskRun(task: "t", trigger: "manual", uploadedContext: nil))
        let log = StoredRunLog(store: store, runID: run.id, node: "node-a", logger: quiet, cap: 200)
        let t = Date(timeIntervalSince1970: 1_700_000_000)
        let first = TaskLogLine(time: t, step: "build", stream: .stdout, text: "one")
        let second = TaskLogLine(time: t, step: "build", stream: .stderr, text: "two")
        await log.record(first)
        #expect(try await store.taskRunLog(id: run.id, offset: 0, limit: 1000) == nil)   // buffered until a flush
        await log.flush()
        await log.record(second)
        await log.flush()
        await log.flush()   // nothing pending: nothing appended twice
        let expected = first.formatted + "\n" + second.formatted + "\n"
        #expect(try await store.taskRunLog(id: run.id, offset: 0, limit: 1000).map { String(decoding: $0, as: UTF8.self) } == expected)
        // Past the cap: one line saying where the rest is, then nothing more.
        for n in 0..<10 { await log.record(TaskLogLine(time: t, step: "build", stream: .stdout, text: "line \(n)")) }
        await log.flush()
        let stored = String(decoding: try #require(try await store.taskRunLog(id: run.id, offset: 0, limit: 10_000)), as: UTF8.self)
        #expect(stored.hasPrefix(expected) && stored.contains("the stored log stops here (200 bytes)") && stored.contains("node-a"))
        #expect(!stored.contains("line 9"))

        // The reader: the store first, the node's file for a run with nothing stored.
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: "r:5000", serviceName: "s", transport: .plainHTTP,
                                               outbound: OutboundPolicy())
        configuration.runner.stateDirectory = dir + "/tasks"
        let tasks = TaskService(store: store, configuration: configuration, logger: quiet)
        #expect(try await tasks.runLog(run.id, offset: 0, limit: 10_000) == Array(stored.utf8))
        let older = try #require(try await store.queueTaskRun(task: "t", trigger: "manual", uploadedContext: nil))
        try FileManager.default.createDirectory(atPath: dir + "/tasks/runs/\(older.id)/logs", withIntermediateDirectories: true)
        try "from the file\n".write(toFile: tasks.logPath(older.id), atomically: true, encoding: .utf8)
        #expect(try await tasks.runLog(older.id, offset: 5, limit: 100) == Array("the file\n".utf8))
    }
}

/// The disk quota also bounds what happens before the runner starts (the clone): a body that
/// writes past the quota is stopped with the reason; one that stays under it returns its value.
@Suite struct RunDiskQuotaTests {
    @Test func aBodyThatFillsTheDiskPastTheQuotaIsStopped() async throws {
        let dir = try temporaryDirectory()
        let quota = await RunDiskQuota.start(limit: 1 << 20, paths: [dir], grows: dir + "/none")
        let small = try await RunDiskQuota.bounded(quota, every: .milliseconds(50)) { () async throws -> Int in
            try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: dir + "/small"))
            return 7
        }
        #expect(small == 7)
        await #expect(throws: TaskError.self) {
            _ = try await RunDiskQuota.bounded(quota, every: .milliseconds(50)) { () async throws -> Int in
                try Data(repeating: 2, count: 3 << 20).write(to: URL(fileURLWithPath: dir + "/big"))
                try await Task.sleep(for: .seconds(60))   // a clone still going: stopped, not waited for
                return 0
            }
        }
        let unbounded = try await RunDiskQuota.bounded(nil, every: .milliseconds(50)) { 3 }
        #expect(unbounded == 3)
    }
}

/// Runs reach the registry (and its token realm) verified whenever the public URL or the listener
/// speaks TLS: a TLS-terminating proxy in front of a plain listener is verified, never reached
/// with the listener's plain-HTTP setting; the listener's own certificate is trusted when it
/// serves TLS (a public URL naming the listener itself), the operator's CA file always.
@Test func runsVerifyTLSWheneverTheirRegistryIsReachedOverHTTPS() throws {
    #expect(TasksConfiguration.runTransport(publicURL: "https://registry.example", listenerTLS: false, listenerCertificate: nil,
                                            caFile: nil) == .verifiedTLS(caFiles: []))
    #expect(TasksConfiguration.runTransport(publicURL: "https://registry.example:8443", listenerTLS: false, listenerCertificate: nil,
                                            caFile: "/etc/berth/proxy-ca.pem") == .verifiedTLS(caFiles: ["/etc/berth/proxy-ca.pem"]))
    #expect(TasksConfiguration.runTransport(publicURL: "HTTPS://registry.example", listenerTLS: true, listenerCertificate: "/l.crt",
                                            caFile: "/ca.pem") == .verifiedTLS(caFiles: ["/ca.pem", "/l.crt"]))
    #expect(TasksConfiguration.runTransport(publicURL: "http://registry.lab:5000", listenerTLS: true, listenerCertificate: "/l.crt",
                                            caFile: nil) == .plainHTTP)
    #expect(TasksConfiguration.runTransport(publicURL: nil, listenerTLS: true, listenerCertificate: "/l.crt", caFile: nil)
            == .verifiedTLS(caFiles: ["/l.crt"]))
    #expect(TasksConfiguration.runTransport(publicURL: nil, listenerTLS: false, listenerCertificate: nil, caFile: "/ca.pem") == .plainHTTP)
    var configuration = TasksConfiguration(stateDirectory: "/s", registry: "r:5000", serviceName: "s", transport: .plainHTTP,
                                           outbound: OutboundPolicy())
    #expect(configuration.runner.registryTransport == .plainHTTP)
    configuration.insecureBaseRegistries = ["lab:5000"]
    #expect(configuration.runner.insecureRegistries == ["lab:5000"])

    // A CA file is checked when the server starts: one that is missing or holds no certificate is refused.
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(toFile: dir + "/ca.pem", atomically: true, encoding: .utf8)
    try "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".write(toFile: dir + "/key.pem", atomically: true, encoding: .utf8)
    try TasksConfiguration.checkRegistryCA(dir + "/ca.pem")
    #expect(throws: (any Error).self) { try TasksConfiguration.checkRegistryCA(dir + "/key.pem") }
    #expect(throws: (any Error).self) { try TasksConfiguration.checkRegistryCA(dir + "/missing.pem") }
}
