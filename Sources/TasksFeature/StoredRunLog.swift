import Foundation
import Logging
import RegistryStore
import TaskRunner

/// A run's log kept in the metadata store as it grows, so every node of a cluster serves it
/// (`GET /api/v1/tasks/{name}/runs/{id}/log`, `berth task logs --follow`, the console), not only
/// the node that ran it (whose `runs/<id>/logs/run.log` stays the local copy). Lines (the secrets
/// already masked by the runner) are buffered and appended in chunks at most every `flushEvery`
/// or 64 KiB; at most `cap` bytes are stored, then one line says the rest is on the running node.
actor StoredRunLog: TaskLogSink {
    static let cap: Int64 = 8 << 20
    static let chunk = 64 << 10

    let store: any TaskStore
    let runID: String
    let node: String
    let logger: Logger
    let cap: Int64
    private var offset: Int64 = 0
    private var pending: [UInt8] = []
    private var truncated = false

    init(store: any TaskStore, runID: String, node: String, logger: Logger, cap: Int64 = StoredRunLog.cap) {
        self.store = store
        self.cap = cap
        self.runID = runID
        self.node = node
        self.logger = logger
    }

    func record(_ line: TaskLogLine) async {
        guard !truncated else { return }
        let bytes = Array((line.formatted + "\n").utf8)
        if offset + Int64(pending.count + bytes.count) > cap {
            let note = TaskLogLine(time: line.time, step: line.step, stream: .runner,
                                   text: "the stored log stops here (\(cap) bytes); the whole log is in runs/\(runID)/logs/run.log on node \(node)")
            pending += Array((note.formatted + "\n").utf8)
            truncated = true
            await flush()
            return
        }
        pending += bytes
        if pending.count >= Self.chunk { await flush() }
    }

    /// Appends what is buffered (called by the run's ticker and once at its end). A store
    /// failure keeps the bytes for the next flush.
    func flush() async {
        guard !pending.isEmpty else { return }
        let bytes = pending
        do {
            if try await store.appendTaskRunLog(id: runID, offset: offset, bytes: bytes) {
                offset += Int64(bytes.count)
                pending.removeFirst(bytes.count)
            } else {
                // Another writer (there is none: one node runs a run) or the run is gone: stop.
                logger.warning("a run's log could not be stored (its stored length moved, or the run is gone)", metadata: ["run": "\(runID)"])
                pending = []
                truncated = true
            }
        } catch {
            logger.warning("a run's log was not stored yet; retried", metadata: ["run": "\(runID)", "error": "\(error)"])
        }
    }
}
