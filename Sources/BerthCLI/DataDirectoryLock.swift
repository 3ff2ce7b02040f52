import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock on a data directory (`<data>/berth.lock`), held for the life of the
/// process. The embedded backends (SQLite, filesystem) are safe for one server at a time: their
/// caches are per process, so a second `berth serve` on the same directory would serve stale
/// answers (a revoked token, a moved tag). Offline commands that must not run beside a server take
/// the same lock.
final class DataDirectoryLock: Sendable {
    static let fileName = "berth.lock"
    private let descriptor: Int32

    /// Takes the lock without waiting; throws a message naming the directory when it is held.
    init(directory: String, purpose: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let path = directory + "/" + Self.fileName
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CLIError("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK
                ? "a Berth server is running on \(directory) or another berth command is using it (it holds \(path)); "
                    + "stop it first: \(purpose) needs the data directory to itself"
                : "cannot lock \(path): \(String(cString: strerror(errno)))"
            close(fd)
            throw CLIError(reason)
        }
        // Who holds it, for an operator looking at the file.
        _ = ftruncate(fd, 0)
        let note = "pid \(getpid())\n"
        _ = note.withCString { write(fd, $0, strlen($0)) }
        descriptor = fd
    }

    deinit { close(descriptor) }
}
