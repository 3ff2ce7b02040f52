import Access
import BerthAPIContract
import Crypto
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import RegistryCore
import RegistryStore
import SQLiteStore
import Testing
@testable import TasksFeature

private let commitA = String(repeating: "a", count: 40)
private let commitB = String(repeating: "b", count: 40)

private func hmac(_ body: [UInt8], _ secret: String) -> String {
    HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8))).map { String(format: "%02x", $0) }.joined()
}

private func pushBody(ref: String = "refs/heads/main", after: String = commitA) -> [UInt8] {
    Array(#"{"ref":"\#(ref)","before":"\#(String(repeating: "0", count: 40))","after":"\#(after)","commits":[{"id":"\#(after)"}]}"#.utf8)
}

/// The push webhook's checks, one provider style at a time, and its payload parser on hostile input.
@Suite struct GitWebhookTests {
    let secret = "s3cret-of-the-task"

    @Test func eachProviderStyleVerifiesWithTheTaskSecretOnly() throws {
        let body = pushBody()
        let github: HTTPFields = [GitWebhook.githubSignature: "sha256=" + hmac(body, secret)]
        let gitea: HTTPFields = [GitWebhook.giteaSignature: hmac(body, secret)]
        let gitlab: HTTPFields = [GitWebhook.gitlabToken: secret]
        #expect(try GitWebhook.verify(github, body: body, secret: secret) == ["github"])
        #expect(try GitWebhook.verify(gitea, body: body, secret: secret) == ["gitea"])
        #expect(try GitWebhook.verify(gitlab, body: body, secret: secret) == ["gitlab"])
        // Upper-case hex is the same MAC.
        let upper: HTTPFields = [GitWebhook.githubSignature: "sha256=" + hmac(body, secret).uppercased()]
        #expect(try GitWebhook.verify(upper, body: body, secret: secret) == ["github"])
        // Gitea sends both of its signatures: both are checked.
        var both = github
        both[GitWebhook.giteaSignature] = hmac(body, secret)
        #expect(try GitWebhook.verify(both, body: body, secret: secret) == ["github", "gitea"])
    }

    @Test func forgedMissingOrMalformedSignaturesAreRefused() {
        let body = pushBody()
        let other = pushBody(after: commitB)
        let refusals: [(HTTPFields, GitWebhook.Refusal)] = [
            ([:], .unsigned),
            ([.contentType: "application/json"], .unsigned),
            // Signed with another secret, or over another body.
            ([GitWebhook.githubSignature: "sha256=" + hmac(body, "guess")], .badSignature),
            ([GitWebhook.githubSignature: "sha256=" + hmac(other, secret)], .badSignature),
            ([GitWebhook.giteaSignature: hmac(other, secret)], .badSignature),
            ([GitWebhook.gitlabToken: "guess"], .badSignature),
            ([GitWebhook.gitlabToken: secret + "x"], .badSignature),
            ([GitWebhook.gitlabToken: ""], .badSignature),
            // Malformed: no prefix, sha1, short, not hex.
            ([GitWebhook.githubSignature: hmac(body, secret)], .badSignature),
            ([GitWebhook.githubSignature: "sha1=" + hmac(body, secret)], .badSignature),
            ([GitWebhook.githubSignature: "sha256=" + hmac(body, secret).dropLast(2)], .badSignature),
            ([GitWebhook.giteaSignature: String(repeating: "z", count: 64)], .badSignature),
            // One good signature does not excuse a bad one beside it.
            ([GitWebhook.githubSignature: "sha256=" + hmac(body, secret), GitWebhook.gitlabToken: "guess"], .badSignature),
        ]
        for (headers, refusal) in refusals {
            #expect(throws: refusal, "\(headers)") { try GitWebhook.verify(headers, body: body, secret: secret) }
        }
        // A repeated header is refused, not one of its values chosen.
        var repeated = HTTPFields()
        repeated.append(HTTPField(name: GitWebhook.gitlabToken, value: "guess"))
        repeated.append(HTTPField(name: GitWebhook.gitlabToken, value: secret))
        #expect(throws: GitWebhook.Refusal.badSignature) { try GitWebhook.verify(repeated, body: body, secret: secret) }
    }

    @Test func pushPayloadsAreParsedStrictly() throws {
        let push = try GitWebhook.parsePush(pushBody(ref: "refs/heads/feature/x", after: commitB))
        #expect(push == GitWebhook.Push(ref: "refs/heads/feature/x", after: commitB) && push.branch == "feature/x" && !push.deletes)
        #expect(try GitWebhook.parsePush(pushBody(ref: "refs/tags/v1")).branch == nil)
        #expect(try GitWebhook.parsePush(pushBody(after: String(repeating: "0", count: 40))).deletes)
        #expect(try GitWebhook.parsePush(pushBody(after: String(repeating: "c", count: 64))).after.count == 64)
        let nested = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        let hostile: [String] = [
            "", "null", "[]", "\"push\"", "{", nested, #"{"ref":"refs/heads/main"}"#, #"{"after":"\#(commitA)"}"#,
            #"{"ref":1,"after":"\#(commitA)"}"#, #"{"ref":"refs/heads/main","after":"\#(commitA.uppercased())"}"#,
            #"{"ref":"refs/heads/main","after":"\#(commitA.dropLast())"}"#, #"{"ref":"refs/heads/main","after":"HEAD"}"#,
            #"{"ref":"refs/heads/ma\nin","after":"\#(commitA)"}"#, #"{"ref":"refs/heads/a b","after":"\#(commitA)"}"#,
            #"{"ref":"\#(String(repeating: "r", count: 300))","after":"\#(commitA)"}"#,
            #"{"ref":"refs/heads/main","after":"\#(commitA)"#,
        ]
        for text in hostile {
            #expect(throws: GitWebhook.PayloadError.self, "\(text.prefix(80))") { try GitWebhook.parsePush(Array(text.utf8)) }
        }
    }

    @Test func onlyPushEventsQueue() {
        #expect(GitWebhook.isPush(nil) && GitWebhook.isPush("push") && GitWebhook.isPush("Push Hook"))
        #expect(!GitWebhook.isPush("ping") && !GitWebhook.isPush("Tag Push Hook") && !GitWebhook.isPush("pull_request"))
        #expect(GitWebhook.event([HTTPField.Name("X-GitHub-Event")!: "ping"]) == "ping")
        #expect(GitWebhook.event([HTTPField.Name("X-Gitlab-Event")!: "Push Hook"]) == "Push Hook")
    }

    @Test func secretsAreSealedBoundToTheirTask() throws {
        let secrets = TaskSecrets(key: SymmetricKey(size: .bits256))
        let sealed = try secrets.seal("the secret", task: "a")
        #expect(!String(decoding: sealed, as: UTF8.self).contains("the secret"))
        #expect(secrets.open(sealed, task: "a") == "the secret")
        #expect(secrets.open(sealed, task: "b") == nil)
        #expect(TaskSecrets(key: SymmetricKey(size: .bits256)).open(sealed, task: "a") == nil)
    }
}

private func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "berth-commit-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private var quiet: Logger {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}

/// The webhook endpoint and the commit trigger's bookkeeping through a real application (the
/// queue does not run here: runs stay queued).
@Suite struct CommitTriggerTests {
    static let file = """
        version: v1.1.0
        steps:
          - id: build
            build: -t $Registry/team/app:$Commit .
          - push: [$Registry/team/app:$ID]
        """

    /// The branch head the fake `git ls-remote` answers (the webhook confirms a push with it).
    static func setHead(_ dir: String, _ commit: String) throws {
        try (commit + "\trefs/heads/main\n").write(toFile: dir + "/head", atomically: true, encoding: .utf8)
    }

    func application() async throws -> (some ApplicationProtocol, TaskService) {
        let (app, tasks, _) = try await applicationWithHead()
        return (app, tasks)
    }

    func applicationWithHead() async throws -> (some ApplicationProtocol, TaskService, String) {
        let dir = try temporaryDirectory()
        let registry = try Registry.embedded(dataDirectory: dir, logger: quiet)
        let store = registry.metadata as! SQLiteMetadataStore
        let access = try await AccessControl.open(store: store, keyDirectory: dir + "/keys")
        _ = try await access.bootstrap(ownerPassword: "owner-pw")
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: "berth.test:5000", serviceName: "berth-test",
                                               transport: .plainHTTP, outbound: try OutboundPolicy(allow: "127.0.0.1/32"))
        // A stand-in git whose `ls-remote` answers the head the test sets.
        let git = dir + "/git"
        try "#!/bin/sh\ncat \(dir)/head\n".write(toFile: git, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: git)
        try Self.setHead(dir, commitA)
        configuration.checkout.git = git
        let feature = TasksFeature(store: store, access: access, configuration: configuration, logger: quiet)
        let app = try await BerthServer.makeApplication(registry: registry, access: access, features: [feature], host: "127.0.0.1",
                                                        port: 0, serviceName: "berth-test", logger: quiet)
        return (app, feature.tasks, dir)
    }

    static let owner: HTTPFields = [.authorization: "Basic " + Data("owner:owner-pw".utf8).base64EncodedString(),
                                    .contentType: "application/json"]

    func create(_ client: any TestClientProtocol, _ body: [String: Any]) async throws -> (HTTPResponse.Status, [String: Any]) {
        let answer = try await client.execute(uri: "/api/v1/tasks", method: .post, headers: Self.owner,
                                              body: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        return (answer.status, (try? JSONSerialization.jsonObject(with: Data(buffer: answer.body))) as? [String: Any] ?? [:])
    }

    func deliver(_ client: any TestClientProtocol, _ task: String, _ body: [UInt8], _ headers: HTTPFields) async throws -> (HTTPResponse.Status, String) {
        let answer = try await client.execute(uri: "/api/v1/tasks/\(task)/git-webhook", method: .post, headers: headers,
                                              body: ByteBuffer(bytes: body))
        return (answer.status, String(buffer: answer.body))
    }

    @Test func aSignedPushQueuesOneRunWithItsCommitAndAForgedOneNothing() async throws {
        let (app, tasks, dir) = try await applicationWithHead()
        try await app.test(.router) { client in
            let (status, created) = try await create(client, ["name": "ci", "taskFile": Self.file, "commitTriggerEnabled": true,
                                                              "context": "http://127.0.0.1:9/app.git#main"])
            #expect(status == .created)
            let secret = try #require(created["gitWebhookSecret"] as? String)
            #expect(created["commitTriggerEnabled"] as? Bool == true && secret.count >= 40)
            // Shown once: never again, and stored sealed.
            let shown = try await client.execute(uri: "/api/v1/tasks/ci", method: .get, headers: Self.owner)
            #expect(!String(buffer: shown.body).contains(secret) && !String(buffer: shown.body).contains("gitWebhookSecret"))
            let stored = try #require(try await tasks.store.task(named: "ci"))
            let storedText = String(decoding: try JSONEncoder().encode(stored), as: UTF8.self)
            #expect(stored.gitWebhookSecret != nil && !storedText.contains(secret))

            let body = pushBody()
            // Forged, unsigned, for another task, or for one without the trigger: nothing queued.
            #expect(try await deliver(client, "ci", body, [GitWebhook.githubSignature: "sha256=" + hmac(body, "guess")]).0 == .forbidden)
            #expect(try await deliver(client, "ci", body, [GitWebhook.gitlabToken: "guess"]).0 == .forbidden)
            #expect(try await deliver(client, "ci", body, [:]).0 == .unauthorized)
            #expect(try await deliver(client, "none", body, [GitWebhook.gitlabToken: secret]).0 == .forbidden)
            let (plainStatus, _) = try await create(client, ["name": "plain", "taskFile": Self.file,
                                                             "context": "http://127.0.0.1:9/app.git#main"])
            #expect(plainStatus == .created)
            #expect(try await deliver(client, "plain", body, [GitWebhook.gitlabToken: secret]).0 == .forbidden)
            // Larger than the bound: refused before anything is checked.
            let huge = [UInt8](repeating: 0x20, count: GitWebhook.maxBodyBytes + 1)
            #expect(try await deliver(client, "ci", huge, [GitWebhook.gitlabToken: secret]).0 == .contentTooLarge)
            #expect(try await tasks.store.taskRuns(task: nil, limit: 10).isEmpty)

            // Signed (GitHub style): one run, for that commit.
            let (queued, text) = try await deliver(client, "ci", body, [GitWebhook.githubSignature: "sha256=" + hmac(body, secret),
                                                                       HTTPField.Name("X-GitHub-Event")!: "push"])
            #expect(queued == .accepted, "\(text)")
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            let run = try #require(answer["run"] as? [String: Any])
            #expect(answer["queued"] as? Bool == true && run["trigger"] as? String == "commit" && run["commit"] as? String == commitA
                    && run["id"] as? String == "cb1")
            // Delivered again (a retry), or the same commit through GitLab's style: not twice.
            let (again, againText) = try await deliver(client, "ci", body, [GitWebhook.gitlabToken: secret])
            #expect(again == .ok && againText.contains("seen before"))
            // Another branch, a ping, a bad payload.
            let other = pushBody(ref: "refs/heads/dev", after: commitB)
            #expect(try await deliver(client, "ci", other, [GitWebhook.giteaSignature: hmac(other, secret)]).1.contains("not to the task's branch"))
            let ping = Array(#"{"zen":"hi"}"#.utf8)
            let (pingStatus, pingText) = try await deliver(client, "ci", ping, [GitWebhook.githubSignature: "sha256=" + hmac(ping, secret),
                                                                               HTTPField.Name("X-GitHub-Event")!: "ping"])
            #expect(pingStatus == .ok && pingText.contains("not a push"))
            let bad = Array(#"{"ref":"refs/heads/main","after":"HEAD"}"#.utf8)
            #expect(try await deliver(client, "ci", bad, [GitWebhook.gitlabToken: secret]).0 == .badRequest)
            // A replayed or stale delivery (a commit that is not the branch's head now) queues nothing.
            let stale = pushBody(after: commitB)
            let (staleStatus, staleText) = try await deliver(client, "ci", stale, [GitWebhook.giteaSignature: hmac(stale, secret)])
            #expect(staleStatus == .ok && staleText.contains("not the head"), "\(staleText)")
            // The next commit queues the next run; the task shows the commit last seen.
            try Self.setHead(dir, commitB)
            let next = pushBody(after: commitB)
            #expect(try await deliver(client, "ci", next, [GitWebhook.giteaSignature: hmac(next, secret)]).0 == .accepted)
            let runs = try await tasks.store.taskRuns(task: "ci", limit: 10)
            #expect(runs.map(\.commit) == [commitB, commitA] && runs.allSatisfy { $0.trigger == "commit" })
            let view = try await client.execute(uri: "/api/v1/tasks/ci", method: .get, headers: Self.owner)
            #expect(String(buffer: view.body).contains(commitB))

            // Turned off: refused like a forgery. Turned on again: a new secret, shown once; the old one is refused.
            let off = try await client.execute(uri: "/api/v1/tasks/ci", method: .patch, headers: Self.owner,
                                               body: ByteBuffer(string: #"{"commitTriggerEnabled":false}"#))
            #expect(off.status == .ok)
            let third = pushBody(after: String(repeating: "c", count: 40))
            #expect(try await deliver(client, "ci", third, [GitWebhook.gitlabToken: secret]).0 == .forbidden)
            let on = try await client.execute(uri: "/api/v1/tasks/ci", method: .patch, headers: Self.owner,
                                              body: ByteBuffer(string: #"{"commitTriggerEnabled":true}"#))
            let turnedOn = try #require(try JSONSerialization.jsonObject(with: Data(buffer: on.body)) as? [String: Any])
            let renewed = try #require(turnedOn["gitWebhookSecret"] as? String)
            #expect(on.status == .ok && renewed != secret)
            try Self.setHead(dir, String(repeating: "c", count: 40))
            #expect(try await deliver(client, "ci", third, [GitWebhook.gitlabToken: secret]).0 == .forbidden)
            #expect(try await deliver(client, "ci", third, [GitWebhook.gitlabToken: renewed]).0 == .accepted)
        }
    }

    @Test func aCommitTriggerNeedsAGitContext() async throws {
        let (app, _) = try await application()
        try await app.test(.router) { client in
            let (status, body) = try await create(client, ["name": "ci", "taskFile": Self.file, "commitTriggerEnabled": true])
            let message = (body["error"] as? [String: Any])?["message"] as? String ?? ""
            #expect(status == .badRequest && message.contains("needs a git context"), "\(body)")
        }
    }

    @Test func aPollRecordsTheFirstCommitThenQueuesOncePerNewCommit() async throws {
        let (_, tasks) = try await application()
        var record = TaskRecord(name: "ci", taskFile: Self.file, context: "https://git.example.com/app.git#main", schedule: nil,
                                values: [:], timeoutSeconds: 600, repositories: ["team/app"], createdBy: "t", createdAt: Date(),
                                updatedAt: Date())
        record.commitTriggerEnabled = true
        _ = try await tasks.store.createTask(record)
        #expect(try await tasks.observe(task: "ci", branch: "main", commit: commitA, queueOnFirstSight: false) == .recorded)
        #expect(try await tasks.observe(task: "ci", branch: "main", commit: commitA, queueOnFirstSight: false) == .unchanged)
        guard case .queued(let run) = try await tasks.observe(task: "ci", branch: "main", commit: commitB, queueOnFirstSight: false) else {
            Issue.record("no run queued")
            return
        }
        #expect(run.commit == commitB && run.trigger == "commit")
        // A new branch (the context changed) is recorded first, not run.
        #expect(try await tasks.observe(task: "ci", branch: "dev", commit: commitA, queueOnFirstSight: false) == .recorded)
        #expect(try await tasks.store.taskRuns(task: "ci", limit: 10).count == 1)
    }

    @Test func aPollOfARefusedAddressFailsBeforeGitRuns() async throws {
        let (_, tasks) = try await application()
        var record = TaskRecord(name: "ci", taskFile: Self.file, context: "http://127.0.0.1:9/app.git#main", schedule: nil,
                                values: [:], timeoutSeconds: 600, repositories: ["team/app"], createdBy: "t", createdAt: Date(),
                                updatedAt: Date())
        record.commitTriggerEnabled = true
        var configuration = tasks.configuration
        configuration.outbound = OutboundPolicy()          // the default: loopback refused
        configuration.checkout.git = "/nonexistent/git"   // never reached
        let service = CommitPollService(tasks: TaskService(store: tasks.store, configuration: configuration, logger: quiet))
        await #expect(throws: TaskError.self) { try await service.poll(record) }
        do { try await service.poll(record) } catch {
            #expect("\(error)".contains("context refused") && "\(error)".contains("loopback"), "\(error)")
        }
    }
}

