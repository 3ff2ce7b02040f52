import Access
import ArgumentParser
import BerthAPIContract
import Foundation

/// `berth import`: starts a server-side copy (`POST /api/v1/imports`) and follows it until it ends.
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Copy an image from another registry into this one (server-side).",
        discussion: """
            The registry fetches the image from the source itself and stores it as a push would (quotas, locks, \
            quarantine and events apply; you need push rights on the target repository). Every digest is \
            verified and preserved. An index is copied whole with --all-platforms; without it, its linux/amd64 \
            image is copied and tagged. When the source's connection drops in the middle of a blob, the copy \
            goes on from the bytes received (a Range request; a source without ranges sends the blob again). \
            A failed import is resumed by running it again: blobs already in the target repository are not \
            fetched again. The tag is written last and an existing tag pointing \
            elsewhere is moved only with --force. Source credentials are used for this import only (never \
            stored). The source must be allowed by the registry's outbound policy (loopback and private \
            addresses need outbound-allow). Example: berth import --source registry.example.com/lib/app:1.2 \
            --image mirror/app:1.2 --username bot --password-stdin
            """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@DIGEST.") var source: String
    @Option(help: "REPOSITORY:TAG in this registry.") var image: String
    @Option(help: "User name at the source.") var username: String?
    @Flag(help: "Read the source password from standard input.") var passwordStdin = false
    @Option(help: "A file with the source credentials: one line USERNAME:PASSWORD, or {\"username\":…,\"password\":…}.")
    var sourceCredsFile: String?
    @Flag(help: "Speak http, not https, to the source.") var plainHttp = false
    @Flag(help: "Copy every platform of an index (default: its linux/amd64 image).") var allPlatforms = false
    @Flag(help: "Also copy the referrers (signatures, SBOMs) of what is copied.") var includeReferrers = false
    @Flag(help: "Move the tag if it already points to another manifest.") var force = false
    @Flag(help: "Start the import and print it, without following it.") var noWait = false

    func validate() throws {
        if passwordStdin && username == nil { throw ValidationError("--password-stdin needs --username") }
        if sourceCredsFile != nil && (username != nil || passwordStdin) {
            throw ValidationError("give --username/--password-stdin or --source-creds-file, not both")
        }
    }

    func credentials() throws -> (String?, String?) {
        if let file = sourceCredsFile {
            // read as the server reads its secrets: a regular file that group and others may not
            // read (a password in a 0644 file is a password shared with every local user)
            let data: Data
            do { data = try SecretFile.read(file, what: "--source-creds-file") } catch { throw CLIError(error.message) }
            struct Creds: Decodable { var username: String; var password: String }
            if let creds = try? JSONDecoder().decode(Creds.self, from: data) { return (creds.username, creds.password) }
            var text = String(decoding: data, as: UTF8.self)
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            guard let colon = text.firstIndex(of: ":"), colon != text.startIndex, !text.contains("\n") else {
                throw CLIError("\(file): expected one line USERNAME:PASSWORD or a JSON object with username and password")
            }
            return (String(text[..<colon]), String(text[text.index(after: colon)...]))
        }
        if let username { return (username, passwordStdin ? try readPasswordFromStdin() : try promptPassword("Password for \(username) at the source: ")) }
        return (nil, nil)
    }

    func run() async throws {
        try await runCLI {
            let (user, password) = try credentials()
            let body = ImportRequest(source: source, image: image, username: user, password: password, plainHTTP: plainHttp ? true : nil,
                                     allPlatforms: allPlatforms ? true : nil, includeReferrers: includeReferrers ? true : nil,
                                     force: force ? true : nil)
            let c = try await ManagementClient.connect(client)
            let started = try await c.call(.POST, "imports", sending: body, answer: ImportView.self)
            guard let id = started["id"]?.asString, id.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
                throw CLIError("the registry's answer names no import")
            }
            var job = try await c.value(.GET, "imports/\(id)", answer: ImportView.self)
            let progress = ImportProgress(terminal: isatty(STDERR_FILENO) == 1 && out.output == .table)
            if !noWait {
                progress.show(job)
                while job.state == "running" {
                    try await Task.sleep(for: .milliseconds(300))
                    job = try await c.value(.GET, "imports/\(job.id)", answer: ImportView.self)
                    progress.show(job)
                }
                progress.end()
            }
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            let value = try JSONDecoder().decode(JSONValue.self, from: encoder.encode(job))
            Printer.keyValues(value, fields: [
                Column("id", "id"), Column("state", "state"), Column("source", "source"), Column("image", "image"),
                Column("digest", "digest"), Column("manifests-copied", "manifestsCopied"), Column("blobs-copied", "blobsCopied"),
                Column("blobs-skipped", "blobsSkipped"), Column("bytes-copied", "bytesCopied"), Column("referrers-copied", "referrersCopied"),
                Column("error", "error"),
            ], format: out.output)
            if job.state == "failed" { throw CLIError("import failed: \(job.error ?? "unknown error")") }
        }
    }
}

/// Progress of an import on standard error: a bar redrawn in place on a terminal, otherwise one
/// plain line whenever a count changes.
final class ImportProgress: @unchecked Sendable {
    let terminal: Bool
    var last = ""

    init(terminal: Bool) { self.terminal = terminal }

    func show(_ job: ImportView) {
        let counts = "\(job.blobsCopied) copied, \(job.blobsSkipped) present of \(job.blobsSeen) blobs, "
            + "\(job.manifestsCopied) manifests, \(job.referrersCopied) referrers, \(Self.size(job.bytesCopied)) of \(Self.size(job.bytesTotal))"
            + (job.blobResumes.map { ", \($0) resumed after a dropped connection" } ?? "")
            + (job.blobRestarts.map { ", \($0) started over" } ?? "")
        guard counts != last else { return }
        last = counts
        if terminal {
            let fraction = job.bytesTotal > 0 ? min(1, Double(job.bytesCopied) / Double(job.bytesTotal)) : 0
            let filled = Int(fraction * 30)
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: 30 - filled)
            FileHandle.standardError.write(Data("\r\u{1b}[2K[\(bar)] \(counts)".utf8))
        } else {
            FileHandle.standardError.write(Data("import \(job.id): \(job.state): \(counts)\n".utf8))
        }
    }

    func end() {
        if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func size(_ bytes: Int64) -> String {
        bytes < 1024 * 1024 ? "\(bytes / 1024) KiB" : String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }
}
