import ArgumentParser
import HTTPAPI
import Foundation
import NIOCore
import OCIModel
import Scanning
import _NIOFileSystem

struct ScanGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scan",
        abstract: "Image inventories and SBOMs; the advisory database.",
        subcommands: [ScanInventory.self, ScanShow.self, ScanList.self, ScanDatabaseGroup.self, ScanVEXGroup.self]
    )
}

/// `berth scan inventory --oci-layout DIR`: the inventory of an image in an OCI image layout on
/// disk, offline (no server, no data directory), so the output can be compared with other tools
/// on the same layout. Layers are streamed from `blobs/` through the `LayerWalker` (never read
/// whole into memory) and checked against their digests and sizes.
struct ScanInventory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory",
        abstract: "Inventory the packages of an image in an OCI image layout (offline).",
        discussion: """
            Reads DIR/index.json, picks the image (--image: a tag of the layout, the \
            org.opencontainers.image.ref.name annotation, or a manifest digest; needed when the layout \
            holds several), and inventories every platform of an index (or the one --platform names). \
            --format json prints {"images": [{name, manifest, platform, inventory}]}; spdx (SPDX 2.3 \
            JSON) and cyclonedx (CycloneDX 1.5 JSON) print one document and need a single image.
            """
    )

    @Option(name: .customLong("oci-layout"), help: "Directory of an OCI image layout (oci-layout, index.json, blobs/).")
    var ociLayout: String

    @Option(help: "The image in the layout: a tag (ref.name annotation) or a manifest digest.")
    var image: String?

    @Option(help: "With an index: only this platform, os/architecture[/variant] (e.g. linux/amd64).")
    var platform: String?

    @Option(help: "Output: json, spdx or cyclonedx (default json).")
    var format: String = "json"

    func run() async throws {
        try await runCLI {
            guard let format = InventoryOutputFormat(rawValue: format) else {
                throw CLIError("--format must be json, spdx or cyclonedx, not '\(format.prefix(40))'")
            }
            let layout = OCILayoutReader(directory: ociLayout)
            let chosen = try await layout.select(image)
            var images = try await layout.images(of: chosen.descriptor)
            if let platform {
                images = images.filter { $0.platform == platform }
                guard !images.isEmpty else {
                    throw CLIError("no image for platform \(platform) in \(chosen.name)")
                }
            }
            guard !images.isEmpty else { throw CLIError("\(chosen.name) holds no image manifest") }
            if format != .json, images.count > 1 {
                let platforms = images.map { $0.platform ?? $0.digest.string }.joined(separator: ", ")
                throw CLIError("\(chosen.name) is an index of \(images.count) images (\(platforms)); pick one with --platform")
            }
            var indexes: [Digest: LayerIndex] = [:]
            var results: [InventoryOutput.Image] = []
            for image in images {
                var layers: [LayerIndex] = []
                for layer in image.layers {
                    if indexes[layer.digest] == nil { indexes[layer.digest] = try await layout.index(layer) }
                    layers.append(indexes[layer.digest]!)
                }
                let inventory = ImageInventory(layers: layers)
                if !inventory.complete {
                    printWarning("\(image.platform ?? image.digest.string): partial inventory: "
                                 + inventory.problems.prefix(3).map(\.description).joined(separator: "; "))
                }
                results.append(.init(name: chosen.name, manifest: image.digest.string, platform: image.platform, inventory: inventory))
            }
            let data: Data
            switch format {
            case .json:
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                data = try encoder.encode(InventoryOutput(images: results))
            case .spdx, .cyclonedx:
                let r = results[0]
                data = try SBOMWriter.document(format == .spdx ? .spdx : .cyclonedx, inventory: r.inventory,
                                               subject: SBOMSubject(name: r.name, digest: r.manifest, platform: r.platform),
                                               info: SBOMDocumentInfo(toolVersion: BerthVersion.string))
            }
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        }
    }
}

enum InventoryOutputFormat: String { case json, spdx, cyclonedx }

struct InventoryOutput: Encodable {
    struct Image: Encodable {
        var name: String
        var manifest: String
        var platform: String?
        var inventory: ImageInventory
    }
    var images: [Image]
}

/// Reads an OCI image layout (image-spec `image-layout.md`) without trusting it: every blob is
/// named by a parsed digest (so a path cannot leave `blobs/`), manifests and configs are read
/// under a size cap, and layers are checked against their digest and size as they stream.
struct OCILayoutReader {
    let directory: String
    static let maxManifestBytes = ManifestParser.maxSize
    static let maxIndexDepth = 4
    static let refNameAnnotation = "org.opencontainers.image.ref.name"

