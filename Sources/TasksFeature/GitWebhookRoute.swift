import Access
import BerthAPIContract
import Foundation
import HTTPAPI
import Hummingbird
import RegistryStore

extension TaskService {
    var secrets: TaskSecrets { TaskSecrets(key: configuration.sealingKey) }

    /// Turns the record's commit trigger on or off as asked (nil: unchanged). Turning it on for a
    /// task without a webhook secret makes one: returned (to show once), stored sealed.
    func setCommitTrigger(_ record: inout TaskRecord, enabled: Bool?) throws -> String? {
        guard let enabled else { return nil }
        let wasOn = record.commitTriggerEnabled == true
        record.commitTriggerEnabled = enabled
        // Turned on again after being off: a new secret, so a leaked one can be retired by
        // turning the trigger off and on (found in review: the old secret stayed valid for ever).
        guard enabled, !wasOn || record.gitWebhookSecret == nil else { return nil }
        let secret = Secrets.generate()
        record.gitWebhookSecret = try secrets.seal(secret, task: record.name)
        return secret
    }
}

extension TasksFeature {
    /// `POST /api/v1/tasks/{name}/git-webhook`: a git server's push webhook. Not behind the
    /// management check (a git server has no Berth credentials): the task's own secret
    /// authenticates it (`GitWebhook.verify`), and nothing in the request is read before that but
    /// its bounded body. An unknown task, one without the trigger and a bad signature get the same
    /// 403 (or 401 without any signature), so the endpoint tells nothing to whoever lacks the secret.
    static func addGitWebhookRoute(to routes: FeatureRoutes, tasks: TaskService) {
        let server = routes.server
        routes.root.post("api/v1/tasks/:name/git-webhook") { request, context -> Response in
            let name = try context.parameters.require("name")
            var request = request
            let body: [UInt8]
            do {
                let buffer = try await request.collectBody(upTo: GitWebhook.maxBodyBytes)
                body = Array(buffer.readableBytesView)
            } catch {
                throw ManagementError(status: .contentTooLarge, code: "TOO_LARGE",
                                      message: "the webhook's body is larger than \(GitWebhook.maxBodyBytes) bytes")
            }
            let denied = ManagementError(status: .forbidden, code: "DENIED",
                                         message: "the webhook's signature does not verify for this task")
            let task = try await tasks.store.task(named: name)
            let secret = task?.gitWebhookSecret.flatMap { tasks.secrets.open($0, task: name) }
            do throws(GitWebhook.Refusal) {
                // Checked against a throwaway secret when there is none, so an unknown task costs the same.
                _ = try GitWebhook.verify(request.headers, body: body, secret: secret ?? Secrets.generate())
            } catch {
                guard error == .unsigned else { throw denied }
                throw ManagementError(status: .unauthorized, code: "UNAUTHORIZED",
                                      message: "the webhook is not signed (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)")
            }
            guard let task, secret != nil, task.commitTriggerEnabled == true, let contextText = task.context else { throw denied }
            guard task.enabled else { throw TaskError.conflict("task \(name) is disabled") }
            guard GitWebhook.isPush(GitWebhook.event(request.headers)) else {
                return server.json(GitWebhookAnswer(queued: false, run: nil, reason: "not a push event"))
            }
            let push: GitWebhook.Push
            do throws(GitWebhook.PayloadError) { push = try GitWebhook.parsePush(body) } catch {
                throw TaskError.invalid(error.description)
            }
            let git = try GitContext(parsing: contextText)
            guard push.branch == git.branch else {
                return server.json(GitWebhookAnswer(queued: false, run: nil, reason: "a push to \(push.ref), not to the task's branch"))
            }
            guard !push.deletes else {
                return server.json(GitWebhookAnswer(queued: false, run: nil, reason: "the push deleted the branch"))
            }
            // The signature covers the body only, so an old delivery can be replayed: the push is
            // a hint, and only the branch's head as the repository answers now is queued (found in
            // review: a replayed delivery moved the task back to an old commit and rebuilt it).
            let destination: OutboundPolicy.Destination
            do throws(OutboundRefused) { destination = try await tasks.configuration.outbound.check(git.url) } catch {
                throw TaskError.invalid("context refused: \(error.message)")
            }
            let head: String?
            do { head = try await tasks.configuration.checkout.headCommit(url: git.url, branch: git.branch, resolve: try destination.gitPin) }
            catch let error as TaskError { throw error }
            catch { throw TaskError.conflict("cannot confirm the pushed commit with the repository: \(error)") }
            guard head == push.after else {
                return server.json(GitWebhookAnswer(queued: false, run: nil,
                                                    reason: "commit \(push.after) is not the head of \(git.branch) (a stale or replayed delivery)"))
            }
            switch try await tasks.observe(task: name, branch: git.branch, commit: push.after, queueOnFirstSight: true) {
            case .queued(let run):
                tasks.logger.info("push webhook queued a run", metadata: ["task": "\(name)", "run": "\(run.id)", "commit": "\(push.after)"])
                return server.json(GitWebhookAnswer(queued: true, run: TaskRunView(run), reason: nil), status: .accepted)
            case .unchanged, .recorded:
                return server.json(GitWebhookAnswer(queued: false, run: nil, reason: "commit \(push.after) was seen before"))
            case .lost:
                throw TaskError.conflict("the task's commit changed while the webhook was handled; deliver it again")
            }
        }
    }
}
