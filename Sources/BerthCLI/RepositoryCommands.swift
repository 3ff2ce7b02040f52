import ArgumentParser
import BerthAPIContract
import Foundation
import OCIModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// `berth repository …` and `berth manifest restore`: repositories, tags, manifests, locks and the
// recycle bin, over `/api/v1/repository*` (the repository name always travels as `?name=`).

enum Repositories {
    static let lockColumns = [
        Column("read", "attributes.readEnabled"), Column("write", "attributes.writeEnabled"),
        Column("delete", "attributes.deleteEnabled"), Column("list", "attributes.listEnabled"),
    ]

    static let listColumns = [
        Column("name", "name"), Column("manifests", "manifests"), Column("tags", "tags"), Column("last-updated", "lastUpdatedAt"),
        Column("last-pulled", "lastPulledAt"),
    ] + lockColumns

    static let showFields = [
        Column("name", "name"), Column("manifests", "manifests"), Column("tags", "tags"), Column("created", "createdAt"),
        Column("last-updated", "lastUpdatedAt"),
        Column("read-enabled", "attributes.readEnabled"), Column("write-enabled", "attributes.writeEnabled"),
        Column("delete-enabled", "attributes.deleteEnabled"), Column("list-enabled", "attributes.listEnabled"),
    ]

    static let tagColumns = [
        Column("name", "name"), Column("digest", "digest"), Column("last-updated", "lastUpdatedAt"),
    ] + lockColumns

    static let manifestColumns = [
        Column("digest", "digest"),
        Column("type", compute: { $0["artifactType"]?.asString ?? $0["mediaType"]?.asString ?? "" }),
        Column("size", "size"), Column("created", "createdAt"), Column("tags", "tags"), Column("subject", "subject"),
        Column("live", "live"), Column("quarantine", "quarantineState"), Column("last-pulled", "lastPulledAt"),
    ] + lockColumns

    static let deletedColumns = [
        Column("id", "id"), Column("digest", "digest"), Column("media-type", "mediaType"), Column("size", "size"),
        Column("tags", "tags"), Column("deleted", "deletedAt"), Column("expires", "expiresAt"), Column("reason", "reason"),
    ]

    static let lockFields = [
        Column("repository", "repository"), Column("tag", "tag"), Column("digest", "digest"),
        Column("read-enabled", "readEnabled"), Column("write-enabled", "writeEnabled"),
        Column("delete-enabled", "deleteEnabled"), Column("list-enabled", "listEnabled"),
    ]

    /// Drops a registry host in front of a repository (`registry.example.com:5000/payments/api`).
    /// `[HOST/]REPOSITORY[:TAG][@DIGEST]` in the one grammar the server uses (`ImageReference`).
    static func parseImage(_ image: String, option: String) throws -> ImageReference {
        do {
            return try ImageReference(parsing: image)
        } catch {
            throw ValidationError("\(option): \(error.message)")
        }
    }

    static func checkTag(_ tag: String, option: String) throws {
        let ok = tag.range(of: "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", options: .regularExpression) != nil
        guard ok else { throw ValidationError("\(option): '\(tag)' is not a valid tag") }
    }

    static func checkDigest(_ digest: String, option: String) throws {
        let ok = digest.range(of: "^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}$", options: .regularExpression) != nil
        guard ok else { throw ValidationError("\(option) must be a digest such as sha256:<64 hex digits>, got '\(digest)'") }
    }

    /// Prints the rows `GET path?name=` answers: the listings of one repository.
    static func printRows<Row: Codable>(_ client: ClientOptions, _ out: OutputOptions, _ path: String, name: String, columns: [Column],
                                        of row: Row.Type) async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, path, query: [("name", name)], answer: [Row].self), columns: columns, format: out.output)
        }
    }

    static func checkName(_ name: String) throws {
        guard !name.isEmpty, !name.contains(":"), !name.contains("@") else {
            throw ValidationError("--name must be a repository name such as payments/api, got '\(name)'")
        }
    }

    /// `REPOSITORY:TAG` (a registry host in front is dropped).
    static func splitImage(_ image: String, option: String) throws -> (repository: String, tag: String) {
        let ref = try parseImage(image, option: option)
        guard let tag = ref.tag, ref.digest == nil else {
            throw ValidationError("\(option) must be REPOSITORY:TAG, got '\(image)'")
        }
        return (ref.repository, tag)
    }
}

struct RepositoryGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repository", abstract: "Repositories: tags, manifests, locks, deletes and the recycle bin.",
        subcommands: [RepositoryList.self, RepositoryShow.self, RepositoryShowTags.self, RepositoryShowManifests.self,
                      RepositoryUntag.self, RepositoryDelete.self, RepositoryUpdate.self, RepositoryListDeleted.self])
}

struct RepositoryList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List repositories.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.rows(try await c.call(.GET, "repositories", answer: [RepositoryDetailView].self), columns: Repositories.listColumns, format: out.output)
        }
    }
}

