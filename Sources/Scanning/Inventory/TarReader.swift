import Foundation

/// One tar entry as the walker sees it: its path already normalised.
struct TarEntry {
    enum Kind: Equatable { case file, hardLink, symlink, directory, other }
    var path: String
    var linkTarget: String
    /// Bytes of data that follow the header in the stream.
    var size: Int
    var kind: Kind
    /// GNU or PAX sparse file: the stored data is not the file's bytes as they read.
    var sparse: Bool
}

/// What the reader's visitor does with an entry's data.
enum TarDataHandling { case skip, read }

protocol TarVisitor: AnyObject {
    func tarEntry(_ entry: TarEntry) -> TarDataHandling
    /// Data of the current entry, in order (only when `tarEntry` answered `.read`).
    func tarData(_ bytes: UnsafeRawBufferPointer)
    /// The current entry's data is complete (only when `tarEntry` answered `.read`).
    func tarEntryEnd()
    /// An entry that was ignored, with why (a path with `..`, an overlong name, …).
    func tarEntryRefused(path: String, reason: String)
}

/// A problem that stops the tar stream: what was read before it stands, the rest is unknown.
struct TarProblem: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// An incremental tar reader (ustar, GNU `L`/`K` long names, old GNU sparse headers, PAX `x`
/// and `g`), fed chunks of any size as they decompress: it holds one header block and the
/// bounded data of the extension headers, never an entry's data.
final class TarReader {
    private enum State {
        case header
        /// Data of a regular entry, then its padding.
        case data(remaining: Int, padding: Int, read: Bool)
        /// Data of a `L`, `K`, `x` or `g` header entry, collected into `meta`.
        case meta(kind: UInt8, remaining: Int, padding: Int)
        /// Extension blocks of an old GNU sparse header, then the entry's data.
        case sparseExtension(entry: TarEntry, read: Bool)
        case ended
    }

    private let visitor: any TarVisitor
    private let limits: ScanLimits
    private var state = State.header
    private var block: [UInt8] = []
    private var meta: [UInt8] = []
    private var longName: String?
    private var longLink: String?
    private var pax: [String: String] = [:]
    private var sparseExtensions = 0
    private(set) var entries = 0
    /// True once the end-of-archive marker was read.
    var sawEnd: Bool { if case .ended = state { return true } else { return false } }

