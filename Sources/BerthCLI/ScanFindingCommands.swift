import ArgumentParser
import BerthAPIContract
import Foundation

/// `berth scan show IMAGE [-o table|json|tsv] [--ignore-unfixed]`: the image's findings, asked of
/// `/api/v1/scans/findings` (judged like the inventory: metadata/read and content/read on the
/// repository).
struct ScanShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show an image's findings (advisories that affect its packages).",
        discussion: """
            IMAGE is [HOST/]REPOSITORY[:TAG][@DIGEST] (the tag defaults to latest; a digest wins over \
            a tag). For an index, name one of its image manifests by digest: each is scanned on its own. \
            Findings are matched after the push and again when the advisory database changes. \
            OpenVEX documents attached to the image as referrers (artifact type application/openvex+json) \
            decide findings they name: not_affected and fixed ones are shown as suppressed, with the justification.
            """)

    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Argument(help: "The image, e.g. payments/api:1.2 or payments/api@sha256:….")
    var image: String
    @Flag(help: "Leave out findings that have no fixed version yet.")
    var ignoreUnfixed = false

    static let columns: [Column] = [
        Column("SEVERITY", "severity"), Column("ID", "id"), Column("PACKAGE", "package"), Column("SOURCE", "sourcePackage"),
        Column("INSTALLED", "installedVersion"), Column("FIXED", "fixedVersion"), Column("STATE", "fixState"),
        Column("SCORE", "score"), Column("ALIASES", "aliases"),
        // An OpenVEX statement that applies: "suppressed: not_affected (justification)" or its status.
        Column("VEX") { f in
            guard let status = f.at("vex.status")?.cell, !status.isEmpty else { return "" }
            let why = [f.at("vex.justification")?.cell, f.at("vex.impactStatement")?.cell].compactMap { $0 }.first { !$0.isEmpty }
            let text = why.map { "\(status) (\($0))" } ?? status
            return f.at("vex.suppressed")?.cell == "true" ? "suppressed: " + text : text
        },
    ]

    func run() async throws {
        let ref = try Repositories.parseImage(image, option: "IMAGE")
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let reference = ref.digest?.string ?? ref.tagOrLatest
            var query = [("repository", ref.repository), ("reference", reference)]
            if ignoreUnfixed { query.append(("ignoreUnfixed", "true")) }
            let answer = try await c.call(.GET, "scans/findings", query: query, answer: ScanFindingsView.self)
            if out.output == .json {
                Printer.write(answer.prettyJSON + "\n")
                return
            }
            if out.output == .table {
                let hidden = answer["unfixedHidden"]?.cell ?? "0"
                Printer.write("\(Printer.sanitize(answer["repository"]?.cell ?? ""))@\(answer["manifest"]?.cell ?? ""): "
                              + "\(answer["findings"]?.asArray?.count ?? 0) finding(s), advisory database version "
                              + "\(answer["advisoryVersion"]?.cell ?? "?") (current \(answer["databaseVersion"]?.cell ?? "?"))"
                              + (hidden == "0" ? "" : ", \(hidden) unfixed hidden")
                              + ((answer["suppressed"]?.cell ?? "0") == "0" ? "" : ", \(answer["suppressed"]?.cell ?? "") suppressed by VEX")
                              + "\n")
                for problem in answer["vexProblems"]?.asArray ?? [] {
                    Printer.write("warning: OpenVEX referrer not applied: \(Printer.sanitize(problem.cell))\n")
                }
            }
            Printer.rows(answer["findings"] ?? .array([]), columns: Self.columns, format: out.output)
        }
    }
}