struct RepositoryShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a repository and its locks.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String

    func validate() throws { try Repositories.checkName(name) }

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.GET, "repository", query: [("name", name)], answer: RepositoryDetailView.self),
                              fields: Repositories.showFields, format: out.output)
        }
    }
}

enum TagOrder: String, ExpressibleByArgument, CaseIterable, Sendable {
    case timeDesc = "time_desc", timeAsc = "time_asc", nameAsc = "name_asc"
}

struct RepositoryShowTags: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show-tags", abstract: "List a repository's tags.",
        discussion: "Without --detail only the names (-o json: an array of names); with it digests, times and locks.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String
    @Option(help: "time_desc, time_asc or name_asc (default).") var orderby: TagOrder?
    @Flag(help: "Show digest, last update, last pull and locks of each tag.") var detail = false

    func validate() throws { try Repositories.checkName(name) }

    func run() async throws {
        try await runCLI {
            var query = [("name", name)]
            if let orderby { query.append(("orderby", orderby.rawValue)) }
            let c = try await ManagementClient.connect(client)
            let tags = try await c.call(.GET, "repository/tags", query: query, answer: [TagDetailView].self)
            if detail {
                Printer.rows(tags, columns: Repositories.tagColumns, format: out.output)
            } else if out.output == .json {
                Printer.write(JSONValue.array((tags.asArray ?? []).map { $0["name"] ?? .null }).prettyJSON + "\n")
            } else {
                Printer.rows(tags, columns: [Column("name", "name")], format: out.output)
            }
        }
    }
}

struct RepositoryShowManifests: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show-manifests", abstract: "List a repository's manifests, newest first, with liveness and locks.",
        discussion: "LIVE is false for manifests no tag, live index, live subject or lock keeps: purge --untagged and retention delete those.")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String

    func validate() throws { try Repositories.checkName(name) }

    func run() async throws {
        try await Repositories.printRows(client, out, "repository/manifests", name: name, columns: Repositories.manifestColumns,
                                         of: ManifestDetailView.self)
    }
}

struct RepositoryUntag: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "untag", abstract: "Remove a tag (the manifest stays, untagged).",
        discussion: "Example: berth repository untag --image payments/api:v1")
    @OptionGroup var client: ClientOptions
    @Option(help: "REPOSITORY:TAG (split at the last ':').") var image: String

    func validate() throws { _ = try Repositories.splitImage(image, option: "--image") }

    func run() async throws {
        try await runCLI {
            let (repository, tag) = try Repositories.splitImage(image, option: "--image")
            let c = try await ManagementClient.connect(client)
            try await c.call(.DELETE, "repository/tags", query: [("name", repository), ("tag", tag)])
            Printer.write("Untagged \(repository):\(tag)\n")
        }
    }
}

struct RepositoryDelete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a repository: all its tags and manifests (locked ones are skipped and reported).",
        discussion: "With soft delete enabled the manifests go to the recycle bin ('berth repository list-deleted').")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String
    @Flag(name: [.customShort("y"), .long], help: "Do not ask for confirmation.") var yes = false

    func validate() throws { try Repositories.checkName(name) }

    func run() async throws {
        try await runCLI {
            if !yes {
                guard isatty(STDIN_FILENO) == 1 else {
                    throw CLIError("deleting repository \(name) needs confirmation: pass --yes")
                }
                FileHandle.standardError.write(Data("Delete repository \(name) with all its tags and manifests? [y/N] ".utf8))
                let answer = (readLine() ?? "").trimmingCharacters(in: .whitespaces).lowercased()
                guard answer == "y" || answer == "yes" else { throw CLIError("not deleted") }
            }
            let c = try await ManagementClient.connect(client)
            let report = try await c.call(.DELETE, "repository", query: [("name", name)], answer: LifecycleReportView.self)
            Lifecycle.printReport(report, format: out.output, dryRun: false, what: "Repository \(name)", tagReason: "repository delete")
        }
    }
}

/// `--read-enabled` & co. of `repository update` may be given without a value (meaning true), as
/// in the issue's `--read-enabled --list-enabled`: `berth repository update` inserts the `true`.
enum LockFlagArguments {
    static let options: Set<String> = ["--read-enabled", "--write-enabled", "--delete-enabled", "--list-enabled"]

    static func normalize(_ arguments: [String]) -> [String] {
        guard arguments.count >= 2, arguments[0] == "repository", arguments[1] == "update" else { return arguments }
        var out: [String] = []
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            out.append(arg)
            if arg == "--" {
                out.append(contentsOf: arguments[(i + 1)...])
                break
            }
            if i >= 2, options.contains(arg) {
                let next = i + 1 < arguments.count ? arguments[i + 1] : nil
                if next != "true", next != "false" { out.append("true") }
            }
            i += 1
        }
        return out
    }
}

