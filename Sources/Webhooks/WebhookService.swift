import Access
import AsyncHTTPClient
import Crypto
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import OCIModel
import RegistryCore
import RegistryStore

/// A webhook as the management API shows it: never its secret, and its custom headers by name
/// only (their values, often credentials, show as `***`).
public struct WebhookView: Codable, Sendable, Equatable {
    public var name: String
    public var uri: String
    public var actions: [String]
    public var scope: String?
    public var headers: [String: String]
    public var status: String
    public var createdAt: Date
    public var pendingAttempts: Int
}

public enum WebhookError: Error, Equatable, Sendable {
    case invalid(String)
    case notFound(String)
    case conflict(String)
}

/// Webhooks fed by the event log: each webhook is an event consumer of the one runner
/// (`webhook:<name>`, its cursor in the database) and receives, in order and at least once,
/// every event after it that matches its actions and scope. A push never waits for a webhook. Payloads follow the cloud registry's shape and carry an
/// HMAC-SHA256 signature made with the webhook's own secret.
public final class WebhookService: Sendable {
    public static let actions = ["push", "delete", "quarantine", "scan", "ping"]
    public static let signatureHeader = "X-Berth-Signature-256"
    /// Delivery attempts kept per webhook: the newest, older ones dropped as a new one is recorded.
    public static let keptDeliveries = 1000

    let store: any WebhookStore
    let events: any EventLogStore
    let sealingKey: SymmetricKey
    let logger: Logger
    /// Where deliveries may go; checked when a webhook is set up and again at every delivery.
    let policy: OutboundPolicy
    /// Attempts per event before it is recorded as failed and skipped.
    let maxAttempts: Int
    let deliveryTimeout: TimeAmount
    let backoffBase: Double

    /// A service whose sealing key is this process's own, in `keyDirectory` (one process, tests).
    /// A registry shares it: see `sharedSealingKey`.
    public convenience init(store: any WebhookStore, events: any EventLogStore, keyDirectory: String, policy: OutboundPolicy = OutboundPolicy(),
                            maxAttempts: Int = 10, deliveryTimeout: TimeAmount = .seconds(10), backoffBase: Double = 1,
                            logger: Logger = Logger(label: "berth.webhooks")) throws {
        self.init(store: store, events: events, sealingKey: try Self.loadOrCreateKey(directory: keyDirectory), policy: policy,
                  maxAttempts: maxAttempts, deliveryTimeout: deliveryTimeout, backoffBase: backoffBase, logger: logger)
    }

    public init(store: any WebhookStore, events: any EventLogStore, sealingKey: SymmetricKey, policy: OutboundPolicy = OutboundPolicy(),
                maxAttempts: Int = 10, deliveryTimeout: TimeAmount = .seconds(10), backoffBase: Double = 1,
                logger: Logger = Logger(label: "berth.webhooks")) {
        self.store = store
        self.events = events
        self.sealingKey = sealingKey
        self.policy = policy
        self.maxAttempts = maxAttempts
        self.deliveryTimeout = deliveryTimeout
        self.backoffBase = backoffBase
        self.logger = logger
    }

    /// The name of the sealing key in the key material store.
    public static let keyMaterialName = "webhook-sealing-key"

