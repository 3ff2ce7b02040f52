#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Go 1.13 to 1.17 build information (the pointer format): the 32-byte header holds two virtual
/// addresses, of the Go string headers (data address, length) of `runtime.buildVersion` and
/// `runtime.modinfo`; the strings' bytes are elsewhere in the file, found through the ELF program
/// headers as Go's `debug/buildinfo` finds them. The linker lays the header out at the start of
/// the data segment, the string headers after it and the strings' bytes in `.rodata`, before it:
/// a binary read once, as it streams, has passed them by the time it knows where they are. So
/// while an ELF file streams, `GoStringWindows` keeps short windows at every place such a string
/// can start (`go1.`, the module information's start sentinel), and `GoPointerBuildInfo` takes
/// what lies after the header from the stream and what lies before it from those windows.

/// An ELF file's program headers, read from its first bytes.
struct ELFSegments: Equatable {
    struct Segment: Equatable {
        var vaddr: UInt64, offset: UInt64, fileSize: UInt64
        var type: UInt64 = 1, flags: UInt64 = 0
    }
    var segments: [Segment]

    /// Nil when `head` does not hold a well-formed ELF header and every program header.
    init?(head: [UInt8]) {
        guard head.count >= 52, head[0] == 0x7F, head[1] == 0x45, head[2] == 0x4C, head[3] == 0x46,
              head[4] == 1 || head[4] == 2, head[5] == 1 || head[5] == 2 else { return nil }
        let is64 = head[4] == 2, big = head[5] == 2
        func read(_ at: UInt64, _ width: Int) -> UInt64? {
            guard at <= UInt64(head.count), UInt64(width) <= UInt64(head.count) - at else { return nil }
            var v: UInt64 = 0
            for k in 0..<width {
                let byte = UInt64(head[Int(at) + (big ? k : width - 1 - k)])
                v = v << 8 | byte
            }
            return v
        }
        guard let phoff = read(is64 ? 32 : 28, is64 ? 8 : 4), let entry = read(is64 ? 54 : 42, 2),
              let count = read(is64 ? 56 : 44, 2), entry >= (is64 ? 56 : 32), count <= 512 else { return nil }
        var segments: [Segment] = []
        for i in 0..<count {
            let (base, overflow) = phoff.addingReportingOverflow(i * entry)
            guard !overflow, base <= UInt64(head.count) else { return nil }
            let fields = is64 ? (offset: (8, 8), vaddr: (16, 8), size: (32, 8), flags: 4) : (offset: (4, 4), vaddr: (8, 4), size: (16, 4), flags: 24)
            guard let offset = read(base &+ UInt64(fields.offset.0), fields.offset.1),
                  let vaddr = read(base &+ UInt64(fields.vaddr.0), fields.vaddr.1),
                  let size = read(base &+ UInt64(fields.size.0), fields.size.1),
                  let type = read(base, 4), let flags = read(base &+ UInt64(fields.flags), 4) else { return nil }
            segments.append(Segment(vaddr: vaddr, offset: offset, fileSize: size, type: type, flags: flags))
        }
        self.segments = segments
    }

    /// Whether the build information's header may be at file offset `offset`: in a loadable,
    /// writable, not executable segment, where the Go linker puts it (`debug/buildinfo` looks
    /// only in the data segment, so a `\xff Go buildinf:` literal in read-only data, as in the
    /// `go` command itself, is no header).
    func mayHoldBuildInfo(at offset: Int) -> Bool {
        let at = UInt64(offset)
        return segments.contains { $0.type == 1 && $0.flags & 3 == 2 && $0.offset <= at && at - $0.offset < $0.fileSize }
    }

    /// Where `count` bytes at virtual address `address` are in the file, as `debug/buildinfo`'s
    /// ELF reader finds them: the first program header (of any type) whose range holds the
    /// address, and no more bytes than it holds. Nil when that header holds fewer than `count`
    /// (or none: a header with no bytes in the file, as Go's wrapping arithmetic meets one,
    /// covers every address and fails the read).
    func fileOffset(of address: UInt64, count: UInt64) -> Int? {
        for s in segments where s.vaddr <= address && address <= s.vaddr &+ s.fileSize &- 1 {
            let into = address - s.vaddr
            guard into < s.fileSize, count <= s.fileSize - into else { return nil }
            let (start, overflow) = s.offset.addingReportingOverflow(into)
            guard !overflow, start <= UInt64(Int.max / 2) else { return nil }
            return Int(start)
        }
        return nil
    }
}

/// Windows of an ELF file's bytes where a Go version string (`go1.`) or framed module information
/// (its start sentinel) begins, kept as the file streams so the pointer format's strings can be
/// read once the header that points at them comes by. Bounded: at most `maxVersionWindows`
/// windows of `versionWindowBytes`, and module windows of at most `maxModBytes` in all.
struct GoStringWindows {
    static let versionStart = Array("go1.".utf8)
    static let versionWindowBytes = 64
    static let maxVersionWindows = 1024
    static let maxModWindows = 8
    static let modStart: [UInt8] = [0x30, 0x77, 0xAF, 0x0C, 0x92, 0x74, 0x08, 0x02, 0x41, 0xE1, 0xC1, 0x07, 0xE6, 0xD6, 0x18, 0xE6]
    static let modEnd: [UInt8] = [0xF9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xD8, 0xF2]

