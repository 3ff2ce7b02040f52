import Foundation

/// Puts a run's source in place before the run: a shallow clone of one branch of a git
/// repository, or an uploaded tar archive unpacked. Both run as child processes with the
/// runner's environment only (nothing of the server's), bounded in time, and stopped with the
/// calling task. The caller checks a git URL against its outbound policy first.
public struct SourceCheckout: Sendable {
    public var git = "/usr/bin/git"
    public var tar = "/usr/bin/tar"
    public var timeout: Duration = .seconds(300)
    /// `git ls-remote` of a commit trigger's poll or a webhook's check: short, so one slow remote
    /// does not hold every other task's poll (found in review: it used the clone's 300 s).
    public var lsRemoteTimeout: Duration = .seconds(20)
    /// What an uploaded context may hold (checked before it is unpacked).
    public var contextLimits = ContextArchiveLimits()

    public init() {}

    /// `git clone --depth 1 --branch BRANCH --single-branch -- URL DIRECTORY`: http(s) URLs only,
    /// no redirects, no prompts, no system or user configuration, no submodules. With `resolve`
    /// (`HOST:PORT:ADDRESS`, see `GitRemote.pin`) git connects only to the address the caller
    /// checked, whatever the name resolves to meanwhile. With `commit`, that commit is checked out
    /// (fetched by its name when the branch has moved on since). Output lines go to `log` (the
    /// run's log). Returns the commit checked out.
    @discardableResult
    public func gitClone(url: String, branch: String, into directory: String, resolve: String? = nil, commit: String? = nil,
                         log: @escaping @Sendable (String) async -> Void = { _ in }) async throws(TaskRunError) -> String {
        guard let scheme = URL(string: url)?.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw TaskRunError("a git context must be an http(s) URL")
        }
        guard Self.isSafeBranch(branch) else { throw TaskRunError("invalid branch name \(Confined.quote(branch))") }
        if let commit, !GitRemote.isObjectName(commit) { throw TaskRunError("invalid commit \(Confined.quote(commit))") }
        let environment = Self.environment(home: directory + ".home")
        try await run(ChildCommand(executable: git, arguments: GitRemote.options(resolve: resolve) + [
            "clone", "--quiet", "--depth", "1", "--single-branch", "--no-tags", "--branch", branch, "--", url, directory,
        ], environment: environment), what: "git clone", log: log)
        var head = try await GitRemote.output(ChildCommand(executable: git, arguments: ["-C", directory, "rev-parse", "HEAD"],
                                                           environment: environment), what: "git rev-parse", timeout: timeout)
        if let commit, head != commit {
            try await run(ChildCommand(executable: git, arguments: GitRemote.options(resolve: resolve) + [
                "-C", directory, "fetch", "--quiet", "--depth", "1", "--no-tags", "origin", commit,
            ], environment: environment), what: "git fetch of commit \(commit)", log: log)
            try await run(ChildCommand(executable: git, arguments: ["-C", directory, "checkout", "--quiet", "--detach", commit],
                                       environment: environment), what: "git checkout", log: log)
            head = commit
        }
        return head
    }

    /// The commit `branch` of the repository at `url` points to (`git ls-remote`, with the same
    /// options as a clone), nil when the repository has no such branch.
    public func headCommit(url: String, branch: String, resolve: String? = nil) async throws(TaskRunError) -> String? {
        guard let scheme = URL(string: url)?.scheme?.lowercased(), scheme == "http" || scheme == "https" else {
            throw TaskRunError("a git context must be an http(s) URL")
        }
        guard Self.isSafeBranch(branch) else { throw TaskRunError("invalid branch name \(Confined.quote(branch))") }
        let home = FileManager.default.temporaryDirectory.path + "/berth-git-home-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let text = try await GitRemote.output(ChildCommand(executable: git, arguments: GitRemote.options(resolve: resolve) + [
            "ls-remote", "--heads", "--", url, "refs/heads/" + branch,
        ], environment: Self.environment(home: home)), what: "git ls-remote", timeout: lsRemoteTimeout)
        return try GitRemote.parseHead(text, branch: branch)
    }

    /// Unpacks a tar archive into `directory` (which must exist), once `contextLimits` accepted
    /// it (see `ContextArchiveLimits`): members are owned by the server's user, with no special
    /// permission bits kept.
    public func extract(archive: String, into directory: String,
                        log: @escaping @Sendable (String) async -> Void = { _ in }) async throws(TaskRunError) {
        try contextLimits.check(archive: archive)
        let command = ChildCommand(executable: tar, arguments: [
            "--extract", "--file", archive, "--directory", directory, "--no-same-owner", "--no-same-permissions",
            "--no-overwrite-dir", "--delay-directory-restore",
        ], environment: Self.environment(home: directory))
        try await run(command, what: "tar", log: log)
    }

    private func run(_ command: ChildCommand, what: String, log: @escaping @Sendable (String) async -> Void) async throws(TaskRunError) {
        // The last lines it printed explain a failure (git's `fatal: …`).
        let tail = LastLines()
        let outcome = await ChildProcess.run(command, timeout: timeout) { _, text in
            await tail.add(text)
            await log(text)
        }
        switch outcome {
        case .exited(0): return
        case .exited(let code):
            let said = await tail.lines.joined(separator: "; ")
            throw TaskRunError("\(what) failed with exit code \(code)" + (said.isEmpty ? "" : ": " + said))
        case .signalled(let signal): throw TaskRunError("\(what) was killed by signal \(signal)")
        case .timedOut: throw TaskRunError("\(what) did not finish within \(timeout)")
        case .cancelled: throw TaskRunError("\(what) was cancelled")
        case .notStarted(let reason): throw TaskRunError(reason)
        }
    }

    static func environment(home: String) -> [String: String] {
        ["PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
         "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ASKPASS": "/bin/false"]
    }

    /// A branch name as git allows it, without a leading `-` (never an option).
    static func isSafeBranch(_ s: String) -> Bool {
        guard let first = s.utf8.first, first != UInt8(ascii: "-"), s.utf8.count <= 200, !s.contains("..") else { return false }
        return s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
                || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".") || c == UInt8(ascii: "/")
        }
    }
}

/// The last few lines of a child's output, each cut to 300 characters.
private actor LastLines {
    private(set) var lines: [String] = []
    func add(_ line: String) {
        lines.append(String(line.prefix(300)))
        if lines.count > 3 { lines.removeFirst() }
    }
}
