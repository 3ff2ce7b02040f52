import Foundation

/// A read-only zip archive held in memory: enough of the format (APPNOTE 6.3) to read OSV's
/// `all.zip` exports. Entries may be stored or deflated; zip64 sizes and offsets are read.
/// Encrypted entries, multi-disk archives and other methods are refused. Every size, offset and
/// count is checked against the data, and inflated output against a limit, so a malformed or
/// hostile archive gives an `ImportProblem`, never a crash or an unbounded allocation.
struct ZipArchive {
    struct Entry {
        let name: String
        let method: UInt16
        let flags: UInt16
        let crc32: UInt32
        let compressedSize: Int
        let size: Int
        let localHeaderOffset: Int
    }

    let data: [UInt8]
    let entries: [Entry]

    init(_ data: Data) throws {
        try self.init(bytes: [UInt8](data))
    }

    /// Takes the bytes as they are (no copy), for archives read out of a layer.
    init(bytes: [UInt8]) throws {
        self.data = bytes
        self.entries = try Self.readDirectory(bytes)
    }

    private static func fail(_ reason: String) -> ImportProblem { ImportProblem(location: "zip", reason: reason) }

    private static func u16(_ d: [UInt8], _ at: Int) throws -> Int {
        guard at >= 0, at + 2 <= d.count else { throw fail("truncated") }
        return Int(d[at]) | Int(d[at + 1]) << 8
    }
    private static func u32(_ d: [UInt8], _ at: Int) throws -> Int {
        let low = try u16(d, at), high = try u16(d, at + 2)
        return low | high << 16
    }
    private static func u64(_ d: [UInt8], _ at: Int) throws -> Int {
        let low = try u32(d, at), high = try u32(d, at + 4)
        guard high < 1 << 30 else { throw fail("size or offset out of range") }
        return low | high << 32
    }

    private static func readDirectory(_ d: [UInt8]) throws -> [Entry] {
        // End of central directory: 22 bytes plus a comment of at most 65535 bytes.
        guard d.count >= 22 else { throw fail("too short to be a zip archive") }
        var eocd = -1
        var k = d.count - 22
        while k >= max(0, d.count - 22 - 65_535) {
            if d[k] == 0x50, d[k + 1] == 0x4B, d[k + 2] == 0x05, d[k + 3] == 0x06 { eocd = k; break }
            k -= 1
        }
        guard eocd >= 0 else { throw fail("no end of central directory record") }
        if try u16(d, eocd + 4) != 0 || u16(d, eocd + 6) != 0 { throw fail("multi-disk archives are not supported") }
        var count = try u16(d, eocd + 10)
        var directorySize = try u32(d, eocd + 12)
        var offset = try u32(d, eocd + 16)
        if count == 0xFFFF || directorySize == 0xFFFF_FFFF || offset == 0xFFFF_FFFF {
            // Zip64 end of central directory locator, just before the classic record.
            let locator = eocd - 20
            guard locator >= 0, try u32(d, locator) == 0x0706_4B50 else { throw fail("zip64 locator missing") }
            let record = try u64(d, locator + 8)
            guard try u32(d, record) == 0x0606_4B50 else { throw fail("zip64 end of central directory missing") }
            count = try u64(d, record + 32)
            directorySize = try u64(d, record + 40)
            offset = try u64(d, record + 48)
        }
        guard offset <= d.count, directorySize <= d.count - offset else { throw fail("central directory outside the archive") }
        // Each directory entry takes at least 46 bytes, which bounds the count by the data.
        guard count <= directorySize / 46, count <= ImportLimits.maxRecords else { throw fail("entry count does not fit the directory") }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var p = offset
        for _ in 0..<count {
            guard try u32(d, p) == 0x0201_4B50 else { throw fail("bad central directory entry") }
            let flags = UInt16(try u16(d, p + 8))
            let method = UInt16(try u16(d, p + 10))
            let crc = UInt32(try u32(d, p + 16))
            var compressed = try u32(d, p + 20)
            var size = try u32(d, p + 24)
            let nameLength = try u16(d, p + 28), extraLength = try u16(d, p + 30), commentLength = try u16(d, p + 32)
            var local = try u32(d, p + 42)
            let nameStart = p + 46, extraStart = nameStart + nameLength
            guard extraStart + extraLength + commentLength <= d.count else { throw fail("truncated") }
            guard let name = String(validating: d[nameStart..<extraStart], as: UTF8.self) else { throw fail("entry name is not UTF-8") }
            // Zip64 extended information replaces the fields that are 0xFFFFFFFF, in order.
            var e = extraStart
            while e + 4 <= extraStart + extraLength {
                let tag = try u16(d, e), length = try u16(d, e + 2)
                guard e + 4 + length <= extraStart + extraLength else { throw fail("bad extra field") }
                if tag == 0x0001 {
                    var q = e + 4
                    if size == 0xFFFF_FFFF { size = try u64(d, q); q += 8 }
                    if compressed == 0xFFFF_FFFF { compressed = try u64(d, q); q += 8 }
                    if local == 0xFFFF_FFFF { local = try u64(d, q); q += 8 }
                    guard q <= e + 4 + length else { throw fail("bad zip64 extra field") }
                }
                e += 4 + length
            }
            entries.append(Entry(name: name, method: method, flags: flags, crc32: crc, compressedSize: compressed,
                                 size: size, localHeaderOffset: local))
            p = extraStart + extraLength + commentLength
        }
        return entries
    }

