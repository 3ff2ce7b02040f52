import Foundation

public enum LogStream: String, Sendable, Equatable {
    case stdout, stderr
    /// What the runner itself says about a step: the command it starts (without secrets), the
    /// exit code, a retry, a timeout.
    case runner
}

/// One line of a run's log, as it came.
public struct TaskLogLine: Sendable, Equatable {
    public var time: Date
    public var step: String
    public var stream: LogStream
    public var text: String
    public init(time: Date, step: String, stream: LogStream, text: String) {
        self.time = time; self.step = step; self.stream = stream; self.text = text
    }

    /// `2026-11-30T13:40:00.123Z build stdout| text`: the form kept in the run's log file.
    public var formatted: String {
        "\(TaskLogLine.timeFormat.format(time)) \(step) \(stream.rawValue)| \(text)"
    }

    static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}

/// Where a run's log lines go as they come (the server's `berth task logs` stream, a test).
/// Lines of steps running in parallel interleave; each names its step.
public protocol TaskLogSink: Sendable {
    func record(_ line: TaskLogLine) async
}

/// The run's own copy of its log: every line appended to `logs/run.log` in the run directory,
/// kept after the run, and passed on to the caller's sink. Secrets of the run (the push
/// password, the auth file's encoded credentials) are replaced by `***` before a line goes
/// anywhere.
actor RunLog {
    private let handle: FileHandle
    private let sink: (any TaskLogSink)?
    private let secrets: [String]

    init(path: String, sink: (any TaskLogSink)?, secrets: [String]) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw TaskRunError("cannot create the run log \(path)")
        }
        self.handle = handle
        self.sink = sink
        self.secrets = secrets.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
    }

    func record(step: String, _ stream: LogStream, _ text: String) async {
        var text = text
        for secret in secrets where text.contains(secret) {
            text = text.replacingOccurrences(of: secret, with: "***")
        }
        let line = TaskLogLine(time: Date(), step: step, stream: stream, text: text)
        try? handle.write(contentsOf: Data((line.formatted + "\n").utf8))
        await sink?.record(line)
    }

    func close() {
        try? handle.close()
    }
}