/// `berth scan list [--severity High,Critical] [--repository 'payments/*'] [-o table|json|tsv]`:
/// scanned images with their findings counted by severity, from `/api/v1/scans` (only
/// repositories the caller may read).
struct ScanList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List scanned images with their findings by severity.",
        discussion: "Example: berth scan list --severity High,Critical --repository 'payments/*'")

    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "Only images with findings of these severities (comma-separated: Low,Medium,High,Critical,…).")
    var severity: String?
    @Option(help: "Repository pattern: an exact name, prefix/* or * (the default).")
    var repository: String?
    @Option(help: "At most this many images (1000 at most).")
    var limit: Int?

    static let columns: [Column] = [
        Column("REPOSITORY", "repository"), Column("MANIFEST", "manifest"), Column("TAGS", "tags"),
        Column("CRITICAL", compute: { $0.at("counts.Critical")?.cell ?? "0" }),
        Column("HIGH", compute: { $0.at("counts.High")?.cell ?? "0" }),
        Column("MEDIUM", compute: { $0.at("counts.Medium")?.cell ?? "0" }),
        Column("LOW", compute: { $0.at("counts.Low")?.cell ?? "0" }),
        Column("TOTAL", "total"),
    ]

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            var query: [(String, String)] = []
            if let severity { query.append(("severity", severity)) }
            if let repository { query.append(("repository", repository)) }
            if let limit { query.append(("limit", String(limit))) }
            let answer = try await c.call(.GET, "scans", query: query, answer: ScanListView.self)
            if out.output == .json {
                Printer.write(answer.prettyJSON + "\n")
                return
            }
            Printer.rows(answer["images"] ?? .array([]), columns: Self.columns, format: out.output)
            if answer["truncated"] == .bool(true) { Printer.write("(more images match: narrow --repository or raise --limit)\n") }
        }
    }
}

/// `berth scan vex …`: OpenVEX documents about images.
struct ScanVEXGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vex", abstract: "Attach OpenVEX documents to images.", subcommands: [ScanVEXImport.self])
}

/// `berth scan vex import FILE --image REPO@DIGEST|REPO:TAG`: the document is sent to
/// `/api/v1/scans/vex`, which attaches it to the image as an `application/openvex+json` referrer
/// (push on the repository needed); its `not_affected` and `fixed` statements then suppress the
/// findings they name, in `scan show` and for the scan policy.
struct ScanVEXImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Attach an OpenVEX document to an image as a referrer.",
        discussion: """
            FILE is an OpenVEX JSON document (at most 1 MiB). Its not_affected and fixed statements \
            suppress the findings they name: in `berth scan show`, in the scan policy's quarantine \
            verdicts and in its pull gate. The document is an ordinary referrer of the image: it is \
            listed by the referrers API and replicated with the repository.
            """)

    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Argument(help: "The OpenVEX JSON document.")
    var file: String
    @Option(help: "The image the document is about, e.g. payments/api:1.2 or payments/api@sha256:….")
    var image: String

    func run() async throws {
        let ref = try Repositories.parseImage(image, option: "--image")
        let file = self.file
        try await runCLI {
            let data: Data
            do {
                let attributes = try FileManager.default.attributesOfItem(atPath: file)
                guard attributes[.type] as? FileAttributeType == .typeRegular else { throw CLIError("\(file) is not a regular file") }
                guard let size = attributes[.size] as? Int, size <= 1 << 20 else { throw CLIError("\(file) is larger than 1 MiB") }
                data = try Data(contentsOf: URL(fileURLWithPath: file))
            } catch let e as CLIError {
                throw e
            } catch {
                throw CLIError("cannot read \(file)")
            }
            let c = try await ManagementClient.connect(client)
            let reference = ref.digest?.string ?? ref.tagOrLatest
            let answer = try await c.call(.POST, "scans/vex", query: [("repository", ref.repository), ("reference", reference)],
                                          contentType: "application/json", body: data, answer: ScanVEXImportView.self)
            if out.output == .json {
                Printer.write(answer.prettyJSON + "\n")
                return
            }
            Printer.write("attached \(answer["statements"]?.cell ?? "0") statement(s) to "
                          + "\(Printer.sanitize(answer["repository"]?.cell ?? ""))@\(answer["subject"]?.cell ?? "") "
                          + "as referrer \(answer["referrer"]?.cell ?? "")\n")
        }
    }
}