    struct Chosen { var name: String; var descriptor: Descriptor }
    struct Layer { var digest: Digest; var size: Int64; var mediaType: String }
    struct Image { var digest: Digest; var platform: String?; var layers: [Layer] }

    /// The index.json entry `image` names (a tag, a full reference ending in that tag, or a digest);
    /// the only entry when `image` is nil.
    func select(_ image: String?) async throws -> Chosen {
        guard FileManager.default.fileExists(atPath: directory + "/oci-layout") else {
            throw CLIError("\(directory) is not an OCI image layout (no oci-layout file)")
        }
        let index: IndexJSON = try decode(try await read(directory + "/index.json", what: "index.json"), what: "index.json")
        let entries = index.manifests ?? []
        func name(_ d: Descriptor) -> String { d.annotations?[Self.refNameAnnotation] ?? d.digest }
        guard let image else {
            guard entries.count == 1 else {
                throw CLIError("the layout holds \(entries.count) images (\(entries.map(name).joined(separator: ", "))); pick one with --image")
            }
            return Chosen(name: name(entries[0]), descriptor: entries[0])
        }
        let matches = entries.filter { d in
            if d.digest == image { return true }
            guard let ref = d.annotations?[Self.refNameAnnotation] else { return false }
            return ref == image || image.hasSuffix(":" + ref)
        }
        guard let first = matches.first else {
            throw CLIError("no image '\(image.prefix(200))' in the layout (it holds: \(entries.map(name).joined(separator: ", ")))")
        }
        guard Set(matches.map(\.digest)).count == 1 else {
            throw CLIError("'\(image.prefix(200))' names \(matches.count) different images in the layout")
        }
        return Chosen(name: image, descriptor: first)
    }

    /// The image manifests under `descriptor`: itself, or every image child of an index (nested
    /// indexes followed to a bounded depth; attestation manifests, platform unknown/unknown, left out).
    func images(of descriptor: Descriptor, platform: String? = nil, depth: Int = 0) async throws -> [Image] {
        let digest = try parse(descriptor.digest)
        let bytes = try await blob(digest, expectedSize: descriptor.size, limit: Self.maxManifestBytes, what: "manifest")
        let manifest: ManifestJSON = try decode(bytes, what: "manifest \(digest)")
        let mediaType = manifest.mediaType ?? descriptor.mediaType
        if MediaType.isIndex(mediaType) || (manifest.manifests != nil && manifest.layers == nil) {
            guard depth < Self.maxIndexDepth else { throw CLIError("indexes nested deeper than \(Self.maxIndexDepth) at \(digest)") }
            var out: [Image] = []
            for child in manifest.manifests ?? [] {
                if let p = child.platform, p.os == "unknown" || p.architecture == "unknown" { continue }
                guard !MediaType.isIndex(child.mediaType) || depth + 1 < Self.maxIndexDepth else { continue }
                guard child.mediaType == MediaType.ociManifest || child.mediaType == MediaType.dockerManifest || MediaType.isIndex(child.mediaType) else { continue }
                out += try await images(of: child, platform: child.platform.map(Self.platformString), depth: depth + 1)
            }
            return out
        }
        guard let layers = manifest.layers else { throw CLIError("manifest \(digest) has no layers") }
        var platform = platform
        if platform == nil, let config = manifest.config {
            let c = try parse(config.digest)
            let data = try await blob(c, expectedSize: config.size, limit: Self.maxManifestBytes, what: "config")
            if let cfg = try? JSONDecoder().decode(ConfigJSON.self, from: data), let os = cfg.os, let arch = cfg.architecture {
                platform = [os, arch, cfg.variant].compactMap { $0 }.joined(separator: "/")
            }
        }
        return [Image(digest: digest, platform: platform,
                      layers: try layers.map { Layer(digest: try parse($0.digest), size: $0.size, mediaType: $0.mediaType) })]
    }

    static func platformString(_ p: Descriptor.Platform) -> String {
        [p.os, p.architecture, p.variant].compactMap { $0 }.joined(separator: "/")
    }

