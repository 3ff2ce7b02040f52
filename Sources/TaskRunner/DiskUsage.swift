import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The disk a run uses, for its quota (issue 16 item 6: a run "cannot fill the disk beyond a
/// per-run quota"): bytes allocated (`st_blocks`, so a sparse file counts what it really holds)
/// under a directory, links not followed, each inode counted once. A blocking walk: call it off
/// the event loops (`RunDiskQuota.usage` runs it on a thread pool).
public enum DiskUsage {
    /// Allocated bytes under `path` (0 when it does not exist). Stops after `maxEntries` entries
    /// and reports what it counted then: a tree that large is over any sensible quota anyway.
    public static func allocatedBytes(under path: String, maxEntries: Int = 1_000_000) -> Int64 {
        var seen = Set<UInt64>()   // inodes (one device per state directory)
        var total: Int64 = 0
        var entries = 0
        var pending = [path]
        while let directory = pending.popLast() {
            var info = stat()
            guard lstat(directory, &info) == 0 else { continue }
            if seen.insert(UInt64(info.st_ino)).inserted { total += Int64(info.st_blocks) * 512 }
            guard (info.st_mode & S_IFMT) == S_IFDIR, let handle = opendir(directory) else { continue }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                entries += 1
                if entries > maxEntries { return total }
                let child = directory + "/" + name
                var childInfo = stat()
                guard lstat(child, &childInfo) == 0 else { continue }
                if (childInfo.st_mode & S_IFMT) == S_IFDIR {
                    pending.append(child)
                } else if seen.insert(UInt64(childInfo.st_ino)).inserted {
                    total += Int64(childInfo.st_blocks) * 512
                }
            }
        }
        return total
    }
}

extension TaskRunnerConfiguration {
    /// The containers-storage root of a task (its layer cache, and the containers of its runs).
    public func taskStoragePath(_ taskName: String) -> String {
        RunDirectory.taskStorage(configuration: self, taskName: taskName)
    }

    /// A run's own directory (`runs/<id>`: its configuration, temporary files, logs).
    public func runDirectoryPath(_ runID: String) -> String {
        stateDirectory + "/runs/" + runID
    }
}