    /// The key that seals webhook secrets and header values, shared by every node of the registry
    /// (created once). An installation from before it was shared has it in `<importing>/webhook-secrets.key`:
    /// that one is imported, so what it sealed keeps opening.
    public static func sharedSealingKey(_ shared: SharedKeyMaterial, importing directory: String? = nil) async throws -> SymmetricKey {
        let loaded = try await shared.loadOrCreate(keyMaterialName) {
            if let directory, let data = FileManager.default.contents(atPath: directory + "/webhook-secrets.key"), data.count == 32 {
                return data
            }
            return SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }
        }
        guard loaded.plaintext.count == 32 else { throw KeyMaterialError("the stored webhook sealing key is not 32 bytes") }
        // Imported (or the same key already shared): the clear copy on this node's disk goes.
        if let directory, FileManager.default.contents(atPath: directory + "/webhook-secrets.key") == loaded.plaintext {
            try? FileManager.default.removeItem(atPath: directory + "/webhook-secrets.key")
        }
        return SymmetricKey(data: loaded.plaintext)
    }

    static func loadOrCreateKey(directory: String) throws -> SymmetricKey {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = directory + "/webhook-secrets.key"
        if let data = fm.contents(atPath: path), data.count == 32 { return SymmetricKey(data: data) }
        let key = SymmetricKey(size: .bits256)
        let data = key.withUnsafeBytes { Data($0) }
        guard fm.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw WebhookError.invalid("cannot write \(path)")
        }
        return key
    }

    /// Secrets and header values are sealed bound to what they belong to (the webhook's name and
    /// the field), so a sealed value copied in the database onto another webhook or field does not
    /// open. Sealed values carry this format byte first; values sealed before (no byte, nothing
    /// bound) still open, and are sealed the new way when the webhook's headers are next set.
    static let boundFormat: UInt8 = 2

    static func context(_ webhook: String, _ field: String) -> Data {
        Data("berth-webhook:\(webhook.utf8.count):\(webhook):\(field)".utf8)
    }

    /// Seals `secret` for `field` of `webhook`.
    func seal(_ secret: String, webhook: String, field: String) throws -> Data {
        let box = try AES.GCM.seal(Data(secret.utf8), using: sealingKey, authenticating: Self.context(webhook, field))
        return Data([Self.boundFormat]) + box.combined!
    }

    /// Seals without binding: how values were sealed before (kept for tests of stored old data).
    func seal(_ secret: String) throws -> Data {
        try AES.GCM.seal(Data(secret.utf8), using: sealingKey).combined!
    }

    /// What `seal(_:webhook:field:)` sealed for that webhook and field, or nil.
    private func openBound(_ sealed: Data, webhook: String, field: String) -> String? {
        guard sealed.first == Self.boundFormat, let box = try? AES.GCM.SealedBox(combined: sealed.dropFirst()),
              let plain = try? AES.GCM.open(box, using: sealingKey, authenticating: Self.context(webhook, field)) else { return nil }
        return String(decoding: plain, as: UTF8.self)
    }

    /// Opens what `seal(_:webhook:field:)` sealed for that webhook and field, or an old unbound value.
    func unseal(_ sealed: Data, webhook: String, field: String) throws -> String {
        if let plain = openBound(sealed, webhook: webhook, field: field) { return plain }
        // An old value: bound to nothing. (A bound value never opens this way: its first byte is
        // not part of a nonce, so the tag does not match.)
        return try unseal(sealed)
    }

    func unseal(_ sealed: Data) throws -> String {
        String(decoding: try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: sealingKey), as: UTF8.self)
    }

    /// Custom header values are stored sealed like the secret, marked with a prefix (values stored
    /// before they were sealed have none and are sent as stored): `v2` bound to the webhook and the
    /// header's name, `v1` (older) bound to nothing.
    static let sealedHeaderPrefix = "sealed:v2:"
    static let oldSealedHeaderPrefix = "sealed:v1:"
    static let redacted = "***"

    func sealHeaders(_ headers: [String: String], webhook: String) throws -> [String: String] {
        var sealed: [String: String] = [:]
        for (name, value) in headers {
            sealed[name] = Self.sealedHeaderPrefix + (try seal(value, webhook: webhook, field: "header:" + name.lowercased())).base64EncodedString()
        }
        return sealed
    }

    func unsealHeaders(_ headers: [String: String], webhook: String) throws -> [String: String] {
        var opened: [String: String] = [:]
        for (name, value) in headers {
            let bound = value.hasPrefix(Self.sealedHeaderPrefix)
            guard bound || value.hasPrefix(Self.oldSealedHeaderPrefix) else { opened[name] = value; continue }
            guard let sealed = Data(base64Encoded: String(value.dropFirst(Self.sealedHeaderPrefix.count))) else {
                throw WebhookError.invalid("a stored header value is damaged")
            }
            if bound {
                guard let plain = openBound(sealed, webhook: webhook, field: "header:" + name.lowercased()) else {
                    throw WebhookError.invalid("a stored header value of webhook \(webhook) does not open")
                }
                opened[name] = plain
            } else {
                opened[name] = try unseal(sealed)
            }
        }
        return opened
    }

    /// The view of a webhook; its pending attempts are its consumer's failed attempts at the next batch.
    func view(_ r: WebhookRecord) async throws -> WebhookView {
        let attempts = try await events.eventConsumer(named: WebhookConsumer.name(r.name))?.attempts ?? 0
        return WebhookView(name: r.name, uri: r.uri, actions: r.actions, scope: r.scope, headers: r.headers.mapValues { _ in Self.redacted },
                           status: r.enabled ? "enabled" : "disabled", createdAt: r.createdAt, pendingAttempts: attempts)
    }

    // MARK: management

    /// The webhook actions of build-task runs (their event actions' names).
    static let taskRunActions = [EventAction.taskRunQueued, .taskRunStarted, .taskRunSucceeded, .taskRunFailed,
                                 .taskRunCancelled].map(\.rawValue)

    static func validate(name: String?, uri: String?, actions: [String]?, scope: String?, headers: [String: String]?) throws(WebhookError) {
        if let name {
            guard !name.isEmpty, name.count <= 64,
                  name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x5f })
            else { throw .invalid("webhook names are 1-64 characters of a-z, 0-9, '-', '_'") }
        }
        if let uri {
            guard let url = URL(string: uri), url.scheme == "http" || url.scheme == "https", url.host != nil else {
                throw .invalid("uri must be an http(s) URL")
            }
        }
        if let actions {
            guard !actions.isEmpty else { throw .invalid("at least one action is needed") }
            for a in actions where !(["push", "delete", "quarantine", "scan"] + taskRunActions).contains(a) {
                throw .invalid("unknown action \(a); actions: push, delete, quarantine, scan, " + taskRunActions.joined(separator: ", "))
            }
        }
        if let scope, scope.isEmpty || scope.count > 300 { throw .invalid("scope must be repository:tag, e.g. 'payments/*:*'") }
        for (k, v) in headers ?? [:] {
            guard !k.isEmpty, k.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != 0x3a }), !v.contains("\r"), !v.contains("\n") else {
                throw .invalid("invalid header \(k.prefix(40))")
            }
        }
    }

    /// Refuses a target the outbound policy forbids (400 with the reason).
    func checkTarget(_ uri: String) async throws(WebhookError) {
        do {
            try await policy.checkTarget(uri)
        } catch {
            throw .invalid("uri refused: \(error.message)")
        }
    }

    public func list() async throws -> [WebhookView] {
        var views: [WebhookView] = []
        for hook in try await store.webhooks() { views.append(try await view(hook)) }
        return views
    }

    /// Per enabled webhook: events in the log after its cursor (its backlog; events that do not
    /// concern it are passed quickly) — the lag of this event consumer.
    public func latestEventSequence() async throws -> Int64 { try await events.latestEventSequence() }

    public func backlog() async throws -> [(name: String, events: Int64)] {
        let latest = try await events.latestEventSequence()
        var backlog: [(name: String, events: Int64)] = []
        for hook in try await store.webhooks() where hook.enabled {
            let cursor = try await events.eventConsumer(named: WebhookConsumer.name(hook.name))?.cursor ?? latest
            backlog.append((hook.name, max(0, latest - cursor)))
        }
        return backlog
    }

    public func get(_ name: String) async throws -> WebhookView {
        guard let r = try await store.webhook(named: name) else { throw WebhookError.notFound("webhook \(name)") }
        return try await view(r)
    }

    /// Creates a webhook and returns its signing secret (shown once; stored sealed).
    public func create(name: String, uri: String, actions: [String], scope: String?, headers: [String: String],
                       enabled: Bool) async throws -> (WebhookView, secret: String) {
        try Self.validate(name: name, uri: uri, actions: actions, scope: scope, headers: headers)
        try await checkTarget(uri)
        var bytes = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        let secret = Hex.encode(bytes)
        let record = WebhookRecord(name: name, uri: uri, actions: actions, scope: scope, headers: try sealHeaders(headers, webhook: name),
                                   sealedSecret: try seal(secret, webhook: name, field: "secret"), enabled: enabled, createdAt: Date())
        // It starts at the end of the log: what happened before it is not sent.
        guard try await store.createWebhook(record, consumer: WebhookConsumer.name(name)) else {
            throw WebhookError.conflict("webhook \(name) exists")
        }
        return await (try get(name), secret)
    }

    public func update(name: String, uri: String?, actions: [String]?, scope: String??, headers: [String: String]?,
                       enabled: Bool?) async throws -> WebhookView {
        try Self.validate(name: nil, uri: uri, actions: actions, scope: scope ?? nil, headers: headers)
        if let uri { try await checkTarget(uri) }
        // A disabled webhook enabled again starts at the end of the event log: what happened while
        // it was off is not replayed. The store decides whether this call re-enables it, inside the
        // transaction that switches it, and moves its consumer in the same step (a decision from an
        // earlier read could miss a disable that happened meanwhile).
        guard try await store.updateWebhook(name: name, uri: uri, actions: actions, scope: scope, headers: try headers.map { try sealHeaders($0, webhook: name) },
                                            enabled: enabled, restartConsumerIfReenabled: WebhookConsumer.name(name)) else {
            throw WebhookError.notFound("webhook \(name)")
        }
        return try await get(name)
    }

    public func delete(name: String) async throws {
        guard try await store.deleteWebhook(name: name) else { throw WebhookError.notFound("webhook \(name)") }
        _ = try await events.deleteEventConsumer(name: WebhookConsumer.name(name))
    }

    public func deliveries(name: String, limit: Int) async throws -> [WebhookDelivery] {
        _ = try await get(name)
        return try await store.deliveries(webhook: name, limit: limit)
    }

    /// Sends a `ping` now and records it.
    public func ping(name: String) async throws -> WebhookDelivery {
        guard let hook = try await store.webhook(named: name) else { throw WebhookError.notFound("webhook \(name)") }
        let payload = Payload(id: UUID().uuidString.lowercased(), timestamp: Date(), action: "ping", target: nil, request: nil)
        var delivery = await deliver(hook, payload: payload, eventSequence: nil, attempt: 1)
        delivery.id = try await store.recordDelivery(delivery, keep: Self.keptDeliveries)
        return delivery
    }

    // MARK: payloads

    struct Payload: Encodable {
        struct Target: Encodable {
            var mediaType: String?
            var size: Int64?
            var digest: String?
            var length: Int64?
            var repository: String
            var tag: String?
        }
        struct Request: Encodable {
            var id: String?
            var host: String?
            var method: String?
            var useragent: String?
        }
        var id: String
        var timestamp: Date
        var action: String
        var target: Target?
        var request: Request?
        /// A build task's run (`task.run.*` actions): the task and the run's id.
        var run: Run?
        /// New High or Critical findings (`scan`): counts by severity, the new ids, the image's tags.
        var scan: ScanEventDetail?
        struct Run: Encodable {
            var task: String
            var id: String
        }
    }

    /// The webhook action an event stands for, if any. A push by tag is one `tag.move`; a push
    /// by digest is a `push` without a tag.
    static func webhookAction(for event: Event) -> String? {
        switch event.action {
        case .tagMove: "push"
        case .manifestPush: event.tag == nil ? "push" : nil
        case .manifestDelete: "delete"
        case .tagDelete: event.detail == EventAction.cascadeDetail ? nil : "delete"
        case .quarantine: "quarantine"
        case .scan: "scan"
        case .taskRunQueued, .taskRunStarted, .taskRunSucceeded, .taskRunFailed, .taskRunCancelled: event.action.rawValue
        // `access` (issue 13's access registers) is never delivered: identities and tokens are no webhook's business.
        case .blobPush, .blobDelete, .setting, .restore, .purgeRun, .retentionRun, .gcRun, .softDeleteExpire, .lock, .access, .registerMark: nil
        }
    }

    static func payload(for event: Event, action: String) -> Payload {
        Payload(id: "event-\(event.sequence)", timestamp: event.timestamp, action: action,
                target: .init(mediaType: event.mediaType, size: event.size, digest: event.digest, length: event.size,
                              repository: event.repository, tag: event.tag),
                request: .init(id: event.requestID, host: event.requestHost, method: event.requestMethod, useragent: event.userAgent),
                run: runTarget(event),
                scan: event.action == .scan ? event.detail.flatMap { try? JSONDecoder().decode(ScanEventDetail.self, from: Data($0.utf8)) } : nil)
    }

    /// The task and run of a `task.run.*` event (its detail is `<task>/<run id>`).
    static func runTarget(_ event: Event) -> Payload.Run? {
        guard event.action.rawValue.hasPrefix("task.run."), let detail = event.detail,
              let slash = detail.lastIndex(of: "/") else { return nil }
        return Payload.Run(task: String(detail[..<slash]), id: String(detail[detail.index(after: slash)...]))
    }

    /// `repository-pattern:tag-pattern` with `*` matching any run of characters.
    static func matches(scope: String?, repository: String, tag: String?) -> Bool {
        guard let scope else { return true }
        let parts = scope.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let repoPattern = parts[0]
        let tagPattern = parts.count > 1 ? parts[1] : "*"
        return glob(repoPattern, repository) && (tag.map { glob(tagPattern, $0) } ?? (tagPattern == "*"))
    }

    static func glob(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.utf8), t = Array(text.utf8)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == t[ti] { pi += 1; ti += 1 }
            else if pi < p.count, p[pi] == UInt8(ascii: "*") { star = pi; mark = ti; pi += 1 }
            else if star >= 0 { pi = star + 1; mark += 1; ti = mark }
            else { return false }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func signature(_ body: Data, secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        return "sha256=" + Hex.encode(mac)
    }

    func deliver(_ hook: WebhookRecord, payload: Payload, eventSequence: Int64?, attempt: Int) async -> WebhookDelivery {
        let body = (try? Self.encoder.encode(payload)) ?? Data()
        let text = String(decoding: body, as: UTF8.self)
        let start = ContinuousClock.now
        func finish(_ status: Int?, _ error: String?) -> WebhookDelivery {
            let d = ContinuousClock.now - start
            let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
            return WebhookDelivery(webhook: hook.name, eventSequence: eventSequence, action: payload.action, attempt: attempt,
                                   statusCode: status, latencyMilliseconds: ms, error: error, payload: text)
        }
        do {
            let secret = try unseal(hook.sealedSecret, webhook: hook.name, field: "secret")
            var request = HTTPClientRequest(url: hook.uri)
            request.method = .POST
            for (k, v) in try unsealHeaders(hook.headers, webhook: hook.name) { request.headers.replaceOrAdd(name: k, value: v) }
            request.headers.replaceOrAdd(name: "Content-Type", value: "application/json")
            request.headers.replaceOrAdd(name: "User-Agent", value: "berth-webhook/1")
            request.headers.replaceOrAdd(name: Self.signatureHeader, value: Self.signature(body, secret: secret))
            request.headers.replaceOrAdd(name: "X-Berth-Event", value: payload.action)
            request.headers.replaceOrAdd(name: "X-Berth-Delivery", value: payload.id)
            request.body = .bytes(ByteBuffer(bytes: body))
            // Checked again now (the name may resolve elsewhere than when the webhook was set up),
            // sent to the address checked, and a redirect is an answer, never followed.
            let (code, _) = try await policy.send(request, timeout: deliveryTimeout, bodyLimit: 64 * 1024)
            return finish(code, (200..<300).contains(code) ? nil : "HTTP \(code)")
        } catch let refused as OutboundRefused {
            return finish(nil, "refused: " + refused.message.prefix(300))
        } catch {
            return finish(nil, String(describing: error).prefix(300).description)
        }
    }

    // MARK: dispatching

    /// The runner of one webhook's consumer: retries with the webhook's backoff (doubling up to
    /// 5 minutes), its lag in `berth_event_consumer_lag_events{consumer="webhook:<name>"}`. Made
    /// afresh for each drain, so a webhook re-created under the same name starts from its own
    /// cursor. Small batches: the cursor moves after each, so a crash resends at most one batch's
    /// deliveries (receivers can tell by `X-Berth-Delivery`).
    func runner(_ hook: WebhookRecord) -> EventConsumerRunner {
        EventConsumerRunner(consumer: WebhookConsumer(service: self, webhook: hook.name),
                            store: events, batchSize: 20, backoffBase: backoffBase, backoffMax: 300, logger: logger)
    }

    /// Works through one webhook's backlog: delivers matching events in order until the log is
    /// exhausted or a delivery fails (then it waits for its backoff). Returns whether it did work.
    @discardableResult
    func drain(_ name: String, now: Date = Date()) async throws -> Bool {
        guard let hook = try await store.webhook(named: name), hook.enabled else { return false }
        let runner = runner(hook)
        var worked = false
        while true {
            switch try await runner.step(now: now) {
            case .advanced: worked = true
            case .failed: return true
            case .idle: return worked
            }
        }
    }

    /// Delivers `events` (oldest first) to `hook`: those that do not concern it are passed; a
    /// failed delivery stops the batch (retried after a backoff) unless it was the last attempt
    /// allowed, then it stays recorded as failed and the webhook goes on.
    func deliver(_ events: [Event], to hook: WebhookRecord, firstAttempt: Int) async throws {
        var handled: Int64?
        for (i, event) in events.enumerated() {
            guard let action = Self.webhookAction(for: event), hook.actions.contains(action),
                  Self.matches(scope: hook.scope, repository: event.repository, tag: event.tag) else {
                handled = event.sequence
                continue
            }
            let attempt = i == 0 ? firstAttempt : 1
            let delivery = await deliver(hook, payload: Self.payload(for: event, action: action), eventSequence: event.sequence,
                                         attempt: attempt)
            WebhookMetrics.attempt(failed: delivery.error != nil, abandoned: delivery.error != nil && attempt >= maxAttempts)
            if delivery.error == nil || attempt >= maxAttempts {
                if delivery.error != nil {
                    logger.warning("webhook delivery abandoned", metadata: ["webhook": "\(hook.name)", "event": "\(event.sequence)"])
                }
                try await store.recordDelivery(delivery, keep: Self.keptDeliveries)
                handled = event.sequence
            } else {
                try await store.recordDelivery(delivery, keep: Self.keptDeliveries)
                throw EventBatchStopped(handledThrough: handled, error: WebhookDeliveryFailed(message: delivery.error ?? "failed"))
            }
        }
    }
}

