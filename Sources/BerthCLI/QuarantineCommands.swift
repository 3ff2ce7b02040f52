import ArgumentParser
import BerthAPIContract
import Foundation
import OCIModel

// `berth config quarantine update …` and `berth manifest quarantine …`.

struct ConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Registry policies.",
                                                    subcommands: [QuarantineConfigGroup.self, ContentTrustConfigGroup.self, RetentionConfigGroup.self,
                                                                  SoftDeleteConfigGroup.self, GCConfigGroup.self, ScanPolicyConfigGroup.self])
}

struct QuarantineConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quarantine", abstract: "Quarantine-on-push.",
                                                    subcommands: [QuarantineConfigShow.self, QuarantineConfigUpdate.self])
}

enum QuarantineStatus: String, ExpressibleByArgument, CaseIterable, Sendable {
    case enabled, disabled
}

enum QuarantineView {
    static let policy = [Column("enabled", "enabled"), Column("grandfather-existing", "grandfatherExisting")]
    static let change = [
        Column("enabled", "policy.enabled"),
        Column("grandfather-existing", "policy.grandfatherExisting"),
        Column("dry-run", "dryRun"),
        Column("affected", "affectedCount"),
        Column("effect", "effect"),
    ]
    static let affected = [Column("repository", "repository"), Column("digest", "digest")]
}

struct QuarantineConfigShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the quarantine policy.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "quarantine", answer: QuarantinePolicyView.self), fields: QuarantineView.policy, format: out.output)
        }
    }
}

