import Foundation

/// What became of a run: its status, each step's, the digests it pushed, where its log is.
public struct TaskRunResult: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        case succeeded, failed, cancelled
    }

    public var runID: String
    public var status: Status
    /// Why the run failed or was cancelled (the first failing step's reason).
    public var reason: String?
    /// Every step of the task file, in file order.
    public var steps: [StepResult]
    /// The run's directory (kept): `logs/run.log`, the digest files of its pushes.
    public var runDirectory: String
    public var logFile: String { runDirectory + "/logs/run.log" }

    public var pushed: [PushedImage] { steps.flatMap(\.pushed) }
    public func step(_ id: String) -> StepResult? { steps.first { $0.id == id } }
}

public struct StepResult: Sendable, Equatable {
    public enum Status: String, Sendable, Equatable {
        case succeeded
        case failed
        /// Stopped at its `timeout` (the whole process group killed).
        case timedOut
        /// Stopped because the run was cancelled or another step failed.
        case cancelled
        /// Never started: a step it waits for failed, or the run ended first.
        case skipped
    }

    public var id: String
    public var status: Status
    /// One entry per attempt (1 + retries at most), in order.
    public var attempts: [AttemptOutcome]
    /// The step failed but has `ignoreErrors: true`: the run went on.
    public var ignoredFailure: Bool
    public var reason: String?
    public var started: Date?
    public var finished: Date?
    public var pushed: [PushedImage]

    /// The exit code of the last attempt, when it exited by itself.
    public var exitCode: Int32? {
        if case .exited(let code) = attempts.last { return code }
        return nil
    }
}

public enum AttemptOutcome: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case killed(signal: Int32)
    case timedOut
    case cancelled
    /// A build killed by the kernel for going over its memory cgroup's limit.
    case memoryLimit(bytes: Int64)
    /// Refused before anything ran (a path outside the context, a push to another registry).
    case refused(String)

    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .killed(let signal): "killed by signal \(signal)"
        case .timedOut: "timed out"
        case .cancelled: "cancelled"
        case .memoryLimit(let bytes): "killed by its memory cgroup: over its limit of \(bytes) bytes"
        case .refused(let reason): "refused: \(reason)"
        }
    }
}

public struct PushedImage: Sendable, Equatable {
    /// As the task file named it.
    public var reference: String
    /// The manifest digest the registry stored (buildah's `--digestfile`).
    public var digest: String
}

public struct TaskRunError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
