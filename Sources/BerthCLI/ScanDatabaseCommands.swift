import ArgumentParser
import AsyncHTTPClient
import BerthAPIContract
import Foundation
import NIOCore
import NIOHTTP1
import Scanning
import _NIOFileSystem

// MARK: - berth scan db

struct ScanDatabaseGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "The advisory database: import feeds, update from the configured feeds, show its state.",
        discussion: "Each import is the complete snapshot of its source: unchanged records are kept as they are, changed ones "
            + "rewritten, records missing from the snapshot (removed or withdrawn upstream) deleted; any change makes a new "
            + "database version. Importing and updating need the Owner role (management/write).",
        subcommands: [ScanDatabaseShow.self, ScanDatabaseImport.self, ScanDatabaseUpdate.self])

    static let importFields = [
        Column("source", "source"), Column("format", "format"), Column("version", "version"), Column("new-version", "created"),
        Column("added", "added"), Column("changed", "changed"), Column("removed", "removed"), Column("unchanged", "unchanged"),
        Column("problems", "problems"),
    ]
}

struct ScanDatabaseShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Version, sources, record counts, last update and errors.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let view = try await c.call(.GET, "scan/db", answer: AdvisoryDatabaseView.self)
            if out.output == .json {
                Printer.write(view.prettyJSON + "\n")
                return
            }
            Printer.keyValues(view, fields: [
                Column("version", "version"), Column("records", "records"), Column("last-update", "lastUpdate"),
                Column("update-interval", "updateIntervalSeconds"),
            ], format: out.output)
            if out.output == .table { Printer.write("\n") }
            Printer.rows(view.at("sources") ?? .array([]), columns: [
                Column("source", "source"), Column("format", "format"), Column("version", "version"), Column("records", "records"),
                Column("imported", "importedAt"), Column("checked", "checkedAt"), Column("last-error", "lastError"),
            ], format: out.output)
        }
    }
}

struct ScanDatabaseUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Have the server download the configured feeds (advisory-feeds) and import those that changed.",
        discussion: "Downloads are conditional (ETag / Last-Modified): a feed the server answers 304 Not Modified is not imported again.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only the feed of this name.") var feed: String?

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let view = try await c.call(.POST, "scan/db/update", query: feed.map { [("feed", $0)] } ?? [], answer: AdvisoryUpdateView.self)
            Printer.rows(out.output == .json ? view : (view.at("feeds") ?? .array([])), columns: [
                Column("feed", "name"), Column("status", "status"), Column("version", "result.version"),
                Column("added", "result.added"), Column("changed", "result.changed"), Column("removed", "result.removed"),
                Column("error", "error"),
            ], format: out.output)
            let failed = (view.at("feeds")?.asArray ?? []).filter { $0.at("status")?.cell == "failed" }
            if !failed.isEmpty { throw ExitCode(1) }
        }
    }
}