    init(visitor: any TarVisitor, limits: ScanLimits) {
        self.visitor = visitor
        self.limits = limits
        block.reserveCapacity(512)
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws {
        var p = 0
        let n = bytes.count
        while p < n {
            switch state {
            case .ended:
                // Whatever follows the end-of-archive marker (more zero blocks) is not read.
                return
            case .header:
                let take = min(512 - block.count, n - p)
                block.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + take)]))
                p += take
                if block.count == 512 {
                    let header = block
                    block.removeAll(keepingCapacity: true)
                    try parseHeader(header)
                }
            case let .data(remaining, padding, read):
                if remaining > 0 {
                    let take = min(remaining, n - p)
                    if read { visitor.tarData(UnsafeRawBufferPointer(rebasing: bytes[p..<(p + take)])) }
                    p += take
                    state = .data(remaining: remaining - take, padding: padding, read: read)
                    if remaining - take == 0 && read { visitor.tarEntryEnd() }
                } else {
                    let take = min(padding, n - p)
                    p += take
                    state = padding - take == 0 ? .header : .data(remaining: 0, padding: padding - take, read: read)
                }
                if case let .data(r, pad, _) = state, r == 0, pad == 0 { state = .header }
            case let .meta(kind, remaining, padding):
                if remaining > 0 {
                    let take = min(remaining, n - p)
                    meta.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + take)]))
                    p += take
                    state = .meta(kind: kind, remaining: remaining - take, padding: padding)
                } else {
                    let take = min(padding, n - p)
                    p += take
                    state = .meta(kind: kind, remaining: 0, padding: padding - take)
                }
                if case let .meta(k, r, pad) = state, r == 0, pad == 0 {
                    try finishMeta(kind: k)
                    state = .header
                }
            case let .sparseExtension(entry, read):
                let take = min(512 - block.count, n - p)
                block.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[p..<(p + take)]))
                p += take
                if block.count == 512 {
                    let more = block[504] != 0
                    block.removeAll(keepingCapacity: true)
                    sparseExtensions += 1
                    if sparseExtensions > limits.maxSparseExtensionBlocks {
                        throw TarProblem("sparse file \(Self.quoted(entry.path)) has more than \(limits.maxSparseExtensionBlocks) extension headers")
                    }
                    if !more { startData(entry, read: read) }
                }
            }
        }
    }

    /// The input ended: an archive cut inside an entry or a header is truncated. A missing
    /// end-of-archive marker after a complete entry is tolerated (many writers omit it), and so is
    /// a missing padding of the last entry whose data is whole (umoci 0.4 writes such layers; Go's
    /// archive/tar, so runtimes and Syft, read them as complete).
    func finish() throws {
        switch state {
        case .ended: return
        case .header:
            if !block.isEmpty { throw TarProblem("truncated tar: the input ends inside a header") }
        case .data(remaining: 0, padding: _, read: _): return
        case .data, .meta, .sparseExtension:
            throw TarProblem("truncated tar: the input ends inside an entry")
        }
    }

    private func startData(_ entry: TarEntry, read: Bool) {
        let padding = (512 - entry.size % 512) % 512
        if entry.size == 0 {
            if read { visitor.tarEntryEnd() }
            state = .header
        } else {
            state = .data(remaining: entry.size, padding: padding, read: read)
        }
    }

    private func parseHeader(_ h: [UInt8]) throws {
        if h.allSatisfy({ $0 == 0 }) {
            // End-of-archive (two zero blocks; one is taken as enough).
            state = .ended
            return
        }
        guard let stored = Self.octal(h[148..<156]) else { throw TarProblem("invalid tar header (checksum field)") }
        var unsigned = 0, signed = 0
        for (k, b) in h.enumerated() {
            let v = (148..<156).contains(k) ? 0x20 : b
            unsigned += Int(v); signed += Int(Int8(bitPattern: v))
        }
        guard stored == unsigned || stored == signed else { throw TarProblem("invalid tar header (checksum mismatch)") }
        let type = h[156]
        guard var size = try Self.number(h[124..<136]) else { throw TarProblem("invalid tar header (size field)") }

        switch type {
        case UInt8(ascii: "L"), UInt8(ascii: "K"), UInt8(ascii: "x"), UInt8(ascii: "g"):
            guard size <= limits.maxHeaderBytes else {
                throw TarProblem("tar extension header of \(size) bytes exceeds the limit of \(limits.maxHeaderBytes)")
            }
            meta.removeAll(keepingCapacity: true)
            let padding = (512 - size % 512) % 512
            if size == 0 { try finishMeta(kind: type) } else { state = .meta(kind: type, remaining: size, padding: padding) }
            return
        default: break
        }

        entries += 1
        if entries > limits.maxEntries { throw TarProblem("more than \(limits.maxEntries) entries in the layer") }

        let ustar = h[257..<263].elementsEqual("ustar\0".utf8)
        var rawName: String
        if let l = longName { rawName = l } else {
            rawName = Self.string(h[0..<100])
            if ustar {
                let prefix = Self.string(h[345..<500])
                if !prefix.isEmpty { rawName = prefix + "/" + rawName }
            }
        }
        var rawLink = longLink ?? Self.string(h[157..<257])
        var sparse = type == UInt8(ascii: "S")
        if let p = pax["path"] { rawName = p }
        if let l = pax["linkpath"] { rawLink = l }
        if let s = pax["size"] { size = Int(s)! }  // validated when the PAX header was read
        if pax.keys.contains(where: { $0.hasPrefix("GNU.sparse.") }) {
            sparse = true
            if let n = pax["GNU.sparse.name"] { rawName = n }
        }
        longName = nil; longLink = nil; pax = [:]

        let kind: TarEntry.Kind
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "S"): kind = .file
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symlink
        case UInt8(ascii: "5"): kind = .directory
        default: kind = .other
        }
        // Header-only types carry no data in the stream whatever their size field says (POSIX;
        // Go's archive/tar reads them so too); other types, unknown ones included, may.
        if [UInt8(ascii: "1"), UInt8(ascii: "2"), UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "5"), UInt8(ascii: "6")].contains(type) {
            size = 0
        }
        if rawLink.utf8.count > limits.maxPathBytes { rawLink = String(rawLink.prefix(limits.maxPathBytes)) }

        var handling = TarDataHandling.skip
        var entry = TarEntry(path: "", linkTarget: rawLink, size: size, kind: kind, sparse: sparse)
        switch Self.normalise(rawName, maxBytes: limits.maxPathBytes) {
        case let .success(path):
            entry.path = path
            if !path.isEmpty { handling = visitor.tarEntry(entry) }
        case let .failure(reason):
            visitor.tarEntryRefused(path: String(rawName.prefix(256)), reason: reason.description)
        }
        let read = handling == .read
        if sparse && type == UInt8(ascii: "S") && h[482] != 0 {
            sparseExtensions = 0
            state = .sparseExtension(entry: entry, read: read)
        } else {
            startData(entry, read: read)
        }
    }

    private func finishMeta(kind: UInt8) throws {
        switch kind {
        case UInt8(ascii: "L"):
            longName = Self.string(meta[...])
        case UInt8(ascii: "K"):
            longLink = Self.string(meta[...])
        case UInt8(ascii: "x"):
            pax = try Self.paxRecords(meta)
            if let s = pax["size"] {
                guard !s.isEmpty, s.utf8.count <= 18, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), Int(s) != nil else {
                    throw TarProblem("invalid PAX size \(Self.quoted(s))")
                }
            }
        default:
            // Global PAX headers are checked, not applied: no writer of image layers relies on them.
            _ = try Self.paxRecords(meta)
        }
        meta.removeAll(keepingCapacity: true)
    }

    /// "LEN KEY=VALUE\n" records, each length checked against the bytes.
    static func paxRecords(_ d: [UInt8]) throws -> [String: String] {
        var out: [String: String] = [:]
        var p = 0
        while p < d.count {
            if d[p] == 0 { break }  // padding some writers leave
            var q = p, length = 0
            while q < d.count, d[q] >= 0x30, d[q] <= 0x39, q - p < 10 { length = length * 10 + Int(d[q] - 0x30); q += 1 }
            guard q > p, q < d.count, d[q] == 0x20, length > q - p + 1, length <= d.count - p, d[p + length - 1] == 0x0A else {
                throw TarProblem("malformed PAX header record")
            }
            let record = d[(q + 1)..<(p + length - 1)]
            guard let eq = record.firstIndex(of: UInt8(ascii: "=")) else { throw TarProblem("malformed PAX header record") }
            let key = String(decoding: record[record.startIndex..<eq], as: UTF8.self)
            let value = String(decoding: record[(eq + 1)...], as: UTF8.self)
            out[key] = value
            p += length
        }
        return out
    }

    enum PathRefusal: Error, CustomStringConvertible {
        case escapes, tooLong(Int), nul
        var description: String {
            switch self {
            case .escapes: return "path has a '..' component (it could escape the root); entry ignored"
            case let .tooLong(n): return "path longer than \(n) bytes; entry ignored"
            case .nul: return "path contains a NUL byte; entry ignored"
            }
        }
    }

    /// "./a//b/./c/" → "a/b/c"; "/etc/x" → "etc/x"; anything with ".." is refused.
    static func normalise(_ raw: String, maxBytes: Int) -> Result<String, PathRefusal> {
        if raw.utf8.count > maxBytes { return .failure(.tooLong(maxBytes)) }
        if raw.utf8.contains(0) { return .failure(.nul) }
        var parts: [Substring] = []
        for c in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { return .failure(.escapes) }
            parts.append(c)
        }
        return .success(parts.joined(separator: "/"))
    }

    /// A NUL-terminated field.
    static func string(_ field: ArraySlice<UInt8>) -> String {
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[field.startIndex..<end], as: UTF8.self)
    }

    static func quoted(_ s: String) -> String { "\"\(s.prefix(200))\"" }

    /// An octal field (spaces and NULs around it allowed).
    static func octal(_ field: ArraySlice<UInt8>) -> Int? {
        var v = 0, digits = 0
        for b in field {
            if b == 0x20 || b == 0 { if digits > 0 { break } else { continue } }
            guard b >= 0x30, b <= 0x37 else { return nil }
            guard v <= (Int.max >> 3) else { return nil }
            v = v << 3 | Int(b - 0x30)
            digits += 1
        }
        return v
    }

    /// A numeric field: octal, or GNU base-256 (high bit set) for values that do not fit;
    /// negative or out-of-range values are refused.
    static func number(_ field: ArraySlice<UInt8>) throws -> Int? {
        guard let first = field.first else { return nil }
        if first & 0x80 == 0 { return octal(field) }
        if first & 0x40 != 0 { throw TarProblem("invalid tar header (negative size)") }
        var v = Int(first & 0x3F)
        for b in field.dropFirst() {
            guard v <= (Int.max >> 8) else { throw TarProblem("invalid tar header (size out of range)") }
            v = v << 8 | Int(b)
        }
        return v
    }
}
