import CompressNIO
import Foundation
import NIOCore
@testable import Scanning

/// Writes tar streams for the tests: ustar headers, GNU long names, PAX headers, and whatever
/// broken header a hostile layer would carry.
struct TarWriter {
    var bytes: [UInt8] = []

    static func header(name: String, size: Int, type: Character = "0", link: String = "", prefix: String = "",
                       sizeField: [UInt8]? = nil, extended: Bool = false) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: some Sequence<UInt8>, at: Int, max: Int) { for (k, b) in s.prefix(max).enumerated() { h[at + k] = b } }
        put(name.utf8, at: 0, max: 100)
        put("0000644\0".utf8, at: 100, max: 8)
        put("0000000\0".utf8, at: 108, max: 8)
        put("0000000\0".utf8, at: 116, max: 8)
        put(sizeField ?? Array((String(repeating: "0", count: 11 - String(size, radix: 8).count) + String(size, radix: 8) + "\0").utf8), at: 124, max: 12)
        put("00000000000\0".utf8, at: 136, max: 12)
        h[156] = type.asciiValue!
        put(link.utf8, at: 157, max: 100)
        put("ustar\0".utf8, at: 257, max: 6)
        put("00".utf8, at: 263, max: 2)
        put(prefix.utf8, at: 345, max: 155)
        if extended { h[482] = 1 }
        for k in 148..<156 { h[k] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        let s = String(sum, radix: 8)
        put((String(repeating: "0", count: 6 - s.count) + s + "\0 ").utf8, at: 148, max: 8)
        return h
    }

    mutating func raw(_ b: [UInt8]) { bytes += b }

    mutating func data(_ content: [UInt8]) {
        bytes += content
        bytes += [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
    }

    mutating func file(_ name: String, _ content: String) { file(name, Array(content.utf8)) }
    mutating func file(_ name: String, _ content: [UInt8], type: Character = "0") {
        bytes += Self.header(name: name, size: content.count, type: type)
        data(content)
    }
    mutating func directory(_ name: String) { bytes += Self.header(name: name, size: 0, type: "5") }
    mutating func symlink(_ name: String, to target: String) { bytes += Self.header(name: name, size: 0, type: "2", link: target) }
    mutating func hardLink(_ name: String, to target: String) { bytes += Self.header(name: name, size: 0, type: "1", link: target) }

    /// A GNU `L` header carrying `name`, then the file under a truncated name.
    mutating func longNameFile(_ name: String, _ content: String) {
        let n = Array(name.utf8) + [0]
        bytes += Self.header(name: "././@LongLink", size: n.count, type: "L")
        data(n)
        file(String(name.prefix(90)), content)
    }

    /// A PAX `x` header with `records`, then the file under `name`.
    mutating func paxFile(_ name: String, records: [String: String], _ content: [UInt8]) {
        bytes += Self.header(name: "PaxHeader", size: Self.pax(records).count, type: "x")
        data(Self.pax(records))
        file(name, content)
    }

    static func pax(_ records: [String: String]) -> [UInt8] {
        var out: [UInt8] = []
        for (k, v) in records.sorted(by: { $0.key < $1.key }) {
            let body = " \(k)=\(v)\n"
            var length = body.utf8.count + 1
            while String(length).count + body.utf8.count != length { length += 1 }
            out += Array("\(length)\(body)".utf8)
        }
        return out
    }

    mutating func end() { bytes += [UInt8](repeating: 0, count: 1024) }

    var finished: [UInt8] { var w = self; w.end(); return w.bytes }
}

enum Compress {
    static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        var b = ByteBuffer(bytes: bytes)
        let out = try b.compress(with: .gzip())
        return Array(out.readableBytesView)
    }

    static func deflate(_ bytes: [UInt8]) throws -> [UInt8] {
        var b = ByteBuffer(bytes: bytes)
        let out = try b.compress(with: .deflate())
        return Array(out.readableBytesView)
    }

    /// A zstd frame of raw blocks (RFC 8878 §3.1): real zstd that the system library decodes,
    /// written without a compressor. `rle` repeats one byte `count` times per block instead.
    static func zstdRaw(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x58]  // no FCS, no checksum; window 2 MiB
        var p = 0
        repeat {
            let n = min(128 << 10, bytes.count - p)
            let last = p + n == bytes.count
            let header = UInt32(n) << 3 | (last ? 1 : 0)
            out += [UInt8(header & 0xFF), UInt8(header >> 8 & 0xFF), UInt8(header >> 16 & 0xFF)]
            out += bytes[p..<(p + n)]
            p += n
        } while p < bytes.count
        return out
    }

    /// `blocks` RLE blocks of 128 KiB of `byte` each: a few bytes that decompress to a lot.
    static func zstdRLE(byte: UInt8, blocks: Int) -> [UInt8] {
        var out: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x58]
        for k in 0..<blocks {
            let header = UInt32(128 << 10) << 3 | 1 << 1 | (k == blocks - 1 ? 1 : 0)
            out += [UInt8(header & 0xFF), UInt8(header >> 8 & 0xFF), UInt8(header >> 16 & 0xFF), byte]
        }
        return out
    }
}

