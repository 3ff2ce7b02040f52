import Foundation
import NIOPosix

extension TaskService {
    /// A run's log from `offset`, at most `limit` bytes: from the metadata store (every node has
    /// it), else from this node's `runs/<id>/logs/run.log` (runs from before the log was stored).
    func runLog(_ id: String, offset: Int64, limit: Int) async throws -> [UInt8] {
        if let stored = try await store.taskRunLog(id: id, offset: offset, limit: limit) { return stored }
        let path = logPath(id)
        return try await NIOThreadPool.singleton.runIfActive { () -> [UInt8] in
            guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(offset))
            return [UInt8](try handle.read(upToCount: limit) ?? Data())
        }
    }
}

extension TasksFeature {
    /// The last `limit` bytes of a run's log (empty when it wrote none yet), for pages that show
    /// it (the web console, through the seam `berth serve` hands it): the local file when this
    /// node ran it, else the stored log (at most `StoredRunLog.cap`).
    public func runLogTail(id: String, limit: Int) async throws -> [UInt8] {
        let path = tasks.logPath(id)
        let local = try await NIOThreadPool.singleton.runIfActive { () -> [UInt8]? in
            guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
            defer { try? handle.close() }
            let end = try handle.seekToEnd()
            try handle.seek(toOffset: end > UInt64(limit) ? end - UInt64(limit) : 0)
            return [UInt8](try handle.read(upToCount: limit) ?? Data())
        }
        if let local { return local }
        let stored = try await tasks.runLog(id, offset: 0, limit: Int(StoredRunLog.cap) + (64 << 10))
        return Array(stored.suffix(limit))
    }
}
