import Foundation
import NIOCore

/// Indexes one layer as it streams: detects the compression (media type and magic bytes),
/// decompresses (gzip, zstd, none), reads the tar stream and hands the files of interest to the
/// catalogers. Only those files are held, each under its cap, and one at a time; every other
/// byte is dropped as it passes. A layer that breaks a limit or is corrupt gives a partial index
/// (`complete == false`, with the problem); only a layer that cannot be read at all (zstd without
/// the system library) throws `LayerWalkError`. Errors of the byte source itself are rethrown.
public struct LayerWalker: Sendable {
    public var limits: ScanLimits
    /// Size of the decompression output buffer.
    var bufferSize = 128 << 10
    /// The system's zstd library (nil where it could not be loaded).
    var zstd: ZstdLibrary? = ZstdLibrary.shared

    public init(limits: ScanLimits = ScanLimits()) { self.limits = limits }

    public func index<Chunks: AsyncSequence>(_ chunks: Chunks, mediaType: String? = nil) async throws -> LayerIndex
        where Chunks.Element == ByteBuffer {
        let indexer = LayerIndexer(limits: limits)
        let tar = TarReader(visitor: indexer, limits: limits)
        var decompressor: (any StreamDecompressor)?
        var compression = LayerCompression.none
        var head = ByteBuffer()
        var decompressed = 0
        var compressedIn = 0
        var stopped = false
        let limits = self.limits

        func start(_ first: ByteBuffer) throws {
            let detected = LayerCompression(magic: first.readableBytesView)
            if let mediaType, let declared = LayerCompression(mediaType: mediaType), declared != detected {
                indexer.problem(nil, "media type says \(declared.rawValue) but the data is \(detected == .none ? "not compressed" : detected.rawValue); read as \(detected.rawValue)")
            }
            compression = detected
            switch detected {
            case .none: decompressor = PassthroughDecompressor()
            case .gzip: decompressor = try GzipDecompressor(bufferSize: bufferSize)
            case .zstd: decompressor = try ZstdDecompressor(library: zstd, bufferSize: bufferSize)
            }
        }

        func push(_ chunk: inout ByteBuffer) throws {
            compressedIn += chunk.readableBytes
            try decompressor!.feed(&chunk) { out in
                decompressed += out.readableBytes
                if decompressed > limits.maxDecompressedBytes {
                    throw TarProblem("layer decompresses to more than \(limits.maxDecompressedBytes) bytes (limit); stopped")
                }
                if compression != .none, decompressed > limits.compressionRatioFloor,
                   decompressed / max(compressedIn, 1) > limits.maxCompressionRatio {
                    throw TarProblem("layer decompresses to more than \(limits.maxCompressionRatio) times its compressed size "
                                     + "(\(decompressed) bytes from \(compressedIn); limit); stopped")
                }
                try out.withUnsafeReadableBytes { try tar.feed($0) }
            }
        }

        func stop(_ error: any Error) throws {
            switch error {
            case let e as TarProblem: indexer.partial(e.description)
            case let e as DecompressionProblem: indexer.partial(e.description)
            default: throw error
            }
            stopped = true
        }

        for try await chunk in chunks {
            var chunk = chunk
            if decompressor == nil {
                head.writeBuffer(&chunk)
                guard head.readableBytes >= 4 else { continue }
                try start(head)
                chunk = head
            }
            do { try push(&chunk) } catch { try stop(error) }
            if stopped || tar.sawEnd { break }
        }
        if !stopped {
            do {
                if decompressor == nil {
                    if head.readableBytes > 0 { try start(head); try push(&head) } else { indexer.partial("empty layer: no tar stream") }
                }
                if decompressor != nil && !tar.sawEnd {
                    try decompressor!.finish()
                    try tar.finish()
                }
            } catch { try stop(error) }
        }
        return indexer.index(compression: compression, entries: tar.entries, decompressedBytes: decompressed)
    }
}

/// The tar visitor that builds a `LayerIndex`.
final class LayerIndexer: TarVisitor {
    private let limits: ScanLimits
    private var files: [String: IndexedFile] = [:]
    private var paths: [String] = []
    private var directories: [String] = []
    private var whiteouts: [String] = []
    private var opaque: [String] = []
    private var problems: [InventoryProblem] = []
    private var problemsNotKept = 0
    private var complete = true

    private var reading: (path: String, interest: FileInterest, bytes: [UInt8])?
    private var scanner: GoBuildInfoScanner?

    init(limits: ScanLimits) { self.limits = limits }

