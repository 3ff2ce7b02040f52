import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import OCIModel
import Tasks
import XCTest
@testable import TaskRunner

extension XCTestCase {
    /// A fresh state directory, removed with the run roots of its tasks when the test ends.
    func stateDirectory() throws -> String {
        let state = try Support.temporaryDirectory("state")
        addTeardownBlock { Support.removeState(state) }
        return state
    }

    /// Fails when a process with exactly this command line is still running (see `Support.survivors`).
    func assertNoProcess(_ words: [String], file: StaticString = #filePath, line: UInt = #line) async throws {
        let left = try await Support.survivors(words)
        XCTAssertEqual(left, [], "still running: \(words.joined(separator: " "))", file: file, line: line)
    }

    /// `Support.temporaryDirectory(label)`, removed when the test ends.
    func temporaryDirectory(_ label: String) throws -> String {
        let path = try Support.temporaryDirectory(label)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// `Support.busyboxSource()`, removed when the test ends.
    func busyboxSource() throws -> String {
        let source = try Support.busyboxSource()
        addTeardownBlock { try? FileManager.default.removeItem(atPath: source) }
        return source
    }
}

enum Support {
    /// A fresh directory under the test's temporary directory.
    static func temporaryDirectory(_ label: String) throws -> String {
        let path = NSTemporaryDirectory() + "/taskrunner-\(label)-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A source directory with Debian's static busybox and a Dockerfile that makes an image of it
    /// `FROM scratch` (no base image can be downloaded here).
    static func busyboxSource() throws -> String {
        let busybox = "/bin/busybox"
        guard FileManager.default.isExecutableFile(atPath: busybox) else {
            throw TaskRunError("\(busybox) is missing: install busybox-static (scripts/install-test-deps)")
        }
        let source = try temporaryDirectory("src")
        try FileManager.default.copyItem(atPath: busybox, toPath: source + "/busybox")
        try """
            FROM scratch
            COPY busybox /bin/busybox
            RUN ["/bin/busybox", "--install", "-s", "/bin"]
            ENV PATH=/bin

            """.write(toFile: source + "/Dockerfile", atomically: true, encoding: .utf8)
        return source
    }

    static func taskFile(_ text: String, runID: String, registry: String, values: [String] = []) throws -> TaskFile {
        var taskValues = TaskValues()
        for value in values { try taskValues.set(value) }
        let run = RunContext(id: runID, registry: registry, date: Date(), taskName: "test")
        return try TaskFile.parse(text, run: run, values: taskValues)
    }

    static func runner(state: String) -> TaskRunner {
        var configuration = TaskRunnerConfiguration(stateDirectory: state)
        configuration.registryTransport = .plainHTTP
        return TaskRunner(configuration: configuration)
    }

    /// Removes a state directory (the tasks' storage, the runs) and the tasks' run roots.
    static func removeState(_ state: String) {
        let configuration = TaskRunnerConfiguration(stateDirectory: state)
        for task in (try? FileManager.default.contentsOfDirectory(atPath: state + "/tasks")) ?? [] {
            try? FileManager.default.removeItem(atPath: RunDirectory.taskRunRoot(configuration: configuration, taskName: task))
        }
        try? FileManager.default.removeItem(atPath: state)
    }

    /// The lines of a run's kept log.
    static func logLines(_ result: TaskRunResult) throws -> [String] {
        try String(contentsOfFile: result.logFile, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    /// Containers left in a task's storage, podman's as well as buildah's.
    static func containers(state: String, task: String) async throws -> String {
        let runRoot = "/tmp/berth-ps-" + UUID().uuidString.prefix(6)
        defer { try? FileManager.default.removeItem(atPath: runRoot) }
        return try await output("/usr/bin/buildah", ["--root", state + "/tasks/" + task + "/storage", "--runroot", runRoot,
                                                     "--storage-driver", "vfs", "containers", "--all", "--noheading"])
    }

    /// Processes whose command line is still exactly `words` after those killed have had up to
    /// ten seconds to finish dying (a killed process can still be listed for a moment on a
    /// loaded machine; the processes these tests look for would live for minutes).
    static func survivors(_ words: [String]) async throws -> [Int32] {
        var found = try processes(words)
        for _ in 0..<200 where !found.isEmpty {
            try await Task.sleep(for: .milliseconds(50))
            found = try processes(words)
        }
        return found
    }

    /// Processes whose command line is exactly `words`.
    static func processes(_ words: [String]) throws -> [Int32] {
        let wanted = Data(words.joined(separator: "\0").utf8 + [0])
        return try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap { Int32($0) }.filter { pid in
            FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") == wanted
        }
    }

    static func output(_ executable: String, _ arguments: [String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}

/// Collects the lines a run streams, and wakes a waiter when a line with some text arrives.
actor CollectingSink: TaskLogSink {
    private(set) var lines: [TaskLogLine] = []
    private var waiters: [(String, CheckedContinuation<Void, Never>)] = []

    func record(_ line: TaskLogLine) {
        lines.append(line)
        waiters.removeAll { text, continuation in
            // The run's last line ("run succeeded|failed|cancelled") wakes every waiter.
            guard line.text == text || line.step == "-" else { return false }
            continuation.resume()
            return true
        }
    }

    /// Returns when a line with `text` arrives, or the run ends.
    func waitFor(_ text: String) async {
        if lines.contains(where: { $0.text == text || $0.step == "-" }) { return }
        await withCheckedContinuation { waiters.append((text, $0)) }
    }
}

/// A real `berth serve` from the build directory (next to the test bundle, or `BERTH_BIN`) on a
/// free loopback port, with a fresh data directory and a known owner password.
final class BerthServer: @unchecked Sendable {
    let process = Process()
    let port: Int
    let password = UUID().uuidString
    let data: String
    var address: String { "127.0.0.1:\(port)" }

    init() throws {
        let binary = ProcessInfo.processInfo.environment["BERTH_BIN"]
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("berth").path
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TaskRunError("no berth binary at \(binary): build it first (swift build --build-tests) or set BERTH_BIN")
        }
        port = try Self.freePort()
        data = try Support.temporaryDirectory("berth-data")
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["serve", "--data", data, "--listen", "127.0.0.1:\(port)"]
        var environment = ProcessInfo.processInfo.environment
        environment["BERTH_BOOTSTRAP_OWNER_PASSWORD"] = password
        process.environment = environment
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: data + ".log") ?? {
            FileManager.default.createFile(atPath: data + ".log", contents: nil)
            return FileHandle(forWritingAtPath: data + ".log")!
        }()
        try process.run()
    }

    /// Polls `/healthz` until it answers 200 (at most 30 s).
    func waitUntilReady() async throws {
        for _ in 0..<300 {
            if let (_, response) = try? await URLSession.shared.data(from: URL(string: "http://\(address)/healthz")!),
               (response as? HTTPURLResponse)?.statusCode == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TaskRunError("berth serve did not become ready on \(address)")
    }

    /// The status and `Docker-Content-Digest` of `GET /v2/<repository>/manifests/<tag>` as the owner.
    func manifest(_ repository: String, _ tag: String) async throws -> (status: Int, digest: String?) {
        var request = URLRequest(url: URL(string: "http://\(address)/v2/\(repository)/manifests/\(tag)")!)
        request.setValue("Basic " + Data("owner:\(password)".utf8).base64EncodedString(), forHTTPHeaderField: "Authorization")
        request.setValue("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
                         forHTTPHeaderField: "Accept")
        let (_, response) = try await URLSession.shared.data(for: request)
        let http = response as! HTTPURLResponse
        return (http.statusCode, http.value(forHTTPHeaderField: "Docker-Content-Digest"))
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: data)
        try? FileManager.default.removeItem(atPath: data + ".log")
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TaskRunError("socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else { throw TaskRunError("bind failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