struct ScanDatabaseImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Upload a feed to the server's advisory database.",
        discussion: """
            PATH is an OSV record (.json), a directory of OSV records (its *.json files, uploaded as one zip archive), an OSV \
            all.zip export, a Debian security tracker JSON or an Alpine secdb JSON. The format is detected unless --format \
            gives it. --source names the snapshot (default: the format's name): a later import of the same source replaces it.
            """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Argument(help: "A file or a directory of OSV records.") var path: String
    @Option(help: "osv, debian or alpine (default: detected).") var format: String?
    @Option(help: "The source this import is a snapshot of (default: the format's name).") var source: String?

    static let maxUploadBytes: Int64 = 256 << 20

    func run() async throws {
        try await runCLI {
            if let format, AdvisoryFeedFormat(rawValue: format) == nil {
                throw CLIError("--format must be osv, debian or alpine, not '\(format.prefix(40))'")
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("\(path) does not exist") }
            let c = try await ManagementClient.connect(client)
            var query = [("format", format ?? "auto")]
            if let source { query.append(("source", source)) }
            let view: AdvisoryImportView
            if isDirectory.boolValue {
                if let format, format != "osv" { throw CLIError("a directory is imported as OSV records, not \(format)") }
                let archive = try Self.zipDirectory(path)
                defer { try? FileManager.default.removeItem(atPath: archive) }
                view = try await Self.upload(c, file: archive, query: query)
            } else {
                view = try await Self.upload(c, file: path, query: query)
            }
            let value = try JSONDecoder().decode(JSONValue.self, from: ManagementClient.encode(view))
            Printer.keyValues(value, fields: ScanDatabaseGroup.importFields, format: out.output)
            if out.output == .table {
                for sample in view.problemSamples { printWarning("skipped \(sample)") }
            }
        }
    }

    /// The directory's `*.json` files as a zip archive of stored entries in a private temporary
    /// file (one upload, so they import as one snapshot).
    static func zipDirectory(_ directory: String) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }.sorted()
        guard !names.isEmpty else { throw CLIError("\(directory) holds no *.json file") }
        let temp = FileManager.default.temporaryDirectory.appendingPathComponent("berth-advisories-\(UUID().uuidString).zip").path
        guard FileManager.default.createFile(atPath: temp, contents: nil, attributes: [.posixPermissions: 0o600]),
              let out = FileHandle(forWritingAtPath: temp) else { throw CLIError("cannot create a temporary file in \(NSTemporaryDirectory())") }
        var writer = StoredZipWriter()
        do {
            defer { try? out.close() }
            for name in names {
                let file = URL(fileURLWithPath: directory).appendingPathComponent(name)
                guard let handle = try? FileHandle(forReadingFrom: file) else { throw CLIError("cannot read \(file.path)") }
                let data = (try? handle.read(upToCount: Int(maxUploadBytes) + 1)) ?? Data()
                try? handle.close()
                guard Int64(writer.offset + data.count) <= maxUploadBytes else {
                    throw CLIError("\(directory) holds more than \(maxUploadBytes >> 20) MiB of records: import it in parts or as all.zip")
                }
                try out.write(contentsOf: try writer.entry(name: name, contents: [UInt8](data)))
            }
            try out.write(contentsOf: writer.finish())
        } catch {
            try? FileManager.default.removeItem(atPath: temp)
            throw error
        }
        return temp
    }

    /// `POST /api/v1/scan/db/import` with the file as the body, streamed (never read whole here).
    static func upload(_ c: ManagementClient, file: String, query: [(String, String)]) async throws -> AdvisoryImportView {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let url = c.registry + "/api/v1/scan/db/import?"
            + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&")
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(c.accessToken)")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.headers.add(name: "User-Agent", value: "berth-cli")
        let (status, body): (Int, ByteBuffer)
        do {
            (status, body) = try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(file)) { handle in
                let info = try await handle.info()
                guard info.type == .regular else { throw CLIError("\(file) is not a regular file") }
                guard info.size <= maxUploadBytes else { throw CLIError("\(file) is larger than \(maxUploadBytes >> 20) MiB") }
                request.body = .stream(handle.readChunks(in: 0..<info.size, chunkLength: .kibibytes(256)), length: .known(info.size))
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(600))
                return (Int(response.status.code), try await response.body.collect(upTo: 4 << 20))
            }
        } catch let e as CLIError {
            throw e
        } catch let e as FileSystemError {
            throw CLIError("cannot read \(file): \(e.code)")
        } catch {
            throw CLIError("cannot reach \(c.registry): \(error)")
        }
        let data = Data(body.readableBytesView)
        guard (200..<300).contains(status) else { throw ManagementClient.apiError(.init(status: status, body: data), context: nil) }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let view = try? decoder.decode(AdvisoryImportView.self, from: data) else {
            throw CLIError("the registry answered POST /api/v1/scan/db/import with a body this berth does not understand")
        }
        return view
    }
}