    func problem(_ path: String?, _ reason: String) {
        if problems.count < limits.maxProblems { problems.append(InventoryProblem(path: path, reason: reason)) } else { problemsNotKept += 1 }
    }

    func partial(_ reason: String) {
        complete = false
        problem(nil, reason)
    }

    func tarEntry(_ entry: TarEntry) -> TarDataHandling {
        let path = entry.path
        let slash = path.lastIndex(of: "/")
        let name = slash.map { path[path.index(after: $0)...] } ?? path[...]
        let parent = slash.map { String(path[..<$0]) } ?? ""
        if name.hasPrefix(".wh.") {
            if name == ".wh..wh..opq" { opaque.append(parent) }
            else if name.hasPrefix(".wh..wh.") { /* AUFS bookkeeping (.wh..wh.plnk, …): not a whiteout */ }
            else {
                let target = String(name.dropFirst(4))
                if !target.isEmpty, target != ".", target != ".." { whiteouts.append(parent.isEmpty ? target : parent + "/" + target) }
            }
            return .skip
        }
        // A later entry for the same path in this layer replaces what an earlier one recorded.
        files[path] = nil
        if entry.kind == .directory {
            directories.append(path)
            return .skip
        }
        paths.append(path)
        let interest = FileInterest(path: path)
        switch entry.kind {
        case .symlink:
            if let interest, interest.keepsSymlinks { files[path] = IndexedFile(symlinkTarget: entry.linkTarget) }
            return .skip
        case .file:
            if let interest {
                if entry.sparse {
                    files[path] = IndexedFile(problems: [InventoryProblem(path: path, reason: "sparse file; not read")])
                    complete = false
                    return .skip
                }
                let cap = interest.cap(limits)
                guard entry.size <= cap else {
                    files[path] = IndexedFile(problems: [InventoryProblem(path: path, reason: "\(entry.size) bytes, over the \(cap)-byte limit for this kind of file; not read")])
                    complete = false
                    return .skip
                }
                reading = (path, interest, [])
                reading!.bytes.reserveCapacity(entry.size)
                return .read
            }
            // Any other regular file may be a Go binary: the scanner looks at it as it passes.
            if entry.size >= 64 && !entry.sparse {
                scanner = GoBuildInfoScanner(path: path, maxBytes: limits.maxGoBuildInfoBytes)
                return .read
            }
            return .skip
        case .hardLink:
            // The same file under a second name: it keeps what the first name held when both
            // names are of the same interest (a hard-linked Go binary, jar or METADATA), so
            // deleting one name in a later layer leaves the other.
            if case let .success(target) = TarReader.normalise(entry.linkTarget, maxBytes: limits.maxPathBytes),
               let record = files[target], FileInterest(path: target) == interest, record.symlinkTarget == nil {
                var copy = record
                for k in copy.packages.indices {
                    copy.packages[k].locations = copy.packages[k].locations.map { l in
                        l == target ? path : l.hasPrefix(target + "!") ? path + l.dropFirst(target.count) : l
                    }
                }
                copy.problems = copy.problems.map { InventoryProblem(path: $0.path.map { $0 == target ? path : $0 }, reason: $0.reason) }
                files[path] = copy
            }
            return .skip
        case .other, .directory:
            return .skip
        }
    }

    func tarData(_ bytes: UnsafeRawBufferPointer) {
        if reading != nil {
            reading!.bytes.append(contentsOf: bytes)
        } else if let s = scanner, !s.isDone {
            s.feed(bytes)
        }
    }

    func tarEntryEnd() {
        if let r = reading {
            reading = nil
            files[r.path] = r.interest.catalog(path: r.path, bytes: r.bytes, limits: limits)
        } else if let s = scanner {
            scanner = nil
            if let found = s.result() { files[s.path] = found }
        }
    }

    func tarEntryRefused(path: String, reason: String) {
        // A runtime may still place such an entry somewhere (some clamp `..` at the root), so
        // what the image holds is not known for certain: the index is partial.
        partial("\(path): \(reason)")
    }

    func index(compression: LayerCompression, entries: Int, decompressedBytes: Int) -> LayerIndex {
        LayerIndex(compression: compression, complete: complete, problems: problems, problemsNotKept: problemsNotKept,
                   files: files, paths: Array(Set(paths)).sorted(), directories: Array(Set(directories)).sorted(),
                   whiteouts: Array(Set(whiteouts)).sorted(), opaqueDirectories: Array(Set(opaque)).sorted(),
                   entries: entries, decompressedBytes: decompressedBytes)
    }
}
