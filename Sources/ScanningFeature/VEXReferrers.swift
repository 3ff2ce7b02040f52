import Foundation
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Scanning

/// OpenVEX documents attached to images as referrers (artifact type `application/openvex+json`,
/// the document the manifest's layer): read for the findings API and the scan policy (its
/// quarantine verdicts and pull gate), and written by an upload (`POST /api/v1/scans/vex`,
/// `berth scan vex import`), which pushes the document as such a referrer through the core, so
/// an uploaded document is content like any other referrer (events, replication, GC, the
/// referrers API).
public enum VEXReferrers {
    /// OpenVEX referrers of one image read at most (the newest first).
    public static let maxPerImage = 20

    /// The OpenVEX documents attached as referrers to any of `subjects` in `repository`, each at
    /// most `VEXLimits.maxDocumentBytes`, the newest `maxPerImage` per subject; a referrer that
    /// cannot be read or parsed is a problem, and its statements are not applied.
    public static func index(_ registry: Registry, repository: String, subjects: [Digest]) async throws -> (VEXIndex, [String]) {
        let metadata = registry.metadata
        var index = VEXIndex()
        var problems: [String] = []
        for subject in subjects {
            let referrers = try await metadata.referrers(repository: repository, subject: subject)
                .filter { $0.artifactType == OpenVEX.mediaType }
                .sorted { ($0.createdAt, $0.digest) > ($1.createdAt, $1.digest) }
            if referrers.count > maxPerImage {
                problems.append("\(referrers.count) OpenVEX referrers; only the newest \(maxPerImage) are applied")
            }
            // Oldest first, so that of statements without timestamps the newest document's wins.
            for referrer in referrers.prefix(maxPerImage).reversed() {
                do {
                    guard let bytes = try await metadata.inlineContent(referrer.digest),
                          let manifest = try? JSONDecoder().decode(ScannedManifest.self, from: Data(bytes)),
                          let layers = manifest.layers, !layers.isEmpty else {
                        problems.append("\(referrer.digest): not an image manifest with a layer"); continue
                    }
                    let layer = layers.first { $0.mediaType == OpenVEX.mediaType } ?? layers[0]
                    guard let layerDigest = try? Digest(parsing: layer.digest),
                          let size = try await metadata.linkedBlobSize(repository: repository, digest: layerDigest) else {
                        problems.append("\(referrer.digest): its document is not in \(repository)"); continue
                    }
                    guard size <= Int64(VEXLimits.maxDocumentBytes) else {
                        problems.append("\(referrer.digest): the document is \(size) bytes, over \(VEXLimits.maxDocumentBytes)"); continue
                    }
                    let buffer = try await ScanInventorier.read(registry, layerDigest, size: size, range: 0..<size)
                    let document = try OpenVEX.parse(Data(buffer.readableBytesView), location: referrer.digest.string)
                    index.add(document, source: referrer.digest.string)
                } catch let e as ImportProblem {
                    problems.append(e.description)
                }
            }
        }
        return (index, problems)
    }

    /// The referrer manifest carrying `document` about `subject`.
    static func referrerManifest(document: [UInt8], subject: ManifestRecord, created: Date) throws -> [UInt8] {
        let manifest = SBOMReferrers.ManifestJSON(
            artifactType: OpenVEX.mediaType,
            config: .init(mediaType: MediaType.ociEmpty, digest: Digest.compute(SBOMReferrers.emptyConfig).string, size: 2, data: "e30="),
            layers: [.init(mediaType: OpenVEX.mediaType, digest: Digest.compute(document).string, size: Int64(document.count))],
            subject: .init(mediaType: subject.mediaType, digest: subject.digest.string, size: subject.size),
            annotations: [SBOMReferrers.createdAnnotation: created.formatted(.iso8601)])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return [UInt8](try encoder.encode(manifest))
    }

    /// Parses `document` (bounded: `VEXLimits`; a malformed one throws `ImportProblem`) and pushes
    /// it as a referrer of `subject` in `repository` through the core, under the caller's event
    /// origin; returns the referrer's digest and the document's statement count. The same bytes
    /// uploaded again give the same referrer: nothing new is pushed.
    public static func attach(_ registry: Registry, repository: RepositoryName, subject: ManifestRecord, document: [UInt8],
                              now: Date = Date()) async throws -> (referrer: Digest, statements: Int) {
        let parsed = try OpenVEX.parse(Data(document), location: "document")
        // The document's own time (else now) dates the referrer, so a re-upload is the same manifest.
        let created = parsed.timestamp ?? Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down))
        let manifest = try referrerManifest(document: document, subject: subject, created: created)
        let digest = Digest.compute(manifest)
        _ = try await registry.putBlob(repository, digest: Digest.compute(SBOMReferrers.emptyConfig), contentLength: 2,
                                       body: Chunks(bytes: SBOMReferrers.emptyConfig))
        _ = try await registry.putBlob(repository, digest: Digest.compute(document), contentLength: Int64(document.count),
                                       body: Chunks(bytes: document))
        _ = try await registry.putManifest(repository, reference: .digest(digest), bytes: manifest, contentType: MediaType.ociManifest)
        return (digest, parsed.statements.count)
    }
}
