import Foundation
import XCTest
@testable import TaskRunner

/// The child-process layer on its own, with /bin/sh.
final class ChildProcessTests: XCTestCase {
    /// A timeout kills the whole process group: the shell and what it started in the background.
    func testATimeoutKillsTheWholeProcessGroup() async throws {
        let command = ChildCommand(executable: "/bin/sh", arguments: ["-c", "sleep 317 & echo started; sleep 318"],
                                   environment: ["PATH": "/usr/bin:/bin"])
        let outcome = await ChildProcess.run(command, timeout: .seconds(1)) { _, _ in }
        XCTAssertEqual(outcome, .timedOut)
        try await assertNoProcess(["sleep", "317"])
        try await assertNoProcess(["sleep", "318"])
    }

    /// A member of the group that ignores SIGTERM is killed too, though the leader died of it.
    func testAGroupMemberIgnoringSIGTERMIsKilledToo() async throws {
        let command = ChildCommand(executable: "/bin/sh", arguments: ["-c", #"(trap "" TERM; exec sleep 319) & sleep 320"#],
                                   environment: ["PATH": "/usr/bin:/bin"])
        let outcome = await ChildProcess.run(command, timeout: .seconds(1)) { _, _ in }
        XCTAssertEqual(outcome, .timedOut)
        try await assertNoProcess(["sleep", "319"])
        try await assertNoProcess(["sleep", "320"])
    }

    /// Output comes line by line from both streams, a long line is cut, the exit code is kept,
    /// and the environment is exactly the one given.
    func testLinesExitCodesAndEnvironment() async throws {
        actor Lines { var all: [(LogStream, String)] = []; func add(_ s: LogStream, _ t: String) { all.append((s, t)) } }
        let lines = Lines()
        let command = ChildCommand(
            executable: "/bin/sh",
            arguments: ["-c", #"echo "one $GREETING"; echo two >&2; head -c 20000 /dev/zero | tr '\0' x; echo; env | sort; exit 42"#],
            environment: ["PATH": "/usr/bin:/bin", "GREETING": "hello; $(id)"])
        let outcome = await ChildProcess.run(command, timeout: .seconds(60)) { await lines.add($0, $1) }
        XCTAssertEqual(outcome, .exited(42))
        let all = await lines.all
        XCTAssertEqual(all.first { $0.0 == .stdout }?.1, "one hello; $(id)")
        XCTAssertTrue(all.contains { $0.0 == .stderr && $0.1 == "two" })
        let long = all.filter { $0.0 == .stdout && $0.1.hasPrefix("xxx") }.map(\.1)
        XCTAssertEqual(long.map(\.count), [ChildProcess.maxLineBytes, 20000 - ChildProcess.maxLineBytes])
        let env = all.filter { $0.0 == .stdout && $0.1.contains("=") && !$0.1.hasPrefix("one") }.map(\.1)
        XCTAssertEqual(env.filter { !$0.hasPrefix("PWD=") && !$0.hasPrefix("SHLVL=") && !$0.hasPrefix("_=") },
                       ["GREETING=hello; $(id)", "PATH=/usr/bin:/bin"])
    }

    func testAMissingExecutableIsNotStarted() async {
        let outcome = await ChildProcess.run(ChildCommand(executable: "/nonexistent/tool", arguments: [], environment: [:]),
                                             timeout: .seconds(5)) { _, _ in }
        guard case .notStarted(let reason) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertTrue(reason.hasPrefix("could not run /nonexistent/tool"), reason)
    }
}