struct QuarantineConfigUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Switch quarantine-on-push.",
        discussion: """
        While enabled, every new image waits for a QuarantineWriter's verdict before anyone else can pull it.
        --grandfather false also blocks images pushed before. --status disabled releases every Pending image (it becomes
        pullable); Failed verdicts stay enforced. Run with --dry-run first: it prints exactly what the real run changes.
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled.") var status: QuarantineStatus?
    @Option(help: "Keep images pushed before the switch pullable (true/false).") var grandfather: Bool?
    @Flag(help: "List what the change would block or release; change nothing.") var dryRun = false

    func validate() throws {
        if status == nil, grandfather == nil { throw ValidationError("nothing to change; give --status and/or --grandfather") }
    }

    func run() async throws {
        try await runCLI {
            let body = QuarantinePolicyRequest(enabled: status.map { $0 == .enabled }, grandfatherExisting: grandfather, dryRun: dryRun)
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.PATCH, "quarantine", sending: body, answer: QuarantineChangeView.self)
            // The dry run and the real run print the same: what changes and which images it changes.
            Printer.keyValues(answer, fields: QuarantineView.change, format: out.output)
            if out.output != .json, let affected = answer["affected"]?.asArray, !affected.isEmpty {
                Printer.rows(.array(affected), columns: QuarantineView.affected, format: out.output)
            }
        }
    }
}

struct ManifestGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "manifest", abstract: "Manifests.",
                                                    subcommands: [ManifestQuarantine.self, ManifestRestore.self])
}

enum QuarantineVerdict: String, ExpressibleByArgument, CaseIterable, Sendable {
    case pending = "Pending", passed = "Passed", failed = "Failed"

    init?(argument: String) {
        guard let v = QuarantineVerdict.allCases.first(where: { $0.rawValue.lowercased() == argument.lowercased() }) else { return nil }
        self = v
    }
}

struct ManifestQuarantine: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quarantine", abstract: "Record the gate's verdict on a quarantined image (QuarantineWriter).",
        discussion: "Example: berth manifest quarantine --image payments/api@sha256:… --state Passed --reason 'scan clean'")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "REPOSITORY@DIGEST (an optional registry host in front is ignored).") var image: String
    @Option(help: "Pending, Passed or Failed.") var state: QuarantineVerdict
    @Option(help: "Why: kept with the state.") var reason: String?

    func run() async throws {
        try await runCLI {
            let ref = try Repositories.parseImage(image, option: "--image")
            guard let digest = ref.digest, ref.tag == nil else {
                throw CLIError("--image must be REPOSITORY@DIGEST: a verdict is about exact content, never a tag")
            }
            let body = QuarantineStateRequest(repository: ref.repository, digest: digest.string, state: state.rawValue, reason: reason)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "quarantine/manifests", sending: body, answer: QuarantineVerdictView.self),
                              fields: [Column("repository", "repository"), Column("digest", "digest"), Column("state", "state"),
                                       Column("reason", "reason")], format: out.output)
        }
    }
}

// `berth config content-trust update|show`

struct ContentTrustConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "content-trust", abstract: "Registry-side signature enforcement.",
                                                    subcommands: [ContentTrustShow.self, ContentTrustUpdate.self])
}

enum ContentTrustView {
    static let fields = [
        Column("enabled", "enabled"), Column("repositories", "repositories"), Column("exempt", "exempt"),
        Column("trust-stores", compute: { ($0["trustStores"]?.asObject?.keys.sorted() ?? []).joined(separator: ",") }),
        Column("policies", compute: { ($0.at("trustPolicy.trustPolicies")?.asArray ?? []).compactMap { $0["name"]?.asString }.joined(separator: ",") }),
    ]
}

struct ContentTrustShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the content-trust policy.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "content-trust", answer: BerthAPIContract.ContentTrustView.self), fields: ContentTrustView.fields, format: out.output)
        }
    }
}

struct ContentTrustUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Refuse pulls of manifests without a signature valid under a Notation trust policy.",
        discussion: """
        Example: berth config content-trust update --status enabled --repository 'payments/*' \\
                   --trust-policy trustpolicy.json --trust-store ca:payments-ca=ca.crt --exempt signer scanner
        The policy uses Notation's trust policy format; the certificates are stored with the registry.
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "enabled or disabled.") var status: QuarantineStatus
    @Option(parsing: .upToNextOption, help: "Repository patterns (exact, prefix/*, or *).") var repository: [String] = []
    @Option(help: "Notation trust policy JSON file.") var trustPolicy: String?
    @Option(parsing: .upToNextOption, help: ArgumentHelp("Trust stores: TYPE:NAME=FILE.pem (repeatable).", valueName: "store"))
    var trustStore: [String] = []
    @Option(parsing: .upToNextOption, help: "Identities or tokens that may pull unsigned content (the signer, the scanner).")
    var exempt: [String] = []

    func run() async throws {
        try await runCLI {
            var policy: TrustPolicyDocumentView?
            if let trustPolicy {
                guard let data = FileManager.default.contents(atPath: trustPolicy),
                      let document = try? JSONDecoder().decode(TrustPolicyDocumentView.self, from: data) else {
                    throw CLIError("cannot read the trust policy \(trustPolicy) as a trust policy document (JSON)")
                }
                policy = document
            }
            var stores: [String: [String]] = [:]
            for spec in trustStore {
                guard let eq = spec.firstIndex(of: "=") else { throw CLIError("--trust-store takes TYPE:NAME=FILE, got \(spec)") }
                let name = String(spec[..<eq]), file = String(spec[spec.index(after: eq)...])
                guard let pem = try? String(contentsOfFile: file, encoding: .utf8) else { throw CLIError("cannot read \(file)") }
                stores[name, default: []].append(pem)
            }
            let body = BerthAPIContract.ContentTrustView(enabled: status == .enabled, repositories: repository, trustPolicy: policy,
                                                         trustStores: stores, exempt: exempt)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PUT, "content-trust", sending: body, answer: BerthAPIContract.ContentTrustView.self),
                              fields: ContentTrustView.fields,
                              format: out.output)
        }
    }
}

// `berth config scan-policy show|update`

struct ScanPolicyConfigGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scan-policy", abstract: "Which vulnerability findings fail an image.",
                                                    subcommands: [ScanPolicyShow.self, ScanPolicyUpdate.self])
}

