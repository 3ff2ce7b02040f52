import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Subprocess
import SystemPackage

/// One child process of a run: started from async code through swift-subprocess (posix_spawn in a
/// session of its own, so the child and everything it starts form one process group), its
/// standard output and error read as streams and handed on line by line as they come, its end
/// awaited without blocking a thread.
struct ChildCommand: Sendable, Equatable {
    var executable: String
    var arguments: [String]
    /// The whole environment: nothing of the server's own environment is inherited.
    var environment: [String: String]
    /// The child's working directory; nil: the runner's.
    var workingDirectory: String? = nil
}

enum ChildOutcome: Sendable, Equatable {
    case exited(Int32)
    case signalled(Int32)
    case timedOut
    case cancelled
    /// The process could not be started.
    case notStarted(String)
}

enum ChildProcess {
    /// The longest line handed on; a longer one is cut into pieces of this size.
    static let maxLineBytes = 16 * 1024

    /// Runs `command` until it ends, `timeout` passes, or the calling task is cancelled. On a
    /// timeout or cancellation the whole process group gets SIGTERM (so buildah and podman can
    /// clean up), the leader SIGKILL if it is still there two seconds later, and whatever is
    /// left of the group SIGKILL once the leader is reaped; the call returns then.
    static func run(_ command: ChildCommand, timeout: Duration,
                    line: @escaping @Sendable (LogStream, String) async -> Void) async -> ChildOutcome {
        enum Race: Sendable { case finished(ChildOutcome), timeout, sleepCancelled }
        return await withTaskGroup(of: Race.self) { group in
            group.addTask { .finished(await spawn(command, line: line)) }
            group.addTask {
                do { try await Task.sleep(for: timeout); return .timeout } catch { return .sleepCancelled }
            }
            var finished: ChildOutcome?
            var timedOut = false
            for await result in group {
                switch result {
                case .finished(let outcome): finished = outcome; group.cancelAll()
                case .timeout: timedOut = true; group.cancelAll()
                case .sleepCancelled: break
                }
            }
            if timedOut { return .timedOut }
            if Task.isCancelled { return .cancelled }
            return finished ?? .cancelled
        }
    }

    private static func spawn(_ command: ChildCommand,
                              line: @escaping @Sendable (LogStream, String) async -> Void) async -> ChildOutcome {
        var options = PlatformOptions()
        options.createSession = true
        options.teardownSequence = [.gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: .seconds(2))]
        // Each entry NUL-terminated: swift-subprocess hands raw entries to strdup.
        let environment = command.environment.sorted { $0.key < $1.key }.map { Array("\($0.key)=\($0.value)\0".utf8) }
        do {
            let result = try await Subprocess.run(
                .path(FilePath(command.executable)), arguments: Arguments(command.arguments),
                environment: .custom(environment), workingDirectory: command.workingDirectory.map { FilePath($0) },
                platformOptions: options,
                input: .none, output: .sequence, error: .sequence
            ) { execution in
                await withTaskGroup(of: Void.self) { readers in
                    readers.addTask { await forward(execution.standardOutput, as: .stdout, to: line) }
                    readers.addTask { await forward(execution.standardError, as: .stderr, to: line) }
                }
            }
            if Task.isCancelled {
                // The teardown ends once the leader is gone; a member of its group that outlived
                // SIGTERM (or ignores it) is killed now. The group's id is not reused while any
                // member lives.
                kill(-result.processIdentifier.value, SIGKILL)
            }
            switch result.terminationStatus {
            case .exited(let code): return .exited(code)
            case .signaled(let signal): return Task.isCancelled ? .cancelled : .signalled(signal)
            }
        } catch is CancellationError {
            return .cancelled
        } catch {
            if Task.isCancelled { return .cancelled }
            return .notStarted("could not run \(command.executable): \(error)")
        }
    }

    /// Splits a stream into lines (`\n`, a trailing `\r` dropped), cutting lines longer than
    /// `maxLineBytes`; invalid UTF-8 is repaired, never fatal. A read error ends the stream (and is
    /// said as a runner line).
    private static func forward(_ stream: SubprocessOutputSequence, as kind: LogStream,
                                to line: @escaping @Sendable (LogStream, String) async -> Void) async {
        var pending: [UInt8] = []
        func emit(_ bytes: ArraySlice<UInt8>) async {
            var bytes = bytes
            if bytes.last == 0x0d { bytes = bytes.dropLast() }
            repeat {
                await line(kind, String(decoding: bytes.prefix(maxLineBytes), as: UTF8.self))
                bytes = bytes.dropFirst(maxLineBytes)
            } while !bytes.isEmpty
        }
        do {
            for try await buffer in stream {
                buffer.withUnsafeBytes { pending.append(contentsOf: $0) }
                var start = 0
                while let newline = pending[start...].firstIndex(of: 0x0a) {
                    await emit(pending[start..<newline])
                    start = newline + 1
                }
                pending.removeFirst(start)
                while pending.count >= maxLineBytes {
                    await emit(pending[..<maxLineBytes])
                    pending.removeFirst(maxLineBytes)
                }
            }
        } catch {
            // Said in the log: a step whose output vanished is otherwise indistinguishable from
            // one that printed nothing (seen once under load: a build's whole output missing).
            if !pending.isEmpty { await emit(pending[...]) }
            pending = []
            await line(.runner, "reading the step's \(kind.rawValue) failed: \(error)")
        }
        if !pending.isEmpty { await emit(pending[...]) }
    }
}