struct WebhookDeliveryFailed: Error, CustomStringConvertible {
    let message: String
    var description: String { "delivery failed: \(message)" }
}

/// One webhook as an event consumer. Its cursor is the runner's (`webhook:<name>`), started at the
/// end of the log when the webhook is created or enabled again (by the store, with that change);
/// a registry upgraded from before the runner had its webhooks' own cursors handed over by a
/// migration. A disabled webhook is switched off: its cursor waits.
struct WebhookConsumer: EventConsumer {
    static func name(_ webhook: String) -> String { "webhook:" + webhook }

    let service: WebhookService
    let webhook: String

    var name: String { Self.name(webhook) }
    /// The store registers the consumer with the webhook (and a migration did for webhooks from
    /// before the runner); one missing anyway starts with what happens next.
    var start: EventConsumerStart { .end }

    func isActive() async throws -> Bool { try await service.store.webhook(named: webhook)?.enabled ?? false }

    func handle(_ events: [Event]) async throws { try await handle(events, attempt: 1) }

    func handle(_ events: [Event], attempt: Int) async throws {
        guard let hook = try await service.store.webhook(named: webhook), hook.enabled else {
            throw EventBatchStopped(handledThrough: nil, error: WebhookError.notFound("webhook \(webhook)"))
        }
        try await service.deliver(events, to: hook, firstAttempt: attempt)
    }
}