enum ScanPolicyColumns {
    static let policy = [Column("block-severity", "blockSeverity"), Column("ignore-unfixed", "ignoreUnfixed"),
                         Column("block-pulls", "blockPulls"),
                         Column("exceptions", compute: { "\($0["allow"]?.asArray?.count ?? 0)" })]
    static let exceptions = [Column("id", "id"), Column("repository", "repository"), Column("who", "who"), Column("why", "why"),
                             Column("until", "until"), Column("expired", "expired")]

    static func print(_ answer: JSONValue, _ out: OutputOptions) {
        Printer.keyValues(answer, fields: policy, format: out.output)
        if out.output != .json, let allow = answer["allow"]?.asArray, !allow.isEmpty {
            Printer.rows(.array(allow), columns: exceptions, format: out.output)
        }
    }
}

struct ScanPolicyShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show the scan policy and its exceptions.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            ScanPolicyColumns.print(try await c.call(.GET, "scan/policy", answer: ScanPolicyView.self), out)
        }
    }
}

struct ScanPolicyUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change the scan policy: quarantine verdicts and, with --block-pulls true, pulls.",
        discussion: """
        Example: berth config scan-policy update --block-severity Critical --ignore-unfixed --block-pulls true
                 berth config scan-policy update --allow CVE-2024-1234 --repository 'payments/*' --reason 'not reachable' --until 2027-01-01
                 berth config scan-policy update --remove-allow CVE-2024-1234
        Findings at --block-severity or above (None, Low, Medium, High, Critical) fail an image, unless an exception (--allow,
        with --reason and --until, at most 366 days ahead; the server records who) covers it. A failing image that waits in
        quarantine gets the verdict Failed, a passing one Passed; with --block-pulls true its pulls are refused (403).
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(help: "None, Low, Medium, High or Critical.") var blockSeverity: String?
    @Flag(inversion: .prefixedNo, help: "Findings without a fixed version do not fail an image.") var ignoreUnfixed: Bool?
    @Option(help: "Refuse pulls of images that fail the policy (true/false).") var blockPulls: Bool?
    @Option(parsing: .upToNextOption, help: "Advisory ids (CVE-…, GHSA-…, or an alias) to allow.") var allow: [String] = []
    @Option(help: "Repository pattern the --allow exceptions are limited to (exact, prefix/*, *).") var repository: String?
    @Option(help: "Why the --allow exceptions are granted (required with --allow).") var reason: String?
    @Option(help: "When the --allow exceptions end: RFC 3339 or YYYY-MM-DD (required with --allow).") var until: String?
    @Option(parsing: .upToNextOption, help: "Advisory ids whose exceptions are removed.") var removeAllow: [String] = []

    func validate() throws {
        if blockSeverity == nil, ignoreUnfixed == nil, blockPulls == nil, allow.isEmpty, removeAllow.isEmpty {
            throw ValidationError("nothing to change; give --block-severity, --ignore-unfixed, --block-pulls, --allow or --remove-allow")
        }
        if !allow.isEmpty, reason == nil || until == nil { throw ValidationError("--allow needs --reason and --until") }
        if allow.isEmpty, reason != nil || until != nil || repository != nil {
            throw ValidationError("--reason, --until and --repository describe --allow exceptions; give --allow")
        }
    }

    func run() async throws {
        try await runCLI {
            let body = ScanPolicyUpdateRequest(
                blockSeverity: blockSeverity, ignoreUnfixed: ignoreUnfixed, blockPulls: blockPulls,
                allow: allow.isEmpty ? nil : allow.map { ScanPolicyExceptionRequest(id: $0, repository: repository, why: reason, until: until) },
                removeAllow: removeAllow.isEmpty ? nil : removeAllow)
            let c = try await ManagementClient.connect(client)
            ScanPolicyColumns.print(try await c.call(.PATCH, "scan/policy", sending: body, answer: ScanPolicyView.self), out)
        }
    }
}