struct RepositoryUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Lock or unlock a repository, a tag or a manifest.",
        discussion: """
        Example: berth repository update --name payments/api --image v1 --write-enabled false --delete-enabled false
        Without --image/--digest the locks apply to the repository. A flag without a value means true.
        write-enabled false: no pushes (repository), the tag cannot move (tag), tags on it cannot move (manifest).
        delete-enabled false: cannot be deleted, purge and retention skip it. read-enabled false: cannot be pulled.
        list-enabled false: hidden from _catalog (repository) or tags/list (tag).
        """)
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String?
    @Option(help: "A tag of the repository (TAG, or REPOSITORY:TAG; REPOSITORY@DIGEST means --digest).") var image: String?
    @Option(help: "A manifest digest of the repository.") var digest: String?
    @Option(help: "Pulls allowed (true/false).") var readEnabled: Bool?
    @Option(help: "Pushes / tag moves allowed (true/false).") var writeEnabled: Bool?
    @Option(help: "Deletes allowed (true/false).") var deleteEnabled: Bool?
    @Option(help: "Listed in _catalog / tags/list (true/false).") var listEnabled: Bool?

    /// (repository, tag, digest) the request is about.
    func target() throws -> (String, String?, String?) {
        var repository = name
        var tag: String?
        var digest = self.digest
        if let image {
            if (try? Repositories.checkDigest(image, option: "--image")) != nil {
                // a digest given as --image: the manifest
                guard digest == nil else { throw ValidationError("give either --image or --digest") }
                digest = image
            } else if let at = image.lastIndex(of: "@") {
                if at != image.startIndex {
                    let repo = try Repositories.parseImage(image, option: "--image").repository
                    repository = repository ?? repo
                    guard repository == repo else { throw mismatch(repo) }
                }
                guard digest == nil else { throw ValidationError("give either --image or --digest") }
                digest = String(image[image.index(after: at)...])
            } else if image.contains(":") {
                let (repo, t) = try Repositories.splitImage(image, option: "--image")
                repository = repository ?? repo
                guard repository == repo else { throw mismatch(repo) }
                tag = t
            } else {
                try Repositories.checkTag(image, option: "--image")
                tag = image
            }
        }
        if tag != nil, self.digest != nil { throw ValidationError("give either --image or --digest") }
        if let digest { try Repositories.checkDigest(digest, option: "--digest") }
        guard let repository else { throw ValidationError("give --name REPOSITORY (or --image REPOSITORY:TAG)") }
        try Repositories.checkName(repository)
        return (repository, tag, digest)
    }

    private func mismatch(_ repo: String) -> ValidationError {
        ValidationError("--image names repository \(repo) but --name says \(name ?? "")")
    }

    func validate() throws {
        _ = try target()
        if readEnabled == nil, writeEnabled == nil, deleteEnabled == nil, listEnabled == nil {
            throw ValidationError("nothing to change; give --read-enabled, --write-enabled, --delete-enabled and/or --list-enabled")
        }
    }

    func run() async throws {
        try await runCLI {
            let (repository, tag, digest) = try target()
            var query = [("name", repository)]
            if let tag { query.append(("tag", tag)) }
            if let digest { query.append(("digest", digest)) }
            let body = LockRequest(readEnabled: readEnabled, writeEnabled: writeEnabled, deleteEnabled: deleteEnabled,
                                   listEnabled: listEnabled)
            let c = try await ManagementClient.connect(client)
            Printer.keyValues(try await c.call(.PATCH, "repository", query: query, sending: body, answer: LockView.self),
                              fields: Repositories.lockFields, format: out.output)
        }
    }
}

struct RepositoryListDeleted: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-deleted", abstract: "List a repository's soft-deleted manifests (restore with 'berth manifest restore').")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String

    func validate() throws { try Repositories.checkName(name) }

    func run() async throws {
        try await Repositories.printRows(client, out, "repository/deleted", name: name, columns: Repositories.deletedColumns,
                                         of: DeletedManifestView.self)
    }
}

struct ManifestRestore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore", abstract: "Bring a soft-deleted manifest back (identical bytes and digest).",
        discussion: "Example: berth manifest restore --name payments/api --digest sha256:… --tag v1")
    @OptionGroup var client: ClientOptions
    @OptionGroup var out: OutputOptions
    @Option(name: [.customLong("name"), .customLong("repository")], help: "Repository name.") var name: String
    @Option(help: "Digest of the deleted manifest ('berth repository list-deleted').") var digest: String
    @Option(help: "Tag to point at the restored manifest.") var tag: String?

    func validate() throws {
        try Repositories.checkName(name)
        try Repositories.checkDigest(digest, option: "--digest")
        if let tag { try Repositories.checkTag(tag, option: "--tag") }
    }

    func run() async throws {
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let answer = try await c.call(.POST, "repository/restore", query: [("name", name)],
                                          sending: RestoreRequest(digest: digest, tag: tag), answer: RestoreResponse.self)
            if out.output == .json {
                Printer.write(answer.prettyJSON + "\n")
            } else {
                Printer.rows(answer["restored"] ?? .array([]), columns: [Column("digest", "digest"), Column("tags", "tags")],
                             format: out.output)
            }
        }
    }
}
