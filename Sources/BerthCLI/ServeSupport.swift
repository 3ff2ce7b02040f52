import Dispatch
import Foundation
import HTTPAPI
import Logging
import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The C allocator's settings for a long-running server.
enum AllocatorSettings {
    /// One malloc arena per core (at least two), unless the operator set `MALLOC_ARENA_MAX` or
    /// `GLIBC_TUNABLES=glibc.malloc.arena_max=N`.
    /// glibc's default is eight per core, and a server whose requests hop between some thirty
    /// threads (event loops, the I/O pool, the database's queues, the cooperative pool) then
    /// keeps free memory in many arenas at once: on the listing benchmark (10,000 repositories)
    /// this held about 1.3 MiB more at the peak. Requests run on as many threads at once as there
    /// are cores, so that many arenas keep them from waiting for each other's allocations.
    /// Call it before the server's threads start: glibc fixes the limit the first time it needs
    /// an arena past its default count, and ignores a later change.
    static func apply(environment: [String: String] = ProcessInfo.processInfo.environment) {
        #if canImport(Glibc)
        guard environment["MALLOC_ARENA_MAX"] == nil,
              environment["GLIBC_TUNABLES"]?.contains("malloc.arena_max") != true,
              // <malloc.h> is not part of the Glibc module: the function is looked up by name
              // and called with the C convention. M_ARENA_MAX is -8 in <malloc.h>.
              let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt")   // RTLD_DEFAULT
        else { return }
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        _ = mallopt(-8, Int32(max(2, min(ProcessInfo.processInfo.activeProcessorCount, 64))))
        #endif
    }
}

/// Checks of the data directory before anything is opened in it, so that a path that cannot be
/// used is named in the error (SQLite and the blob store would only say what failed).
enum DataDirectory {
    /// Creates `path` (and its parents, mode 0700) when missing and checks that files can be
    /// created in it.
    static func prepare(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
            if mkdir(prefix, 0o700) != 0, errno != EEXIST {
                throw CLIError("data directory \(path): cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw CLIError("data directory \(path): \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw CLIError("data directory \(path) is not a directory") }
        let probe = "\(path)/.berth-write-check-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CLIError("data directory \(path) is not writable: \(String(cString: strerror(errno)))")
        }
        close(fd)
        unlink(probe)
        // It holds keys, sealed secrets and every image: its owner's alone, also when it existed.
        guard chmod(path, 0o700) == 0 else {
            throw CLIError("data directory \(path): cannot make it its owner's alone: \(String(cString: strerror(errno)))")
        }
    }
}

/// Set once the listener is bound: errors before that are start-up (bind) errors.
final class ListeningFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// SIGINT/SIGTERM and SIGHUP of `berth serve`. The first SIGINT or SIGTERM starts a graceful
/// shutdown (the listener closes, in-flight requests finish); if they have not finished after
/// the shutdown timeout, or a second SIGINT/SIGTERM arrives, the process exits at once (SQLite's
/// journal and the blob store's rename-after-fsync keep half-done writes invisible). SIGHUP
/// reads the TLS certificate and key again.
final class SignalHandling: @unchecked Sendable {
    private let group: ServiceGroup
    private let shutdownTimeout: Double
    private let tls: BerthServer.TLSCertificates?
    private let logger: Logger
    /// Touched only on `queue`.
    private let queue = DispatchQueue(label: "berth.signals")
    private var sources: [any DispatchSourceSignal] = []
    private var stopping = false

    /// Run after the certificate was reloaded (berth steps' endpoint is made of its names).
    private let afterTLSReload: (@Sendable () -> Void)?

    init(group: ServiceGroup, shutdownTimeout: Double, tls: BerthServer.TLSCertificates?, logger: Logger,
         afterTLSReload: (@Sendable () -> Void)? = nil) {
        self.group = group
        self.shutdownTimeout = shutdownTimeout
        self.tls = tls
        self.logger = logger
        self.afterTLSReload = afterTLSReload
    }

    func install() {
        queue.sync {
            for signo in [SIGINT, SIGTERM, SIGHUP] {
                signal(signo, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signo, queue: queue)
                source.setEventHandler { [unowned self] in self.received(signo) }
                source.resume()
                sources.append(source)
            }
        }
    }

    private func received(_ signo: Int32) {
        let name = signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "SIGHUP"
        if signo == SIGHUP {
            reloadTLS()
            return
        }
        if stopping {
            logger.warning("\(name) again: stopping now, without waiting for in-flight requests")
            Self.exitNow()
        }
        stopping = true
        logger.info("\(name): shutting down; no new connections, draining in-flight requests for up to \(Self.seconds(shutdownTimeout)) s (send the signal again to stop at once)")
        let group = group
        Task { await group.triggerGracefulShutdown() }
        queue.asyncAfter(deadline: .now() + shutdownTimeout) { [logger, shutdownTimeout] in
            logger.warning("shutdown timeout of \(Self.seconds(shutdownTimeout)) s passed with requests still in flight: stopping now")
            Self.exitNow()
        }
    }

    private func reloadTLS() {
        guard let tls else {
            logger.info("SIGHUP: nothing to reload (the server does not serve TLS)")
            return
        }
        do {
            try tls.reload()
            logger.info("SIGHUP: reloaded the TLS certificate; new connections use it",
                        metadata: ["cert": "\(tls.files.certificatePath)", "key": "\(tls.files.privateKeyPath)"])
            afterTLSReload?()
        } catch {
            logger.error("SIGHUP: cannot reload the TLS certificate, keeping the previous one",
                         metadata: ["cert": "\(tls.files.certificatePath)", "key": "\(tls.files.privateKeyPath)", "error": "\(error)"])
        }
    }

    private static func seconds(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }

    private static func exitNow() -> Never {
        fflush(nil)
        _exit(1)
    }
}
