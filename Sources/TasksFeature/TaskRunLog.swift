import Foundation
import NIOPosix

extension TasksFeature {
    /// The last `limit` bytes of a run's log (empty when it wrote none yet), read on NIO's thread
    /// pool: for pages that show it (the web console, through the seam `berth serve` hands it).
    public func runLogTail(id: String, limit: Int) async throws -> [UInt8] {
        let path = tasks.logPath(id)
        return try await NIOThreadPool.singleton.runIfActive { () -> [UInt8] in
            guard let handle = FileHandle(forReadingAtPath: path) else { return [] }
            defer { try? handle.close() }
            let end = try handle.seekToEnd()
            try handle.seek(toOffset: end > UInt64(limit) ? end - UInt64(limit) : 0)
            return [UInt8](try handle.read(upToCount: limit) ?? Data())
        }
    }
}