    /// The entry's bytes, checked against its CRC-32 and refused beyond `limit` bytes.
    func contents(of entry: Entry, limit: Int) throws -> Data {
        Data(try bytes(of: entry, limit: limit))
    }

    /// `contents(of:limit:)` without the copy into `Data`.
    func bytes(of entry: Entry, limit: Int) throws -> [UInt8] {
        func fail(_ reason: String) -> ImportProblem { ImportProblem(location: entry.name, reason: reason) }
        if entry.flags & 1 != 0 { throw fail("encrypted entries are not supported") }
        if entry.size > limit { throw fail("entry larger than \(limit) bytes") }
        let h = entry.localHeaderOffset
        guard try Self.u32(data, h) == 0x0403_4B50 else { throw fail("bad local header") }
        let nameLength = try Self.u16(data, h + 26), extraLength = try Self.u16(data, h + 28)
        let start = h + 30 + nameLength + extraLength
        guard start <= data.count, entry.compressedSize <= data.count - start else { throw fail("entry data outside the archive") }
        let raw = data[start..<(start + entry.compressedSize)]
        let bytes: [UInt8]
        switch entry.method {
        case 0:
            bytes = Array(raw)
        case 8:
            do { bytes = try Inflater.inflate(raw, limit: entry.size) } catch let e as Inflater.Failure {
                throw fail("deflate data: \(e.reason)")
            }
        default:
            throw fail("compression method \(entry.method) is not supported")
        }
        guard bytes.count == entry.size else { throw fail("size does not match the directory") }
        guard CRC32.checksum(bytes) == entry.crc32 else { throw fail("CRC-32 mismatch") }
        return bytes
    }
}

enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}

/// A DEFLATE (RFC 1951) decoder with an output limit.
enum Inflater {
    struct Failure: Error { let reason: String }

    struct Bits {
        let data: ArraySlice<UInt8>
        var position: Int
        var buffer = 0
        var count = 0
        init(_ data: ArraySlice<UInt8>) { self.data = data; position = data.startIndex }

        mutating func read(_ n: Int) throws -> Int {
            while count < n {
                guard position < data.endIndex else { throw Failure(reason: "truncated") }
                buffer |= Int(data[position]) << count
                position += 1
                count += 8
            }
            let v = buffer & ((1 << n) - 1)
            buffer >>= n
            count -= n
            return v
        }

        mutating func alignToByte() { buffer = 0; count = 0 }
    }

    /// A canonical Huffman code: how many codes of each length, and the symbols in code order.
    struct Code {
        var counts = [Int](repeating: 0, count: 16)
        var symbols: [Int] = []

        init(lengths: [Int]) throws {
            for l in lengths { counts[l] += 1 }
            counts[0] = 0
            var left = 1
            for len in 1...15 {
                left <<= 1
                left -= counts[len]
                if left < 0 { throw Failure(reason: "over-subscribed Huffman code") }
            }
            var offsets = [Int](repeating: 0, count: 16)
            for len in 1..<15 { offsets[len + 1] = offsets[len] + counts[len] }
            symbols = [Int](repeating: 0, count: lengths.count)
            for (symbol, l) in lengths.enumerated() where l != 0 {
                symbols[offsets[l]] = symbol
                offsets[l] += 1
            }
        }

