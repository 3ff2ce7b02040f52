import Foundation

/// What git commands of a run's source share: the options that keep git to plain http(s) without
/// redirects, prompts or credentials, the address pin, and reading a command's output.
public enum GitRemote {
    /// `-c` options of every git command that talks to a remote. `resolve` (`HOST:PORT:ADDRESS`)
    /// becomes libcurl's `CURLOPT_RESOLVE` (`http.curloptResolve`): git then connects to that
    /// address only, so a name re-resolved after the outbound check (DNS rebinding) cannot lead
    /// it to an address the check refused.
    static func options(resolve: String?) -> [String] {
        var options = [
            "-c", "http.followRedirects=false", "-c", "protocol.allow=never", "-c", "protocol.http.allow=always",
            "-c", "protocol.https.allow=always", "-c", "credential.helper=",
        ]
        if let resolve { options += ["-c", "http.curloptResolve=" + resolve] }
        return options
    }

    /// The pin for a destination checked by the outbound policy: `HOST:PORT:ADDRESS` (an IPv6
    /// address in brackets); nil when the host is an address literal (nothing to resolve).
    public static func pin(host: String, port: Int, address: String, addressIsV4: Bool) -> String? {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare.contains(":") || bare.allSatisfy({ $0.isNumber || $0 == "." }) { return nil }
        guard !bare.contains(","), port > 0, port < 65536 else { return nil }
        return "\(bare):\(port):" + (addressIsV4 ? address : "[\(address)]")
    }

    /// Whether `host` is an IP address literal (git connects to it without resolving a name).
    public static func isAddressLiteral(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return !bare.isEmpty && (bare.contains(":") || bare.allSatisfy({ $0.isNumber || $0 == "." }))
    }

    /// A full git object name: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits.
    public static func isObjectName(_ s: String) -> Bool {
        (s.utf8.count == 40 || s.utf8.count == 64)
            && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The commit of `refs/heads/BRANCH` in `git ls-remote` output, nil when it is not listed.
    static func parseHead(_ text: String, branch: String) throws(TaskRunError) -> String? {
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 1)
            guard fields.count == 2, fields[1] == "refs/heads/" + branch else { continue }
            let name = String(fields[0])
            guard isObjectName(name) else { throw TaskRunError("git ls-remote answered an invalid object name") }
            return name
        }
        return nil
    }

    /// Runs `command` and returns its standard output (at most 64 KiB, trimmed); a failure throws
    /// with the last lines it printed.
    static func output(_ command: ChildCommand, what: String, timeout: Duration) async throws(TaskRunError) -> String {
        let collected = Collected()
        let outcome = await ChildProcess.run(command, timeout: timeout) { stream, text in
            await collected.add(stream, text)
        }
        switch outcome {
        case .exited(0): return await collected.output.trimmingCharacters(in: .whitespacesAndNewlines)
        case .exited(let code):
            let said = await collected.errors.joined(separator: "; ")
            throw TaskRunError("\(what) failed with exit code \(code)" + (said.isEmpty ? "" : ": " + said))
        case .signalled(let signal): throw TaskRunError("\(what) was killed by signal \(signal)")
        case .timedOut: throw TaskRunError("\(what) did not finish within \(timeout)")
        case .cancelled: throw TaskRunError("\(what) was cancelled")
        case .notStarted(let reason): throw TaskRunError(reason)
        }
    }

    private actor Collected {
        var output = ""
        var errors: [String] = []
        func add(_ stream: LogStream, _ text: String) {
            if stream == .stderr {
                errors.append(String(text.prefix(300)))
                if errors.count > 3 { errors.removeFirst() }
            } else if output.utf8.count < 64 << 10 {
                output += text + "\n"
            }
        }
    }
}
