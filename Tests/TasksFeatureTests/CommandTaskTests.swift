import Access
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import SQLiteStore
import Testing
import TaskRunner
@testable import TasksFeature

private var quiet: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

private func basic(_ user: String, _ password: String) -> HTTPFields {
    [.authorization: "Basic " + Data("\(user):\(password)".utf8).base64EncodedString(), .contentType: "application/json"]
}

private func json(_ buffer: ByteBuffer) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(buffer: buffer))) as? [String: Any] ?? [:]
}

private func body(_ object: Any) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
}

/// Pushes a one-layer image as `repository:tag`.
private func pushImage(_ client: any TestClientProtocol, _ repository: String, _ tag: String, _ auth: HTTPFields) async throws
    -> HTTPResponse.Status {
    func blob(_ bytes: [UInt8]) async throws -> Digest {
        let digest = Digest.compute(bytes)
        var headers = auth
        headers[.contentLength] = String(bytes.count)
        headers[.contentType] = "application/octet-stream"
        let status = try await client.execute(uri: "/v2/\(repository)/blobs/uploads/?digest=\(digest.string)", method: .post,
                                              headers: headers, body: ByteBuffer(bytes: bytes)).status
        #expect(status == .created)
        return digest
    }
    let config = Array(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
    let layer = Array("layer of \(repository):\(tag)".utf8)
    let (c, l) = (try await blob(config), try await blob(layer))
    let manifest = """
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",\
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(c.string)","size":\(config.count)},\
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\(l.string)","size":\(layer.count)}]}
        """
    var headers = auth
    headers[.contentType] = "application/vnd.oci.image.manifest.v1+json"
    return try await client.execute(uri: "/v2/\(repository)/manifests/\(tag)", method: .put, headers: headers,
                                    body: ByteBuffer(string: manifest)).status
}

/// `--cmd` tasks (issue 16 item 3): a command instead of a task file, `berth …` commands run as
/// Berth's own CLI with the run's identity, limited to the task's scope; and the reasons a run
/// and its steps were stopped, in the run's record.
@Suite struct CommandTaskTests {
    struct Setup {
        let app: any ApplicationProtocol
        let feature: TasksFeature
        let access: AccessControl
        let store: SQLiteMetadataStore
        let dir: String
        /// The configuration the feature was made with (its `runner.berthTarget` is shared).
        var configuration: TasksConfiguration? = nil
    }

    /// A registry with the tasks feature; `berth` steps run `fakeBerth` (a script) instead of the
    /// server's binary.
    func setup(fakeBerth: String? = nil, timeoutSeconds: Int? = nil, tlsNames: [String]? = nil) async throws -> Setup {
        let dir = NSTemporaryDirectory() + "berth-cmdtask-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let registry = try Registry.embedded(dataDirectory: dir, logger: quiet)
        let store = registry.metadata as! SQLiteMetadataStore
        let access = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: "owner-pw")
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: "berth.test:5000", serviceName: "berth-test",
                                               transport: .plainHTTP, outbound: OutboundPolicy())
        configuration.tick = .milliseconds(50)
        if let fakeBerth {
            let path = dir + "/fake-berth"
            try fakeBerth.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
            configuration.runner.berthExecutable = path
            configuration.runner.berthEndpoint = BerthStepEndpoint(url: "http://berth.test:5000")
            if let tlsNames {
                // As `berth serve --tls-cert` does: the endpoint made of the certificate's names.
                _ = configuration.runBerthSteps(executable: path, listenHost: "127.0.0.1", port: 5443, tls: ("/c.pem", tlsNames))
            }
        }
        let feature = TasksFeature(store: store, access: access, configuration: configuration, logger: quiet)
        let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [feature], host: "127.0.0.1",
                                                        port: 0, serviceName: "berth-test", logger: quiet)
        return Setup(app: app, feature: feature, access: access, store: store, dir: dir, configuration: configuration)
    }

    static let owner = basic("owner", "owner-pw")

    /// `berth run` and `berth build` save their file on a task shared by name (`quick-run`,
    /// `quick-build`) and queue the run with `ifDefinition`: a run is queued only while the task
    /// holds what its caller saved, so two callers at once never run each other's file.
    @Test func aRunIsQueuedOnlyWhileTheTaskHoldsTheDefinitionItsCallerSaved() async throws {
        let s = try await setup()
        try await s.app.test(.router) { client in
            let created = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: Self.owner, body: try body([
                "name": "quick", "cmd": "berth purge --filter 'team/app:.*' --ago 30d", "scope": ["team/app"]]))
            #expect(created.status == .created, "\(String(buffer: created.body))")
            let mine = try #require(json(created.body)["definition"] as? String)
            // another caller saves its own command on the same task
            let patched = try await client.execute(uri: "/api/v1/tasks/quick", method: .patch, headers: Self.owner,
                                                   body: try body(["cmd": "berth purge --filter 'team/app:.*' --ago 7d"]))
            #expect(patched.status == .ok, "\(String(buffer: patched.body))")
            let theirs = try #require(json(patched.body)["definition"] as? String)
            #expect(theirs != mine)

            let stale = try await client.execute(uri: "/api/v1/tasks/quick/runs?ifDefinition=\(mine)", method: .post, headers: Self.owner)
            #expect(stale.status == .conflict)
            #expect((json(stale.body)["error"] as? [String: Any])?["code"] as? String == "TASK_CHANGED")
            #expect(try await s.store.taskRuns(task: "quick", limit: 10).isEmpty)
            for malformed in ["latest", "sha512:" + String(repeating: "a", count: 128)] {
                let bad = try await client.execute(uri: "/api/v1/tasks/quick/runs?ifDefinition=\(malformed)", method: .post,
                                                   headers: Self.owner)
                #expect(bad.status == .badRequest, "\(malformed)")
            }
            #expect(try await s.store.taskRuns(task: "quick", limit: 10).isEmpty)

            let fresh = try await client.execute(uri: "/api/v1/tasks/quick/runs?ifDefinition=\(theirs)", method: .post, headers: Self.owner)
            #expect(fresh.status == .accepted, "\(String(buffer: fresh.body))")
            let id = try #require(json(fresh.body)["id"] as? String)
            let run = try #require(try await s.store.taskRun(id: id))
            #expect(run.taskAtQueue?.command == "berth purge --filter 'team/app:.*' --ago 7d")
            let shown = json(try await client.execute(uri: "/api/v1/tasks/quick", method: .get, headers: Self.owner).body)
            #expect(shown["definition"] as? String == theirs)
        }
    }

    @Test func aCmdTaskIsSavedWithItsOneStepFileAndItsScopeAndNeedsNoContext() async throws {
        let s = try await setup()
        try await s.app.test(.router) { client in
            let command = "berth purge --filter 'team/app:.*' --ago 30d"
            let created = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: Self.owner, body: try body([
                "name": "nightly", "cmd": command, "scope": ["team/app"], "schedule": "0 3 * * *"]))
            #expect(created.status == .created, "\(String(buffer: created.body))")
            let shown = json(try await client.execute(uri: "/api/v1/tasks/nightly", method: .get, headers: Self.owner).body)
            #expect(shown["cmd"] as? String == command)
            #expect(shown["scope"] as? [String] == ["team/app"])
            #expect(shown["schedule"] as? String == "0 3 * * *")
            #expect((shown["taskFile"] as? String)?.contains("cmd: \"berth purge --filter 'team/app:.*' --ago 30d\"") == true)
            // No context to upload: a run is queued as it is.
            let run = try await client.execute(uri: "/api/v1/tasks/nightly/runs", method: .post, headers: Self.owner)
            #expect(run.status == .accepted, "\(String(buffer: run.body))")
            // An image command is a one-step cmd task; update swaps the command.
            let image = try await client.execute(uri: "/api/v1/tasks/nightly", method: .patch, headers: Self.owner,
                                                 body: try body(["cmd": "berth.test:5000/tools:1 echo hi", "scope": []]))
            #expect(image.status == .ok, "\(String(buffer: image.body))")
            let updated = json(image.body)
            #expect(updated["cmd"] as? String == "berth.test:5000/tools:1 echo hi" && updated["scope"] == nil)

            func refused(_ fields: [String: Any]) async throws -> (HTTPResponse.Status, String) {
                let answer = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: Self.owner,
                                                      body: try body(["name": "bad"].merging(fields) { $1 }))
                return (answer.status, String(buffer: answer.body))
            }
            // A berth command without a scope, one that is not allowed, one aimed elsewhere, a
            // file and a command at once, a bad scope name.
            var (status, text) = try await refused(["cmd": command])
            #expect(status == .badRequest && text.contains("needs a scope"), "\(text)")
            (status, text) = try await refused(["cmd": "berth serve --data-dir /", "scope": ["team/app"]])
            #expect(status == .badRequest && text.contains("line 4") && text.contains("not 'serve'"), "\(text)")
            (status, text) = try await refused(["cmd": "berth purge --registry http://evil.example --filter 'a:.*'", "scope": ["a"]])
            #expect(status == .badRequest && text.contains("--registry is refused"), "\(text)")
            (status, text) = try await refused(["cmd": command, "taskFile": "version: v1.1.0\nsteps: []\n", "scope": ["team/app"]])
            #expect(status == .badRequest && text.contains("not both"), "\(text)")
            (status, text) = try await refused(["cmd": command, "scope": ["Team/App"]])
            #expect(status == .badRequest && text.contains("invalid repository name"), "\(text)")
            (status, text) = try await refused(["cmd": "  "])
            #expect(status == .badRequest && text.contains("cmd is empty"), "\(text)")
        }
    }

    @Test func aCreatorMayOnlyScopeATaskToRepositoriesItMayPushAndDeleteIn() async throws {
        let s = try await setup()
        // The service refuses a scope its creator may not delete in.
        let tasks = s.feature.tasks
        let record = TaskRecord(name: "scoped", taskFile: try TaskService.commandFile("berth purge --filter 'team/app:.*'"), context: nil,
                                schedule: nil, values: [:], timeoutSeconds: 60, repositories: [], createdBy: "identity:owner",
                                createdAt: Date(), updatedAt: Date())
        var scoped = record
        scoped.scope = ["team/app"]
        await #expect(throws: TaskError.forbidden("you may not push and delete in team/app, which the task's scope names")) {
            _ = try await tasks.create(scoped, mayPush: { _ in true }, mayDelete: { _ in false })
        }
        let saved = try await tasks.create(scoped, mayPush: { _ in true }, mayDelete: { _ in true })
        #expect(saved.scope == ["team/app"] && saved.repositories.isEmpty)
    }

    /// What a `berth purge` of a task run can do: its identity (with `commands`) gets a
    /// management token judged by its grants, purges its own repositories and nothing else.
    @Test func aRunIdentityWithCommandsPurgesItsScopeAndIsRefusedOutsideIt() async throws {
        let s = try await setup()
        try await s.app.test(.router) { client in
            for (repository, tag) in [("team/app", "old"), ("team/app", "older"), ("team/other", "keep"), ("elsewhere", "keep")] {
                #expect(try await pushImage(client, repository, tag, Self.owner) == .created)
            }
            func token(_ identity: RunIdentity) async throws -> HTTPFields {
                let (user, password) = try await s.access.issueRunCredentials(identity, audience: "berth-test")
                let answer = try await client.execute(uri: "/oauth2/token?service=berth-test&scope=registry:management:*",
                                                      method: .get, headers: basic(user, password))
                #expect(answer.status == .ok)
                let token = try #require(json(answer.body)["token"] as? String)
                return [.authorization: "Bearer " + token, .contentType: "application/json"]
            }
            func purge(_ auth: HTTPFields, _ filters: [String]) async throws -> (HTTPResponse.Status, [String: Any]) {
                let answer = try await client.execute(uri: "/api/v1/purge", method: .post, headers: auth,
                                                      body: try body(["filters": filters, "ago": "0d"]))
                return (answer.status, json(answer.body))
            }
            let deadline = Date().addingTimeInterval(600)
            // It may pull team/other (a base image): it sees it, and may not delete there.
            let commands = try await token(RunIdentity(task: "nightly", runID: "cb1", repositories: ["team/app"],
                                                       pullRepositories: ["team/other"], deadline: deadline, commands: true))
            // A match it sees and may not delete in: refused whole, nothing deleted, and nothing named.
            for filters in [["team/.*:.*"], ["team/other:.*"], ["team/app:.*", "team/other:.*"], [".*:.*"]] {
                let (status, answer) = try await purge(commands, filters)
                #expect(status == .forbidden, "\(filters) \(answer)")
                #expect(!"\(answer)".contains("team/other") && !"\(answer)".contains("elsewhere"))
            }
            // A repository it cannot see is no part of its purge, and answers as if it did not
            // exist (review: a 403 told it that it does).
            let (unseen, unseenReport) = try await purge(commands, ["elsewhere:.*"])
            #expect(unseen == .ok && !"\(unseenReport)".contains("elsewhere"), "\(unseenReport)")
            // Nothing registry-wide: the management API's other endpoints refuse it.
            #expect(try await client.execute(uri: "/api/v1/identities", method: .get, headers: commands).status == .forbidden)
            #expect(try await client.execute(uri: "/api/v1/gc", method: .post, headers: commands).status == .forbidden)
            #expect(try await client.execute(uri: "/api/v1/tasks", method: .get, headers: commands).status == .forbidden)
            // Its own scope: purged.
            let (status, report) = try await purge(commands, ["team/app:.*"])
            #expect(status == .ok, "\(report)")
            let deleted = (report["deletedTags"] as? [[String: Any]] ?? []).compactMap { $0["tag"] as? String }.sorted()
            #expect(deleted == ["old", "older"], "\(report)")
            for (repository, tag, expected) in [("team/app", "old", HTTPResponse.Status.notFound), ("team/other", "keep", .ok),
                                                ("elsewhere", "keep", .ok)] {
                var headers = Self.owner
                headers[.accept] = "application/vnd.oci.image.manifest.v1+json"
                #expect(try await client.execute(uri: "/v2/\(repository)/manifests/\(tag)", method: .head, headers: headers).status
                        == expected, "\(repository):\(tag)")
            }
            // A run identity without berth steps: its token carries no management right, so the
            // management API sees nothing of its repositories and its purge deletes nothing.
            let plain = try await token(RunIdentity(task: "ci", runID: "cb2", repositories: ["team/other"], deadline: deadline))
            let (plainStatus, plainReport) = try await purge(plain, ["team/other:.*"])
            #expect(plainStatus != .ok || (plainReport["deletedTags"] as? [Any] ?? []).isEmpty, "\(plainReport)")
            var owned = Self.owner
            owned[.accept] = "application/vnd.oci.image.manifest.v1+json"
            #expect(try await client.execute(uri: "/v2/team/other/manifests/keep", method: .head, headers: owned).status == .ok)
            #expect(try await client.execute(uri: "/api/v1/repository/tags?name=team/other", method: .get, headers: plain).status
                    != .ok)
        }
    }

    /// After SIGHUP reloaded the certificate (`refreshBerthSteps`, as `berth serve` calls it),
    /// berth steps of the runs that follow use the names the new certificate holds, not the ones
    /// read at start; a certificate without a host name turns them off, with the reason.
    @Test func aReloadedCertificatesNamesAreWhatBerthStepsUse() async throws {
        let fake = """
            #!/bin/sh
            echo "registry $BERTH_REGISTRY connect $BERTH_CONNECT_ADDRESS ca $BERTH_CA_FILE"
            exit 0
            """
        let s = try await setup(fakeBerth: fake, tlsNames: ["old.example"])
        let configuration = try #require(s.configuration)
        let service = Task { try await TaskQueueService(tasks: s.feature.tasks, access: s.access).run() }
        defer { service.cancel() }
        try await s.app.test(.router) { client in
            let answer = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: Self.owner,
                                                  body: try body(["name": "list", "scope": ["team/app"], "cmd": "berth repository list"]))
            #expect(answer.status == .created, "\(String(buffer: answer.body))")
            func run() async throws -> ([String: Any], String) {
                let started = try await client.execute(uri: "/api/v1/tasks/list/runs", method: .post, headers: Self.owner)
                let id = try #require(json(started.body)["id"] as? String)
                for _ in 0..<1200 {
                    let run = json(try await client.execute(uri: "/api/v1/tasks/list/runs/\(id)", method: .get, headers: Self.owner).body)
                    if let status = run["status"] as? String, status != "queued", status != "running" {
                        let log = String(buffer: try await client.execute(uri: "/api/v1/tasks/list/runs/\(id)/log", method: .get,
                                                                          headers: Self.owner).body)
                        return (run, log)
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                Issue.record("run \(id) did not finish")
                return ([:], "")
            }
            var (record, log) = try await run()
            #expect(record["status"] as? String == "succeeded", "\(record)")
            #expect(log.contains("registry https://old.example:5443 connect 127.0.0.1 ca /c.pem"), "\(log)")

            #expect(configuration.refreshBerthSteps(listenHost: "127.0.0.1", port: 5443, tls: ("/c.pem", ["new.example"])) == nil)
            (record, log) = try await run()
            #expect(record["status"] as? String == "succeeded", "\(record)")
            #expect(log.contains("registry https://new.example:5443 connect 127.0.0.1 ca /c.pem"), "\(log)")
            #expect(!log.contains("old.example"), "\(log)")

            let refused = configuration.refreshBerthSteps(listenHost: "127.0.0.1", port: 5443, tls: ("/c.pem", ["10.9.9.9"]))
            #expect(refused?.contains("neither the listen address") == true)
            (record, _) = try await run()
            #expect(record["status"] as? String == "failed", "\(record)")
            let reason = ((record["steps"] as? [[String: Any]])?.first?["reason"] as? String) ?? ""
            #expect(reason.contains("runs no berth commands") && reason.contains("neither the listen address"), "\(record)")
        }
    }

    /// A `berth` step runs the server's binary (here a stand-in) with the step's words as argv
    /// and the run's credentials in its environment only (masked in the log); step timeouts,
    /// the run's timeout and a cancel are each said in the run's and the steps' records.
    @Test func aBerthStepRunsWithTheRunsCredentialsAndStopsAreSaidInTheRecord() async throws {
        let fake = """
            #!/bin/sh
            echo "argv: $*"
            echo "registry $BERTH_REGISTRY user $BERTH_USERNAME password $BERTH_PASSWORD home $HOME"
            if [ "$1 $2" = "repository sleep" ]; then exec sleep 60; fi
            exit 0
            """
        let s = try await setup(fakeBerth: fake)
        let service = Task { try await TaskQueueService(tasks: s.feature.tasks, access: s.access).run() }
        defer { service.cancel() }
        try await s.app.test(.router) { client in
            func create(_ name: String, _ fields: [String: Any]) async throws {
                let answer = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: Self.owner,
                                                      body: try body(["name": name, "scope": ["team/app"]].merging(fields) { $1 }))
                #expect(answer.status == .created, "\(String(buffer: answer.body))")
            }
            func start(_ name: String) async throws -> String {
                let answer = try await client.execute(uri: "/api/v1/tasks/\(name)/runs", method: .post, headers: Self.owner)
                return try #require(json(answer.body)["id"] as? String)
            }
            func finished(_ name: String, _ id: String) async throws -> [String: Any] {
                for _ in 0..<1200 {
                    let run = json(try await client.execute(uri: "/api/v1/tasks/\(name)/runs/\(id)", method: .get, headers: Self.owner).body)
                    if let status = run["status"] as? String, status != "queued", status != "running" { return run }
                    try await Task.sleep(for: .milliseconds(50))
                }
                Issue.record("run \(id) did not finish")
                return [:]
            }
            func steps(_ run: [String: Any]) -> [(String, String, String?)] {
                (run["steps"] as? [[String: Any]] ?? []).map { ($0["id"] as? String ?? "", $0["status"] as? String ?? "", $0["reason"] as? String) }
            }

            try await create("ok", ["cmd": "berth purge --filter 'team/app:^build-.*' --ago 30d"])
            let ok = try await finished("ok", try await start("ok"))
            #expect(ok["status"] as? String == "succeeded", "\(ok)")
            let log = String(buffer: try await client.execute(uri: "/api/v1/tasks/ok/runs/\(ok["id"] as? String ?? "")/log",
                                                               method: .get, headers: Self.owner).body)
            #expect(log.contains("argv: purge --filter team/app:^build-.* --ago 30d"), "\(log)")
            #expect(log.contains("registry http://berth.test:5000 user berth~run password *** home "), "\(log)")
            #expect(!log.contains("eyJ"), "\(log)")

            // A step past its own timeout.
            let slowStep = "version: v1.1.0\nsteps:\n  - id: wait\n    cmd: berth repository sleep\n    timeout: 1\n  - id: after\n    cmd: berth repository list\n"
            try await create("step-timeout", ["taskFile": slowStep])
            let timedOut = try await finished("step-timeout", try await start("step-timeout"))
            #expect(timedOut["status"] as? String == "failed")
            #expect(timedOut["reason"] as? String == "step wait timed out: timed out after 1 s", "\(timedOut)")
            #expect(steps(timedOut).map(\.0) == ["wait", "after"])
            #expect(steps(timedOut).map(\.1) == ["timedOut", "skipped"])
            #expect(steps(timedOut).map(\.2) == ["timed out after 1 s", "not run: step wait timed out: timed out after 1 s"])

            // The run past its timeout.
            try await create("run-timeout", ["cmd": "berth repository sleep", "timeoutSeconds": 2])
            let overdue = try await finished("run-timeout", try await start("run-timeout"))
            #expect(overdue["status"] as? String == "failed")
            #expect(overdue["reason"] as? String == "the run exceeded its timeout of 2 s", "\(overdue)")
            #expect(steps(overdue).map(\.1) == ["cancelled"])
            #expect(steps(overdue).map(\.2) == ["stopped: the run exceeded its timeout of 2 s"], "\(overdue)")

            // A cancelled run.
            try await create("cancelled", ["taskFile": slowStep.replacingOccurrences(of: "timeout: 1", with: "timeout: 300")])
            let id = try await start("cancelled")
            for _ in 0..<1200 {
                let log = String(buffer: try await client.execute(uri: "/api/v1/tasks/cancelled/runs/\(id)/log", method: .get,
                                                                  headers: Self.owner).body)
                if log.contains("argv: repository sleep") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let asked = try await client.execute(uri: "/api/v1/tasks/cancelled/runs/\(id)/cancel", method: .post, headers: Self.owner)
            #expect(asked.status == .ok)
            let stopped = try await finished("cancelled", id)
            #expect(stopped["status"] as? String == "cancelled" && stopped["reason"] as? String == "cancelled", "\(stopped)")
            #expect(steps(stopped).map(\.1) == ["cancelled", "skipped"])
            #expect(steps(stopped).map(\.2) == ["stopped: cancelled", "not run: cancelled"], "\(stopped)")
        }
        service.cancel()
        _ = await service.result
    }
}
