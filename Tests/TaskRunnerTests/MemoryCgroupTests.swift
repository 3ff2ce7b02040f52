import Foundation
import Tasks
import XCTest
@testable import TaskRunner

/// Where a build step's memory cgroup is made: this process's memory cgroup, found from
/// `/proc/self/cgroup` and `/proc/self/mountinfo` (cgroup v1's memory hierarchy, else v2's
/// unified tree when it has the memory controller).
final class MemoryCgroupTests: XCTestCase {
    static let v1MountInfo = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """
    static let v2MountInfo = """
        22 1 259:1 / / rw,relatime - ext4 /dev/root rw
        25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
        """

    func locate(_ cgroup: String, _ mountInfo: String, controllers: [String: String] = [:]) -> MemoryCgroups? {
        MemoryCgroups.locate(cgroup: cgroup, mountInfo: mountInfo) { controllers[$0] ?? "" }
    }

    func testCgroupV1FindsTheMemoryHierarchysGroup() {
        let cgroup = """
            9:name=systemd:/
            4:memory:/process_api/de5fa0a966c466175e9e8de53cb465b9
            1:cpu:/
            0::/
            """
        // A hybrid machine: the unified tree (no memory controller there) does not count.
        XCTAssertEqual(locate(cgroup, Self.v1MountInfo, controllers: ["/sys/fs/cgroup/unified/cgroup.controllers": ""]),
                       MemoryCgroups(version: .v1, directory: "/sys/fs/cgroup/memory/process_api/de5fa0a966c466175e9e8de53cb465b9"))
        // Controllers mounted together, and the root group.
        XCTAssertEqual(locate("3:cpu,memory:/a/b\n", "30 1 0:30 / /cg/cpu,memory rw - cgroup cgroup rw,cpu,memory\n"),
                       MemoryCgroups(version: .v1, directory: "/cg/cpu,memory/a/b"))
        XCTAssertEqual(locate("4:memory:/\n", Self.v1MountInfo), MemoryCgroups(version: .v1, directory: "/sys/fs/cgroup/memory"))
        // v1's memory hierarchy wins even when the unified tree lists memory.
        XCTAssertEqual(locate("4:memory:/x\n0::/y\n", Self.v1MountInfo,
                              controllers: ["/sys/fs/cgroup/unified/y/cgroup.controllers": "memory"])?.version, .v1)
    }

    func testCgroupV2NeedsTheMemoryController() {
        let cgroup = "0::/system.slice/berth.service\n"
        let controllers = "/sys/fs/cgroup/system.slice/berth.service/cgroup.controllers"
        XCTAssertEqual(locate(cgroup, Self.v2MountInfo, controllers: [controllers: "cpuset cpu io memory pids\n"]),
                       MemoryCgroups(version: .v2, directory: "/sys/fs/cgroup/system.slice/berth.service"))
        XCTAssertNil(locate(cgroup, Self.v2MountInfo, controllers: [controllers: "cpu io pids\n"]))
        XCTAssertNil(locate(cgroup, Self.v2MountInfo, controllers: [controllers: "memoryx\n"]))
        XCTAssertEqual(MemoryCgroups(version: .v2, directory: "/d").limitFile, "memory.max")
        XCTAssertEqual(MemoryCgroups(version: .v1, directory: "/d").limitFile, "memory.limit_in_bytes")
    }

    func testMountRootsEscapesAndNothingToFind() {
        // A cgroup namespace or bind mount shows the hierarchy from a group down.
        let nested = "50 1 0:32 /process_api /cg/memory rw - cgroup cgroup rw,memory\n"
        XCTAssertEqual(locate("4:memory:/process_api/abc\n", nested), MemoryCgroups(version: .v1, directory: "/cg/memory/abc"))
        XCTAssertEqual(locate("4:memory:/process_api\n", nested), MemoryCgroups(version: .v1, directory: "/cg/memory"))
        XCTAssertNil(locate("4:memory:/elsewhere/abc\n", nested))
        XCTAssertNil(locate("4:memory:/process_apiX\n", nested))
        // mountinfo's octal escapes.
        XCTAssertEqual(locate("4:memory:/g\n", #"50 1 0:32 / /cg/my\040memory rw - cgroup cgroup rw,memory"# + "\n"),
                       MemoryCgroups(version: .v1, directory: "/cg/my memory/g"))
        // No memory hierarchy and no unified mount; a path that climbs; garbage.
        XCTAssertNil(locate("1:cpu:/\n0::/\n", "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"))
        XCTAssertNil(locate("4:memory:/a/../../etc\n", Self.v1MountInfo))
        XCTAssertNil(locate("4:memory:relative\n", Self.v1MountInfo))
        XCTAssertNil(locate("", ""))
        XCTAssertNil(locate("not a cgroup file", "not mountinfo"))
    }

    /// A directory that is not a memory cgroup (no limit file to write) gives a reason, and
    /// nothing is left behind.
    func testCreatingWhereNoLimitCanBeSetSaysWhy() throws {
        let directory = try temporaryDirectory("cg")
        let cgroups = MemoryCgroups(version: .v1, directory: directory)
        guard case .failure(let error) = cgroups.create(name: "berth-build-x-0-0", limitBytes: 1 << 30) else {
            return XCTFail("a group was made in a plain directory")
        }
        XCTAssertEqual(error.description, "cannot set \(directory)/berth-build-x-0-0/memory.limit_in_bytes: No such file or directory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/berth-build-x-0-0"))
        guard case .failure(let missing) = MemoryCgroups(version: .v2, directory: directory + "/none").create(name: "g", limitBytes: 1) else {
            return XCTFail("a group was made in a missing directory")
        }
        XCTAssertEqual(missing.description, "cannot create \(directory)/none/g: No such file or directory")
    }

    /// The build command is moved into its cgroup by a shell that takes the path and the
    /// command as arguments.
    func testTheBuildIsStartedInsideItsCgroup() {
        let directory = RunDirectory(storageRoot: "/s", path: "/run/r1", runRoot: "/tmp/berth-run-x")
        let tools = ToolCommands(configuration: TaskRunnerConfiguration(stateDirectory: "/state"), directory: directory, hasCredentials: false)
        let build = ChildCommand(executable: "/usr/bin/unshare", arguments: ["--pid", "/usr/bin/buildah", "bud", "x; id"], environment: ["PATH": "/bin"])
        let confined = tools.inCgroup(build, procs: "/cg/memory/g/cgroup.procs")
        XCTAssertEqual(confined.executable, "/bin/sh")
        XCTAssertEqual(confined.arguments, ["-c", #"echo $$ > "$1" && shift && exec "$@""#, "sh", "/cg/memory/g/cgroup.procs",
                                            "/usr/bin/unshare", "--pid", "/usr/bin/buildah", "bud", "x; id"])
        XCTAssertEqual(confined.environment, build.environment)
    }
}