    struct Window {
        var at: Int
        var bytes: [UInt8]
        var limit: Int
        var isMod: Bool
        var open: Bool
    }

    let maxModBytes: Int
    private(set) var windows: [Window] = []
    /// The indices of the windows still growing.
    private var growing: [Int] = []
    private var versionWindows = 0, modWindows = 0, modBytes = 0
    /// The last bytes of the stream so far (fewer than a sentinel), for starts across chunks.
    private var tail: [UInt8] = []
    private var fed = 0

    /// `startingAt`: the file offset of the first byte it will be fed.
    init(maxModBytes: Int, startingAt: Int = 0) {
        self.maxModBytes = maxModBytes
        fed = startingAt
    }

    mutating func feed(_ chunk: UnsafeRawBufferPointer) {
        let base = fed
        fed += chunk.count
        guard !chunk.isEmpty else { return }
        // Starts that begin in the tail and run into this chunk.
        if !tail.isEmpty {
            let joined = tail + chunk.prefix(Self.modStart.count - 1)
            let tailAt = base - tail.count
            for needle in [Self.versionStart, Self.modStart] {
                var s = 0
                // Only starts that end in this chunk: one wholly in the tail was found before.
                while s < tail.count, let found = Self.find(needle, in: joined, from: s), found < tail.count {
                    s = found + 1
                    guard found + needle.count > tail.count else { continue }
                    open(at: tailAt + found, with: Array(tail[found...]), isMod: needle == Self.modStart)
                }
            }
        }
        // Open windows grow with this chunk (those just opened in the tail too); module windows
        // within the budget they share.
        for i in growing {
            let before = windows[i].bytes.count
            var take = min(windows[i].limit - before, chunk.count)
            if windows[i].isMod { take = min(take, max(0, maxModBytes - modBytes)) }
            windows[i].bytes.append(contentsOf: chunk.prefix(take))
            if windows[i].isMod {
                modBytes += take
                if modBytes >= maxModBytes { windows[i].limit = windows[i].bytes.count }
            }
            settle(&windows[i], searchFrom: max(0, before - (Self.modEnd.count - 1)))
        }
        growing.removeAll { !windows[$0].open }
        // Starts wholly inside this chunk.
        do {
            let bytes = chunk.assumingMemoryBound(to: UInt8.self)
            for needle in [Self.versionStart, Self.modStart] {
                var s = 0
                while let found = Self.find(needle, in: bytes, from: s) {
                    let isMod = needle == Self.modStart
                    guard canOpen(isMod: isMod) else { break }
                    let limit = isMod ? maxModBytes - modBytes : Self.versionWindowBytes
                    open(at: base + found, with: Array(bytes[found..<min(bytes.count, found + limit)]), isMod: isMod)
                    s = found + 1
                }
            }
        }
        let keep = Self.modStart.count - 1
        tail = chunk.count >= keep ? Array(chunk.suffix(keep)) : Array((tail + chunk).suffix(keep))
    }

    private func canOpen(isMod: Bool) -> Bool {
        isMod ? modWindows < Self.maxModWindows && modBytes < maxModBytes : versionWindows < Self.maxVersionWindows
    }

    private mutating func open(at: Int, with bytes: [UInt8], isMod: Bool) {
        guard canOpen(isMod: isMod) else { return }
        let limit = isMod ? maxModBytes - modBytes : Self.versionWindowBytes
        var window = Window(at: at, bytes: Array(bytes.prefix(limit)), limit: limit, isMod: isMod, open: true)
        if isMod { modWindows += 1; modBytes += window.bytes.count } else { versionWindows += 1 }
        settle(&window, searchFrom: Self.modStart.count)
        if window.open { growing.append(windows.count) }
        windows.append(window)
    }

    /// Closes a full window, and a module window at its end sentinel.
    private func settle(_ window: inout Window, searchFrom: Int) {
        if window.isMod, let end = Self.find(Self.modEnd, in: window.bytes, from: max(searchFrom, Self.modStart.count)) {
            window.bytes.removeSubrange((end + Self.modEnd.count)...)
            window.open = false
        } else if window.bytes.count >= window.limit {
            window.open = false
        }
    }

    /// `count` bytes at file offset `offset`, when one window holds them all.
    func bytes(at offset: Int, count: Int) -> [UInt8]? {
        for w in windows where w.at <= offset && offset - w.at <= w.bytes.count && count <= w.bytes.count - (offset - w.at) {
            return Array(w.bytes[(offset - w.at)..<(offset - w.at + count)])
        }
        return nil
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        haystack.withUnsafeBytes { find(needle, in: $0.bindMemory(to: UInt8.self), from: from) }
    }