/// A zip archive writer (stored or deflated entries) for jar tests.
struct ZipWriter {
    private var body: [UInt8] = []
    private var directory: [UInt8] = []
    private var count = 0

    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    static func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }

    /// Adds an entry; `declaredSize` lies about the uncompressed size when given.
    mutating func add(_ name: String, _ content: [UInt8], deflate: Bool = false, declaredSize: Int? = nil) throws {
        let data = deflate ? try Compress.deflate(content) : content
        let crc = Int(CRC32.checksum(content))
        let size = declaredSize ?? content.count
        let n = Array(name.utf8)
        let offset = body.count
        body += Self.le32(0x0403_4B50) + Self.le16(20) + Self.le16(0) + Self.le16(deflate ? 8 : 0) + Self.le16(0) + Self.le16(0)
            + Self.le32(crc) + Self.le32(data.count) + Self.le32(size) + Self.le16(n.count) + Self.le16(0) + n + data
        directory += Self.le32(0x0201_4B50) + Self.le16(20) + Self.le16(20) + Self.le16(0) + Self.le16(deflate ? 8 : 0)
            + Self.le16(0) + Self.le16(0) + Self.le32(crc) + Self.le32(data.count) + Self.le32(size) + Self.le16(n.count)
            + Self.le16(0) + Self.le16(0) + Self.le16(0) + Self.le16(0) + Self.le32(0) + Self.le32(offset) + n
        count += 1
    }

    var bytes: [UInt8] {
        body + directory + Self.le32(0x0605_4B50) + Self.le16(0) + Self.le16(0) + Self.le16(count) + Self.le16(count)
            + Self.le32(directory.count) + Self.le32(body.count) + Self.le16(0)
    }

    static func pomProperties(group: String, artifact: String, version: String) -> [UInt8] {
        Array("#Generated by Maven\ngroupId=\(group)\nartifactId=\(artifact)\nversion=\(version)\n".utf8)
    }

    static func jar(group: String, artifact: String, version: String, nested: [(String, [UInt8])] = []) throws -> [UInt8] {
        var z = ZipWriter()
        try z.add("META-INF/MANIFEST.MF", Array("Manifest-Version: 1.0\n".utf8), deflate: true)
        try z.add("META-INF/maven/\(group)/\(artifact)/pom.properties", pomProperties(group: group, artifact: artifact, version: version), deflate: true)
        for (name, bytes) in nested { try z.add(name, bytes) }
        return z.bytes
    }
}

/// An ELF file with Go 1.18+ build information, as the Go linker lays it out.
enum GoBinary {
    static let modStart: [UInt8] = [0x30, 0x77, 0xAF, 0x0C, 0x92, 0x74, 0x08, 0x02, 0x41, 0xE1, 0xC1, 0x07, 0xE6, 0xD6, 0x18, 0xE6]
    static let modEnd: [UInt8] = [0xF9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xD8, 0xF2]

    static func uvarint(_ v: Int) -> [UInt8] {
        var v = v, out: [UInt8] = []
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
        return out
    }

    static let magic: [UInt8] = [0xFF] + Array(" Go buildinf:".utf8)

    static func buildInfo(goVersion: String, modInfo: String) -> [UInt8] {
        var h: [UInt8] = magic + [8, 2]
        h += [UInt8](repeating: 0, count: 16)
        let mod = modStart + Array(modInfo.utf8) + modEnd
        return h + uvarint(goVersion.utf8.count) + Array(goVersion.utf8) + uvarint(mod.count) + mod
    }

    /// `padding` bytes of code before the (16-byte aligned) build information.
    static func elf(goVersion: String = "go1.21.5", modInfo: String, padding: Int = 4096) -> [UInt8] {
        var out: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1, 0]
        out += [UInt8](repeating: 0x90, count: padding - out.count)
        out += buildInfo(goVersion: goVersion, modInfo: modInfo)
        out += [UInt8](repeating: 0xCC, count: 1000)
        return out
    }
}

/// An ELF executable with Go 1.13–1.17 build information (the pointer format), laid out as the
/// Go linker lays it out: the strings' bytes in a read-only segment before the data segment,
/// whose first bytes are the 32-byte header pointing at the two string headers after it.
struct GoPointerELF {
    var goVersion = "go1.16.15"
    var modInfo = "path\texample.com/old\nmod\texample.com/old\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.7\th1:x=\n"
    var is64 = true
    var bigEndian = false
    /// The strings in the data segment after their headers instead of before.
    var stringsAfter = false
    /// Read-only bytes before the strings.
    var rodataPrefix: [UInt8] = []
    /// Overrides of the two string headers' (address, length), and of the header's pointers.
    var versionHeader: (UInt64, UInt64)?
    var headerPointers: (UInt64, UInt64)?
    /// Program headers before the loadable ones (a `PT_GNU_STACK` with no bytes first, say).
    var leadingEmptySegment = false

    static let base: UInt64 = 0x400000

    func int(_ v: UInt64, _ width: Int) -> [UInt8] {
        let le = (0..<width).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
        return bigEndian ? le.reversed() : le
    }

