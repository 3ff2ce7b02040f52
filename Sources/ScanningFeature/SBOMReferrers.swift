import Foundation
import HTTPAPI
import Logging
import NIOCore
import OCIModel
import RegistryCore
import RegistryStore
import Scanning

/// Pushes an image's SBOMs (SPDX 2.3, CycloneDX 1.5) as OCI 1.1 referrers through the registry
/// core, so they are ordinary content: events, GC, quotas, replication and the referrers API see
/// them. The documents are a function of the stored inventory (its creation time, a document id
/// derived from the subject), so a re-delivered push gives the same bytes and the same referrer
/// digest: nothing is pushed twice.
struct SBOMReferrers {
    let registry: Registry
    let logger: Logger

    /// Annotation naming the tool that wrote the document (the referrer's manifest).
    static let generatorAnnotation = "dev.berth.sbom.generator"
    static let createdAnnotation = "org.opencontainers.image.created"
    static let emptyConfig: [UInt8] = Array("{}".utf8)
    /// The origin of the events the scanner's pushes append.
    static let origin = EventOrigin(actor: "berth-scanner", address: "-")

    struct ManifestJSON: Encodable {
        struct Item: Encodable {
            var mediaType: String
            var digest: String
            var size: Int64
            var data: String?
        }
        var schemaVersion = 2
        var mediaType = MediaType.ociManifest
        var artifactType: String
        var config: Item
        var layers: [Item]
        var subject: Item
        var annotations: [String: String]
    }

    /// The referrer manifest of `format` for the inventory, and the document it carries.
    static func referrer(_ format: SBOMFormat, repository: String, subject: ManifestRecord, inventory: ImageInventory,
                         createdAt: Date) throws -> (manifest: [UInt8], document: [UInt8]) {
        let document = try SBOMWriter.document(format, inventory: inventory,
                                               subject: SBOMSubject(name: "\(repository)@\(subject.digest)", digest: subject.digest.string),
                                               info: SBOMDocumentInfo(created: createdAt, id: documentID(subject.digest, format),
                                                                      toolVersion: BerthVersion.string))
        let bytes = [UInt8](document)
        let manifest = ManifestJSON(
            artifactType: format.mediaType,
            config: .init(mediaType: MediaType.ociEmpty, digest: Digest.compute(emptyConfig).string, size: 2, data: "e30="),
            layers: [.init(mediaType: format.mediaType, digest: Digest.compute(bytes).string, size: Int64(bytes.count))],
            subject: .init(mediaType: subject.mediaType, digest: subject.digest.string, size: subject.size),
            annotations: [generatorAnnotation: "berth \(ScanCatalogers.version)",
                          createdAnnotation: createdAt.formatted(.iso8601)])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return ([UInt8](try encoder.encode(manifest)), bytes)
    }

    /// A stable UUID per (subject, format), so the same inventory gives the same document.
    static func documentID(_ subject: Digest, _ format: SBOMFormat) -> UUID {
        var h = Array(Digest.compute(Array("\(subject.string) \(format.rawValue)".utf8)).hex.utf8.prefix(32))
        // RFC 4122 version 5-style bits on hex characters: version nibble 5, variant 8.
        h[12] = UInt8(ascii: "5")
        h[16] = UInt8(ascii: "8")
        let s = String(decoding: h, as: UTF8.self)
        let formatted = "\(s.prefix(8))-\(s.dropFirst(8).prefix(4))-\(s.dropFirst(12).prefix(4))-\(s.dropFirst(16).prefix(4))-\(s.dropFirst(20))"
        return UUID(uuidString: formatted)!
    }

    /// Pushes the referrers of `subject` that are not there yet; returns the ones pushed.
    func ensure(repository: String, subject: ManifestRecord, inventory: ImageInventory, createdAt: Date) async throws -> [Digest] {
        let present = Set(try await registry.metadata.referrers(repository: repository, subject: subject.digest).map(\.digest))
        let repo = try RepositoryName(repository)
        var pushed: [Digest] = []
        for format in SBOMFormat.allCases {
            let (manifest, document) = try Self.referrer(format, repository: repository, subject: subject, inventory: inventory,
                                                         createdAt: createdAt)
            let digest = Digest.compute(manifest)
            if present.contains(digest) { continue }
            try await EventOrigin.$current.withValue(Self.origin) {
                _ = try await registry.putBlob(repo, digest: Digest.compute(Self.emptyConfig), contentLength: 2,
                                               body: Chunks(bytes: Self.emptyConfig))
                _ = try await registry.putBlob(repo, digest: Digest.compute(document), contentLength: Int64(document.count),
                                               body: Chunks(bytes: document))
                _ = try await registry.putManifest(repo, reference: .digest(digest), bytes: manifest, contentType: MediaType.ociManifest)
            }
            pushed.append(digest)
        }
        return pushed
    }
}

/// Bytes as a request body of one chunk.
struct Chunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]
    struct AsyncIterator: AsyncIteratorProtocol {
        var bytes: [UInt8]?
        mutating func next() async -> ByteBuffer? {
            defer { bytes = nil }
            return bytes.map { ByteBuffer(bytes: $0) }
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes) }
}
