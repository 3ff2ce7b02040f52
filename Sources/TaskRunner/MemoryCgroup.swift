import Foundation
import Glibc

/// Where this process's memory cgroup is, under which each build step gets a group of its own
/// with a memory limit (`buildah bud` with chroot isolation has none of its own).
///
/// cgroup v1: the hierarchy whose controllers include `memory` (`4:memory:/a/b` in
/// `/proc/self/cgroup`, mounted where `/proc/self/mountinfo` has a `cgroup` file system with the
/// `memory` option), limit in `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`, so swap
/// cannot stretch it). cgroup v2: the unified group (`0::/a/b`, a `cgroup2` mount) when its
/// `cgroup.controllers` lists `memory`, limit in `memory.max` (and `memory.swap.max` 0).
/// A v1 memory hierarchy wins over v2 (a hybrid machine's unified tree has no memory controller).
public struct MemoryCgroups: Sendable, Equatable {
    public enum Version: Sendable, Equatable { case v1, v2 }

    public var version: Version
    /// This process's own memory cgroup directory; build groups are made inside it.
    public var directory: String

    public init(version: Version, directory: String) { self.version = version; self.directory = directory }

    /// Reads `/proc/self/cgroup` and `/proc/self/mountinfo`; nil when no memory cgroup is found.
    public static func current() -> MemoryCgroups? {
        guard let cgroup = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
              let mountInfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
        return locate(cgroup: cgroup, mountInfo: mountInfo) { path in
            (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        }
    }

    /// The memory cgroup that `/proc/self/cgroup` and `/proc/self/mountinfo` (their text) name;
    /// `read` gives a v2 group's `cgroup.controllers`, which must list `memory`.
    static func locate(cgroup: String, mountInfo: String, read: (String) -> String) -> MemoryCgroups? {
        let mounts = mountInfo.split(separator: "\n").compactMap(CgroupMount.init)
        var unifiedPath: String?
        for line in cgroup.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            if fields[0] == "0", fields[1].isEmpty {
                unifiedPath = path
            } else if fields[1].split(separator: ",").contains("memory"),
                      let mount = mounts.first(where: { $0.type == "cgroup" && $0.options.contains("memory") }),
                      let directory = mount.directory(of: path) {
                return MemoryCgroups(version: .v1, directory: directory)
            }
        }
        if let unifiedPath, let mount = mounts.first(where: { $0.type == "cgroup2" }),
           let directory = mount.directory(of: unifiedPath),
           read(directory + "/cgroup.controllers").split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("memory") {
            return MemoryCgroups(version: .v2, directory: directory)
        }
        return nil
    }

    var limitFile: String { version == .v1 ? "memory.limit_in_bytes" : "memory.max" }
    var swapLimitFile: String { version == .v1 ? "memory.memsw.limit_in_bytes" : "memory.swap.max" }

    /// Makes the group `name` with `limitBytes`; the error says why not (the build then runs without).
    func create(name: String, limitBytes: Int64) -> Result<BuildCgroup, TaskRunError> {
        let group = BuildCgroup(cgroups: self, path: directory + "/" + name)
        if FileManager.default.fileExists(atPath: group.path) { rmdir(group.path) }   // a crashed run's
        guard mkdir(group.path, 0o755) == 0 else {
            return .failure(TaskRunError("cannot create \(group.path): \(String(cString: strerror(errno)))"))
        }
        if version == .v2, !FileManager.default.fileExists(atPath: group.path + "/" + limitFile) {
            // The memory controller is not enabled for this group's children; enabling it fails
            // while this process's own group holds processes (cgroup v2 has no internal processes).
            _ = Self.writeFile("+memory", to: directory + "/cgroup.subtree_control")
        }
        guard Self.writeFile(String(limitBytes), to: group.path + "/" + limitFile) else {
            let reason = String(cString: strerror(errno))
            rmdir(group.path)
            return .failure(TaskRunError("cannot set \(group.path)/\(limitFile): \(reason)"))
        }
        // Without swap accounting the file is absent and the limit is RAM's alone.
        if FileManager.default.fileExists(atPath: group.path + "/" + swapLimitFile) {
            _ = Self.writeFile(version == .v1 ? String(limitBytes) : "0", to: group.path + "/" + swapLimitFile)
        }
        return .success(group)
    }

    static func writeFile(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}

/// One build step's memory cgroup.
struct BuildCgroup: Sendable {
    let cgroups: MemoryCgroups
    let path: String

    /// Writing a PID here moves that process (and the children it starts after) into the group.
    var procs: String { path + "/cgroup.procs" }

    /// How many times the kernel killed a process of the group for going over the limit
    /// (`oom_kill` of v1's `memory.oom_control`, v2's `memory.events`); nil if it does not say.
    func oomKills() -> Int? {
        let file = cgroups.version == .v1 ? "memory.oom_control" : "memory.events"
        guard let text = try? String(contentsOfFile: path + "/" + file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == "oom_kill" { return Int(words[1]) }
        }
        return nil
    }

    /// Kills what is left of the build in the group and removes it (a moment's wait for processes
    /// still exiting); the error says why it could not.
    func remove() async -> TaskRunError? {
        for attempt in 0..<100 {
            if rmdir(path) == 0 || errno == ENOENT { return nil }
            guard errno == EBUSY else { return TaskRunError("cannot remove \(path): \(String(cString: strerror(errno)))") }
            let left = ((try? String(contentsOfFile: procs, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { pid_t($0) }
            for pid in left where pid > 1 { kill(pid, SIGKILL) }
            if attempt < 99 { try? await Task.sleep(for: .milliseconds(100)) }
        }
        return TaskRunError("cannot remove \(path): processes are still in it")
    }
}

/// A line of `/proc/self/mountinfo` that mounts a cgroup file system.
struct CgroupMount {
    /// The path inside the hierarchy that is mounted (`/` unless a cgroup namespace or bind mount).
    var root: String
    var mountPoint: String
    var type: String
    var options: [Substring]

    /// `36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory`
    init?(_ line: Substring) {
        let parts = line.split(separator: " - ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        let before = parts[0].split(separator: " ")
        let after = parts[1].split(separator: " ")
        guard before.count >= 5, after.count >= 3, after[0] == "cgroup" || after[0] == "cgroup2" else { return nil }
        root = Self.unescape(before[3])
        mountPoint = Self.unescape(before[4])
        type = String(after[0])
        options = after[2].split(separator: ",")
    }

    /// Where the group `path` (as `/proc/self/cgroup` names it) is under this mount; nil when
    /// the mount does not show it.
    func directory(of path: String) -> String? {
        guard path.hasPrefix("/"), !path.split(separator: "/").contains(".."), !path.contains("\n") else { return nil }
        let base = mountPoint == "/" ? "" : mountPoint
        if root == "/" { return path == "/" ? mountPoint : base + path }
        if path == root { return mountPoint }
        guard path.hasPrefix(root + "/") else { return nil }
        return base + path.dropFirst(root.count)
    }

    /// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
    static func unescape(_ s: Substring) -> String {
        guard s.contains("\\") else { return String(s) }
        var out: [UInt8] = []
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x5c, i + 3 < bytes.count, let value = UInt8(String(decoding: bytes[i + 1...i + 3], as: UTF8.self), radix: 8) {
                out.append(value); i += 4
            } else {
                out.append(bytes[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
