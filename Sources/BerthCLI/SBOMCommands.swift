import ArgumentParser
import BerthAPIContract
import Foundation

struct SBOMGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sbom", abstract: "SBOMs the registry keeps as referrers of its images.",
        subcommands: [SBOMShow.self])
}

/// `berth sbom show IMAGE --format spdx|cyclonedx`: the SBOM the scanner pushed as a referrer of
/// the image, asked of `/api/v1/scans/sbom` (judged like the other repository commands: metadata/read
/// on the repository, with the login's management token). The server reads the document from the
/// blob the referrer's layer names, so what is printed is exactly what `/v2/` clients pull.
struct SBOMShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Print an image's SBOM (SPDX 2.3 or CycloneDX 1.5 JSON).",
        discussion: """
            IMAGE is [HOST/]REPOSITORY[:TAG][@DIGEST] (the tag defaults to latest; a digest wins over \
            a tag). For an index, name one of its image manifests by digest: each is inventoried on \
            its own. The scanner works after the push, so a fresh image may have no SBOM yet.
            """)

    @OptionGroup var client: ClientOptions
    @Argument(help: "The image, e.g. payments/api:1.2 or payments/api@sha256:….")
    var image: String
    @Option(help: "spdx (SPDX 2.3 JSON) or cyclonedx (CycloneDX 1.5 JSON).")
    var format: String = "spdx"

    func run() async throws {
        guard format == "spdx" || format == "cyclonedx" else {
            throw ValidationError("--format must be spdx or cyclonedx, not '\(format.prefix(40))'")
        }
        let ref = try Repositories.parseImage(image, option: "IMAGE")
        try await runCLI {
            let c = try await ManagementClient.connect(client)
            let reference = ref.digest?.string ?? ref.tagOrLatest
            let answer = try await c.value(.GET, "scans/sbom", query: [("repository", ref.repository), ("reference", reference),
                                                                        ("format", format)], answer: ScanSBOMDocumentView.self)
            FileHandle.standardOutput.write(Data(answer.document.utf8) + (answer.document.hasSuffix("\n") ? Data() : Data("\n".utf8)))
        }
    }
}