        func decode(_ bits: inout Bits) throws -> Int {
            var code = 0, first = 0, index = 0
            for len in 1...15 {
                code |= try bits.read(1)
                let count = counts[len]
                if code - count < first { return symbols[index + (code - first)] }
                index += count
                first = (first + count) << 1
                code <<= 1
            }
            throw Failure(reason: "invalid Huffman code")
        }
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
                               2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]
    static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    static func inflate(_ input: [UInt8], limit: Int) throws -> [UInt8] { try inflate(input[...], limit: limit) }

    static func inflate(_ input: ArraySlice<UInt8>, limit: Int) throws -> [UInt8] {
        var bits = Bits(input)
        var out: [UInt8] = []
        out.reserveCapacity(min(limit, 1 << 20))
        var last = false
        while !last {
            last = try bits.read(1) == 1
            switch try bits.read(2) {
            case 0:
                bits.alignToByte()
                let length = try bits.read(16), complement = try bits.read(16)
                guard length == ~complement & 0xFFFF else { throw Failure(reason: "stored block length check failed") }
                guard bits.position + length <= input.endIndex else { throw Failure(reason: "truncated") }
                guard out.count + length <= limit else { throw Failure(reason: "output exceeds the declared size") }
                out.append(contentsOf: input[bits.position..<(bits.position + length)])
                bits.position += length
            case 1:
                let lit = try Code(lengths: (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 })
                let dist = try Code(lengths: [Int](repeating: 5, count: 30))
                try block(&bits, &out, lit, dist, limit)
            case 2:
                let (lit, dist) = try dynamicCodes(&bits)
                try block(&bits, &out, lit, dist, limit)
            default:
                throw Failure(reason: "invalid block type")
            }
        }
        return out
    }

    static func dynamicCodes(_ bits: inout Bits) throws -> (Code, Code) {
        let literalCount = try bits.read(5) + 257, distanceCount = try bits.read(5) + 1, lengthCount = try bits.read(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else { throw Failure(reason: "too many codes") }
        var codeLengths = [Int](repeating: 0, count: 19)
        for k in 0..<lengthCount { codeLengths[codeLengthOrder[k]] = try bits.read(3) }
        let lengthCode = try Code(lengths: codeLengths)
        var lengths: [Int] = []
        while lengths.count < literalCount + distanceCount {
            let symbol = try lengthCode.decode(&bits)
            switch symbol {
            case 0...15: lengths.append(symbol)
            case 16:
                guard let previous = lengths.last else { throw Failure(reason: "repeat with no previous length") }
                lengths.append(contentsOf: repeatElement(previous, count: 3 + (try bits.read(2))))
            case 17: lengths.append(contentsOf: repeatElement(0, count: 3 + (try bits.read(3))))
            default: lengths.append(contentsOf: repeatElement(0, count: 11 + (try bits.read(7))))
            }
        }
        guard lengths.count == literalCount + distanceCount else { throw Failure(reason: "code lengths overrun") }
        guard lengths[256] != 0 else { throw Failure(reason: "no end-of-block code") }
        return (try Code(lengths: Array(lengths[..<literalCount])), try Code(lengths: Array(lengths[literalCount...])))
    }

    static func block(_ bits: inout Bits, _ out: inout [UInt8], _ lit: Code, _ dist: Code, _ limit: Int) throws {
        while true {
            let symbol = try lit.decode(&bits)
            if symbol < 256 {
                guard out.count < limit else { throw Failure(reason: "output exceeds the declared size") }
                out.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let l = symbol - 257
                guard l < lengthBase.count else { throw Failure(reason: "invalid length code") }
                let length = lengthBase[l] + (try bits.read(lengthExtra[l]))
                let d = try dist.decode(&bits)
                guard d < distanceBase.count else { throw Failure(reason: "invalid distance code") }
                let distance = distanceBase[d] + (try bits.read(distanceExtra[d]))
                guard distance <= out.count else { throw Failure(reason: "distance too far back") }
                guard out.count + length <= limit else { throw Failure(reason: "output exceeds the declared size") }
                let from = out.count - distance
                for k in 0..<length { out.append(out[from + k]) }
            }
        }
    }
}