    /// The first `needle` at or after `from`: `memchr` for one of its bytes, then a comparison of
    /// the rest. The byte looked for is one rare in machine code and text: `g` (0x67, an address
    /// size prefix in x86-64 code) of `go1.`, the sentinel's 0xAF.
    static func find(_ needle: [UInt8], in haystack: UnsafeBufferPointer<UInt8>, from: Int) -> Int? {
        guard from >= 0, from < haystack.count, let base = haystack.baseAddress, !needle.isEmpty else { return nil }
        let anchor = needle.count > 4 ? 2 : 0
        var p = from + anchor
        while p < haystack.count {
            guard let hit = memchr(base + p, Int32(needle[anchor]), haystack.count - p) else { return nil }
            let at = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            let start = at - anchor
            if start + needle.count <= haystack.count {
                var k = 0
                while k < needle.count && base[start + k] == needle[k] { k += 1 }
                if k == needle.count { return start }
            } else {
                return nil
            }
            p = at + 1
        }
        return nil
    }
}

/// The pointer format's two strings, read as the file streams on from its header: each string
/// header where the stream passes it, then each string's bytes from the stream or, when they
/// lie before the current position, from the windows kept so far.
struct GoPointerBuildInfo {
    enum Slot: Int { case version = 0, modInfo = 1 }
    struct Want { var slot: Slot; var isHeader: Bool; var offset: Int; var count: Int; var bytes: [UInt8] = [] }

    let segments: ELFSegments
    let pointerSize: Int
    let bigEndian: Bool
    let maxBytes: Int
    private(set) var wants: [Want] = []
    /// Each string as read; an empty string when it cannot be (Go's `readString` gives "" then).
    private(set) var strings: [[UInt8]?] = [nil, nil]
    /// Why a string could not be read because of how it was streamed, not because of the file.
    private(set) var missed: String?

    /// From the 32-byte header found at `headerAt`; nil when its pointer size is neither 4 nor 8.
    init?(header: [UInt8], segments: ELFSegments, maxBytes: Int) {
        guard header.count >= 32, header[14] == 4 || header[14] == 8 else { return nil }
        self.segments = segments
        pointerSize = Int(header[14])
        bigEndian = header[15] != 0
        self.maxBytes = maxBytes
        for slot in [Slot.version, .modInfo] {
            let address = pointer(header, at: 16 + slot.rawValue * pointerSize)
            guard let offset = segments.fileOffset(of: address, count: UInt64(2 * pointerSize)) else {
                strings[slot.rawValue] = []
                continue
            }
            wants.append(Want(slot: slot, isHeader: true, offset: offset, count: 2 * pointerSize))
        }
    }

    var isResolved: Bool { strings.allSatisfy { $0 != nil } }

    func pointer(_ bytes: [UInt8], at p: Int) -> UInt64 {
        var v: UInt64 = 0
        for k in 0..<pointerSize { v = v << 8 | UInt64(bytes[p + (bigEndian ? k : pointerSize - 1 - k)]) }
        return v
    }

    /// The stream's bytes from file offset `base` on (`windows` holds what came before it).
    mutating func feed(_ chunk: UnsafeRawBufferPointer, at base: Int, windows: GoStringWindows?) {
        var progress = true
        while progress {
            progress = false
            var i = 0
            while i < wants.count {
                var want = wants[i]
                let have = want.offset + want.bytes.count
                if have < base {
                    // Before this chunk and not yet begun: only the windows can have it.
                    wants.remove(at: i)
                    if want.bytes.isEmpty, let kept = windows?.bytes(at: want.offset, count: want.count) {
                        want.bytes = kept
                        complete(want)
                    } else {
                        strings[want.slot.rawValue] = []
                        missed = missed ?? "its \(want.slot == .version ? "Go version" : "module information") lies before "
                            + "the build information, where no copy of it was kept"
                    }
                    progress = true
                    continue
                }
                if have < base + chunk.count {
                    let take = min(want.count - want.bytes.count, base + chunk.count - have)
                    want.bytes.append(contentsOf: chunk[(have - base)..<(have - base + take)])
                    if want.bytes.count == want.count {
                        wants.remove(at: i)
                        complete(want)
                        progress = true
                        continue
                    }
                    wants[i] = want
                }
                i += 1
            }
        }
    }

    /// The file ended: what is still wanted is not there.
    mutating func finish() {
        for want in wants {
            strings[want.slot.rawValue] = []
            missed = missed ?? "the file ends before its \(want.slot == .version ? "Go version" : "module information")"
        }
        wants = []
    }

    private mutating func complete(_ want: Want) {
        guard want.isHeader else {
            strings[want.slot.rawValue] = want.bytes
            return
        }
        let address = pointer(want.bytes, at: 0), length = pointer(want.bytes, at: pointerSize)
        guard length <= UInt64(maxBytes) else {
            strings[want.slot.rawValue] = []
            missed = missed ?? "a string of \(length) bytes, over the \(maxBytes)-byte limit"
            return
        }
        guard length > 0 else {
            strings[want.slot.rawValue] = []
            return
        }
        guard let offset = segments.fileOffset(of: address, count: length) else {
            strings[want.slot.rawValue] = []
            return
        }
        // A string before the current position is in the windows or nowhere (`feed` decides).
        wants.append(Want(slot: want.slot, isHeader: false, offset: offset, count: Int(length)))
    }
}