    /// One layer's index, streamed from its blob file; its digest and size are checked over every byte.
    /// At most one byte more than the descriptor's size is read, and only from a regular file, so a
    /// blob that is a link to `/dev/zero` or far larger than declared ends at once, not after the disk.
    func index(_ layer: Layer) async throws -> LayerIndex {
        let path = blobPath(layer.digest)
        guard layer.size >= 0, layer.size < Int64.max else {
            throw CLIError("layer \(layer.digest) has an invalid size \(layer.size) in its descriptor")
        }
        let end = layer.size + 1
        do {
            return try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
                guard try await handle.info().type == .regular else {
                    throw CLIError("layer \(layer.digest) is not a regular file in the layout (\(path))")
                }
                let state = HashState(layer.digest.algorithm)
                let index = try await LayerWalker().index(
                    HashingChunks(base: handle.readChunks(in: 0..<end, chunkLength: .mebibytes(1)), state: state),
                    mediaType: layer.mediaType)
                if !state.finished && state.bytes < end {
                    // The walker stops at the end of the tar stream; the rest still counts for the digest.
                    for try await chunk in handle.readChunks(in: state.bytes..<end, chunkLength: .mebibytes(1)) { state.add(chunk) }
                }
                guard state.bytes <= layer.size else {
                    throw CLIError("layer \(layer.digest) is larger than the \(layer.size) bytes its descriptor says")
                }
                guard state.bytes == layer.size else {
                    throw CLIError("layer \(layer.digest) is \(state.bytes) bytes, its descriptor says \(layer.size)")
                }
                guard state.hasher.finalize() == layer.digest else {
                    throw CLIError("layer \(layer.digest) does not match its digest")
                }
                return index
            }
        } catch let e as FileSystemError where e.code == .notFound {
            throw CLIError("layer \(layer.digest) is not in the layout (\(path))")
        } catch let e as LayerWalkError {
            throw CLIError("layer \(layer.digest): \(e)")
        }
    }

    func blobPath(_ d: Digest) -> String { "\(directory)/blobs/\(d.algorithm.rawValue)/\(d.hex)" }

    func parse(_ s: String) throws -> Digest {
        do { return try Digest(parsing: s) } catch { throw CLIError("invalid digest '\(s.prefix(100))' in the layout") }
    }

    func blob(_ d: Digest, expectedSize: Int64, limit: Int, what: String) async throws -> Data {
        guard expectedSize <= Int64(limit) else { throw CLIError("\(what) \(d) is \(expectedSize) bytes, over the \(limit)-byte limit") }
        let data = try await read(blobPath(d), what: "\(what) \(d)", limit: limit)
        var h = DigestHasher(d.algorithm)
        h.update(data)
        guard Int64(data.count) == expectedSize, h.finalize() == d else { throw CLIError("\(what) \(d) does not match its digest or size") }
        return data
    }

    func read(_ path: String, what: String, limit: Int = OCILayoutReader.maxManifestBytes) async throws -> Data {
        do {
            let buffer = try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) {
                try await $0.readToEnd(maximumSizeAllowed: .bytes(Int64(limit)))
            }
            return Data(buffer.readableBytesView)
        } catch let e as FileSystemError {
            switch e.code {
            case .notFound: throw CLIError("\(what) is not in the layout (\(path))")
            case .resourceExhausted: throw CLIError("\(what) is over the \(limit)-byte limit")
            default: throw CLIError("cannot read \(what): \(e.message)")
            }
        }
    }

    func decode<T: Decodable>(_ data: Data, what: String) throws -> T {
        do { return try JSONDecoder().decode(T.self, from: data) } catch { throw CLIError("\(what) is not valid JSON of its kind") }
    }

    struct IndexJSON: Decodable { var manifests: [Descriptor]? }
    struct ManifestJSON: Decodable {
        var mediaType: String?
        var config: Descriptor?
        var layers: [Descriptor]?
        var manifests: [Descriptor]?
    }
    struct ConfigJSON: Decodable { var os: String?; var architecture: String?; var variant: String? }
}

/// Counts and hashes the bytes of a layer as the walker reads them (one task uses it at a time).
final class HashState {
    var hasher: DigestHasher
    var bytes: Int64 = 0
    var finished = false
    init(_ algorithm: Digest.Algorithm) { hasher = DigestHasher(algorithm) }
    func add(_ chunk: ByteBuffer) {
        chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        bytes += Int64(chunk.readableBytes)
    }
}

struct HashingChunks<Base: AsyncSequence>: AsyncSequence where Base.Element == ByteBuffer {
    typealias Element = ByteBuffer
    let base: Base
    let state: HashState
    struct AsyncIterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let state: HashState
        mutating func next() async throws -> ByteBuffer? {
            guard let chunk = try await base.next() else { state.finished = true; return nil }
            state.add(chunk)
            return chunk
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), state: state) }
}
