import Foundation

/// A task executor of one thread of its own: the scan consumer's work (decompressing and walking
/// layers, cataloging, matching, SBOMs) runs there instead of on Swift's cooperative pool, which
/// has one thread per core and also runs every request handler. On a small machine a layer being
/// indexed on the pool held a pool thread for its whole slice, and the next push's acknowledgement
/// queued behind it (`scripts/bench-scan-push`: 1.21x the time with scanning off at 200 rounds
/// on two cores); on a thread of its own it only shares the CPU, as the kernel schedules it. The
/// thread keeps the normal priority: a lower one would be inherited by the threads it makes
/// (libdispatch starts workers from the thread that enqueues work) and would stretch the
/// database round trips the consumer makes from it (review). Everything the consumer's task
/// runs that is not isolated to an actor resumes here, its store calls included.
final class BackgroundExecutor: TaskExecutor, @unchecked Sendable {
    /// The scanner's.
    static let scanning = BackgroundExecutor(name: "berth-scan")

    private let condition = NSCondition()
    /// Guarded by `condition`.
    private var jobs: [UnownedJob] = []
    /// The thread, once it runs. Guarded by `condition`.
    private var thread: pthread_t?

    init(name: String) {
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    private func loop() {
        condition.lock()
        thread = pthread_self()
        condition.unlock()
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Whether the caller runs on this executor's thread.
    func isCurrent() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return thread.map { pthread_equal($0, pthread_self()) != 0 } ?? false
    }
}