    var bytes: [UInt8] {
        let ptr = is64 ? 8 : 4
        let framed = GoBinary.modStart + Array(modInfo.utf8) + GoBinary.modEnd
        let version = Array(goVersion.utf8)
        // Read-only segment at 0x1000: prefix, version, 0, module information.
        var rodata = rodataPrefix + [0, 0]
        let versionAt = rodata.count
        rodata += version + [0, 0, 0]
        let modAt = rodata.count
        rodata += framed + [0, 0]
        let dataOffset = (0x1000 + rodata.count + 0xFFF) / 0x1000 * 0x1000
        // Data segment: header, then the two string headers, then (stringsAfter) the strings.
        var stringsData: [UInt8] = []
        var versionAddress = Self.base + UInt64(0x1000 + versionAt), modAddress = Self.base + UInt64(0x1000 + modAt)
        let headersAt = 32, stringsAt = 32 + 4 * ptr + 16
        if stringsAfter {
            versionAddress = Self.base + UInt64(dataOffset + stringsAt)
            stringsData = version + [0]
            modAddress = Self.base + UInt64(dataOffset + stringsAt + stringsData.count)
            stringsData += framed
            rodata = rodataPrefix + [0]
        }
        let vh = versionHeader ?? (versionAddress, UInt64(version.count))
        var data = GoBinary.magic + [UInt8(ptr), bigEndian ? 1 : 0]
        let pointers = headerPointers ?? (Self.base + UInt64(dataOffset + headersAt), Self.base + UInt64(dataOffset + headersAt + 2 * ptr))
        data += int(pointers.0, ptr) + int(pointers.1, ptr)
        data += [UInt8](repeating: 0, count: 32 - data.count)
        data += int(vh.0, ptr) + int(vh.1, ptr) + int(modAddress, ptr) + int(UInt64(framed.count), ptr)
        data += [UInt8](repeating: 0, count: stringsAt - data.count) + stringsData + [UInt8](repeating: 0, count: 256)

        // Program headers: [empty], text (the headers), rodata, data.
        var segments: [(type: UInt32, flags: UInt32, offset: UInt64, size: UInt64)] = []
        if leadingEmptySegment { segments.append((0x6474E551, 6, 0, 0)) }
        segments.append((1, 5, 0, 0x1000))
        segments.append((1, 4, 0x1000, UInt64(rodata.count)))
        segments.append((1, 6, UInt64(dataOffset), UInt64(data.count)))
        var out: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, is64 ? 2 : 1, bigEndian ? 2 : 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        let ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32
        out += int(2, 2) + int(62, 2) + int(1, 4) + int(Self.base + 0x800, ptr) + int(UInt64(ehsize), ptr) + int(0, ptr)
        out += int(0, 4) + int(UInt64(ehsize), 2) + int(UInt64(phentsize), 2) + int(UInt64(segments.count), 2)
        out += int(is64 ? 64 : 40, 2) + int(0, 2) + int(0, 2)
        for s in segments {
            let vaddr = s.size == 0 ? 0 : Self.base + s.offset
            if is64 {
                out += int(UInt64(s.type), 4) + int(UInt64(s.flags), 4) + int(s.offset, 8) + int(vaddr, 8) + int(vaddr, 8)
                out += int(s.size, 8) + int(s.size, 8) + int(0x1000, 8)
            } else {
                out += int(UInt64(s.type), 4) + int(s.offset, 4) + int(vaddr, 4) + int(vaddr, 4) + int(s.size, 4)
                out += int(s.size, 4) + int(UInt64(s.flags), 4) + int(0x1000, 4)
            }
        }
        out += [UInt8](repeating: 0xC3, count: 0x1000 - out.count) + rodata
        out += [UInt8](repeating: 0, count: dataOffset - out.count) + data
        return out
    }
}

/// Bytes handed to the walker in chunks of `size`, as a blob store would stream them.
struct Chunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let bytes: [UInt8]
    let size: Int
    init(_ bytes: [UInt8], size: Int = 4096) { self.bytes = bytes; self.size = size }

    struct AsyncIterator: AsyncIteratorProtocol {
        let bytes: [UInt8]
        let size: Int
        var position = 0
        mutating func next() async throws -> ByteBuffer? {
            guard position < bytes.count else { return nil }
            let end = Swift.min(bytes.count, position + size)
            defer { position = end }
            return ByteBuffer(bytes: bytes[position..<end])
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes, size: size) }
}

func walk(_ bytes: [UInt8], chunk: Int = 4096, mediaType: String? = nil, limits: LayerLimits = LayerLimits()) async throws -> LayerIndex {
    try await LayerWalker(limits: limits).index(Chunks(bytes, size: chunk), mediaType: mediaType)
}

extension LayerIndex {
    var summary: [String] { packages.map { "\($0.type.rawValue):\($0.name)@\($0.version)" }.sorted() }
    var problemText: String { problems.map(\.description).joined(separator: "\n") }
}

extension ImageInventory {
    var summary: [String] { packages.map { "\($0.type.rawValue):\($0.name)@\($0.version)" }.sorted() }
    var problemText: String { problems.map(\.description).joined(separator: "\n") }
}
