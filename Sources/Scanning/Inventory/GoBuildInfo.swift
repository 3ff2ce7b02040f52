import Foundation

/// Finds the build information a Go binary carries (`\xff Go buildinf:` at a 16-byte aligned
/// offset, Go 1.18 and later: the Go version and the module information inline after the 32-byte
/// header) as the binary streams past, without keeping the binary: it holds at most a few bytes
/// between chunks, then the bounded build information once the header was seen.
final class GoBuildInfoScanner {
    static let magic: [UInt8] = [0xFF] + Array(" Go buildinf:".utf8)
    static let headerSize = 32

    let path: String
    private let maxBytes: Int
    /// Bytes fed so far (the file offset of the next byte).
    private var fed = 0
    /// Bytes from an aligned offset near a chunk's end, too few to compare with the magic.
    private var carry: [UInt8] = []
    /// The file offset of `carry`'s first byte.
    private var carryAt = 0
    /// The header and what follows, once found.
    private var captured: [UInt8]?
    /// The file offset of `captured`'s first byte (the magic's).
    private var capturedAt = 0
    /// The file's first bytes: its ELF header and program headers (the pointer format's map).
    private var head: [UInt8] = []
    static let headBytes = 16 << 10
    private(set) var isELF: Bool?
    /// Where Go strings may start, kept until the build information is found (pointer format).
    private var windows: GoStringWindows?
    /// The pointer format's strings being read (Go 1.13 to 1.17).
    private var pointerFormat: GoPointerBuildInfo?
    /// The first version-like string of the binary, for a main module built as `(devel)`.
    private var sniffer = GoVersionSniffer()
    /// The build information once it is whole (or known unreadable): no more of it is kept, and
    /// the binary is read on only when its main module's version is to be guessed.
    private var settled: (info: Result<BuildInfo, BuildInfoProblem>, guessing: Bool)?

    init(path: String, maxBytes: Int) {
        self.path = path
        self.maxBytes = maxBytes
    }

    /// True once the scanner has what it needs or knows the file is not a Go binary.
    var isDone: Bool {
        if isELF == false { return true }
        guard let settled else { return false }
        return !settled.guessing || sniffer.isDone
    }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        let base = fed
        fed += bytes.count
        if head.count < Self.headBytes { head.append(contentsOf: bytes.prefix(Self.headBytes - head.count)) }
        if isELF == nil, head.count >= 4 {
            isELF = head.prefix(4).elementsEqual([0x7F, 0x45, 0x4C, 0x46])
            // The windows start with this chunk: the bytes before it are the ELF magic's.
            if isELF == true { windows = GoStringWindows(maxModBytes: maxBytes, startingAt: base) } else { head = [] }
        }
        if isELF == false { return }
        sniffer.feed(bytes)
        // Until the build information is known, every byte passes the windows: a pointer-format
        // string may lie anywhere before the string header that names it.
        if settled == nil { windows?.feed(bytes) }
        if pointerFormat != nil {
            if settled == nil {
                pointerFormat!.feed(bytes, at: base, windows: windows)
                settlePointerFormat()
            }
            return
        }
        if captured != nil {
            if settled == nil {
                captured!.append(contentsOf: bytes.prefix(maxBytes - captured!.count))
                settle(chunk: bytes, at: base)
            }
            return
        }
        defer { if captured != nil { settle(chunk: bytes, at: base) } }
        let magic = Self.magic
        if !carry.isEmpty {
            // The carry starts at an aligned offset in an earlier chunk: complete it and compare.
            let take = min(magic.count - carry.count, bytes.count)
            carry.append(contentsOf: bytes.prefix(take))
            if carry.count < magic.count { return }
            if carry == magic, headerMayBe(at: carryAt) {
                captured = carry
                capturedAt = carryAt
                captured!.append(contentsOf: bytes[take...].prefix(maxBytes - carry.count))
                carry = []
                return
            }
            carry = []
        }
        // Aligned offsets only: the linker puts the header at a 16-byte boundary of the file.
        var p = (16 - base % 16) % 16
        let n = bytes.count
        while p + magic.count <= n {
            if bytes[p] == 0xFF {
                var k = 1
                while k < magic.count && bytes[p + k] == magic[k] { k += 1 }
                if k == magic.count, headerMayBe(at: base + p) {
                    captured = Array(bytes[p..<min(n, p + maxBytes)])
                    capturedAt = base + p
                    return
                }
            }
            p += 16
        }
        if p < n {
            carry = Array(bytes[p...])
            carryAt = base + p
        }
    }

    /// Whether a magic at `offset` may be the header: in the data segment when the program
    /// headers can be read and name one (`ELFSegments.mayHoldBuildInfo`), anywhere aligned when
    /// they cannot or name none (an RWX segment: `debug/buildinfo` then finds the section by its
    /// name). Read at each candidate (they are rare), so headers read later still count.
    private func headerMayBe(at offset: Int) -> Bool {
        guard let known = ELFSegments(head: head), known.segments.contains(where: { $0.type == 1 && $0.flags & 3 == 2 })
        else { return true }
        return known.mayHoldBuildInfo(at: offset)
    }

    /// The pointer format (Go 1.13 to 1.17) once its header is whole: its strings are read from
    /// here on (and from the windows kept before), starting with the bytes captured after it and
    /// the rest of the current chunk (`chunk`, at file offset `base`), which the capture's limit
    /// may have cut.
    private func startPointerFormat(_ c: [UInt8], chunk: UnsafeRawBufferPointer, at base: Int) {
        captured = []
        guard let segments = ELFSegments(head: head), segments.segments.contains(where: { $0.type == 1 }) else {
            settled = (.failure(.pointerFormat("the ELF program headers cannot be read")), false)
            return
        }
        guard var pointer = GoPointerBuildInfo(header: c, segments: segments, maxBytes: maxBytes) else {
            settled = (.failure(.truncated), false)
            return
        }
        c.withUnsafeBytes { pointer.feed($0, at: capturedAt, windows: windows) }
        let end = capturedAt + c.count
        if end >= base, end < base + chunk.count {
            pointer.feed(UnsafeRawBufferPointer(rebasing: chunk[(end - base)...]), at: end, windows: windows)
        }
        pointerFormat = pointer
        settlePointerFormat()
    }

    private func settlePointerFormat() {
        guard settled == nil, let pointer = pointerFormat, pointer.isResolved else { return }
        let version = pointer.strings[0] ?? [], modInfo = pointer.strings[1] ?? []
        let info: Result<BuildInfo, BuildInfoProblem>
        if let missed = pointer.missed {
            info = .failure(.pointerFormat(missed))
        } else if version.isEmpty {
            info = .failure(.truncated)
        } else {
            info = BuildInfo.make(version: version, rawModInfo: modInfo)
        }
        settled = (info, (try? info.get())?.mainIsDevel ?? false)
        windows = nil
    }

    /// Parses the captured bytes once they hold the whole build information (both strings'
    /// lengths known and reached), or once they cannot (the old format, over `maxBytes`).
    private func settle(chunk: UnsafeRawBufferPointer, at base: Int) {
        guard settled == nil, pointerFormat == nil, let c = captured else { return }
        if c.count >= 16, c[15] & 2 == 0 {
            if c.count >= Self.headerSize { startPointerFormat(c, chunk: chunk, at: base) }
            return
        }
        if c.count >= 16 { windows = nil }
        let whole = c.count >= Self.headerSize && Self.stringEnd(c, Self.headerSize).flatMap { Self.stringEnd(c, $0) } != nil
        guard whole || c.count >= maxBytes else { return }
        let info = BuildInfo.parse(c, maxBytes: maxBytes)
        settled = (info, (try? info.get())?.mainIsDevel ?? false)
        captured = []
    }

    /// The packages of the build information, or a problem when it is truncated or malformed;
    /// nil for files that are not Go binaries.
    func result() -> IndexedFile? {
        guard isELF == true, captured != nil else { return nil }
        if settled == nil, pointerFormat != nil {
            // The file ended before the pointer format's strings: they are not there.
            pointerFormat!.finish()
            settlePointerFormat()
        }
        if settled == nil {
            // The file ended first: what was captured is all there is.
            settled = (BuildInfo.parse(captured!, maxBytes: maxBytes), false)
        }
        var file = IndexedFile()
        let info: BuildInfo
        switch settled!.info {
        case .failure(let problem):
            file.problems.append(InventoryProblem(path: path, reason: problem.reason(maxBytes: maxBytes)))
            return file
        case .success(let parsed):
            info = parsed
        }
        for line in info.malformed {
            file.problems.append(InventoryProblem(path: path, reason: "malformed \(line) line in Go module information"))
        }
        var main = info.main
        if var m = main, m.version == GoMainVersion.devel {
            sniffer.finish()
            if let guess = GoMainVersion.guess(ldflags: info.settings["-ldflags"], mainModule: m.name, sniffed: sniffer.found, settings: info.settings) {
                m.version = TextLines.clip(guess)
                main = m
            }
        }
        let modules = (main.map { [$0] } ?? []) + info.deps.map { ($0.name, $0.version) }
        // The toolchain's standard library, for a binary with any module information at all.
        if !modules.isEmpty {
            file.packages.append(InventoryPackage(type: .goModule, name: "stdlib", version: info.stdlibVersion, locations: [path]))
        }
        for m in modules {
            file.packages.append(InventoryPackage(type: .goModule, name: m.0, version: m.1, locations: [path]))
        }
        return file
    }

    enum BuildInfoProblem: Error {
        case pointerFormat(String), truncated, tooLarge, invalidGoVersion
        func reason(maxBytes: Int) -> String {
            switch self {
            case .pointerFormat(let why): "Go build information of a Go release before 1.18 (pointer format) not read: \(why)"
            case .truncated: "Go build information truncated or malformed"
            case .tooLarge: "Go build information larger than \(maxBytes) bytes"
            case .invalidGoVersion: "Go build information has an invalid Go version"
            }
        }
    }

    /// The lines of `debug.BuildInfo`: path, the main module (mod), dependencies (dep), each
    /// possibly replaced (=>, after its line), build settings (build KEY=VALUE).
    struct BuildInfo {
        var stdlibVersion: String
        var path: String?
        var main: (name: String, version: String)?
        /// Each with the version its own line states (before a `=>` replaced it).
        var deps: [(name: String, version: String, stated: String)] = []
        var settings: [String: String] = [:]
        var malformed: [String] = []

        var mainIsDevel: Bool { main?.version == GoMainVersion.devel }

        static func parse(_ c: [UInt8], maxBytes: Int) -> Result<BuildInfo, BuildInfoProblem> {
            // The pointer format's header cut short is truncated too (a whole one is read by
            // `GoPointerBuildInfo`).
            guard c.count >= 16, c[15] & 2 != 0 else { return .failure(.truncated) }
            var p = GoBuildInfoScanner.headerSize
            guard let version = GoBuildInfoScanner.string(c, &p), let rawModInfo = GoBuildInfoScanner.string(c, &p) else {
                return .failure(c.count >= maxBytes ? .tooLarge : .truncated)
            }
            return make(version: version, rawModInfo: rawModInfo)
        }

        /// From the two strings, whichever format held them.
        static func make(version: [UInt8], rawModInfo: [UInt8]) -> Result<BuildInfo, BuildInfoProblem> {
            guard let goVersion = String(validating: version, as: UTF8.self), goVersion.hasPrefix("go"), goVersion.utf8.count <= 64 else {
                return .failure(.invalidGoVersion)
            }
            // The module information is framed by 16-byte sentinels.
            var mod = rawModInfo[...]
            if mod.count >= 33, mod[mod.endIndex - 17] == 0x0A { mod = mod.dropFirst(16).dropLast(16) }
            var info = BuildInfo(stdlibVersion: String(goVersion.split(separator: " ").first ?? ""))
            var last: Int? // the line "=>" replaces: -1 the main module, else a dependency
            for line in String(decoding: mod, as: UTF8.self).split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard let kind = f.first else { continue }
                switch kind {
                case "path":
                    if f.count >= 2 { info.path = TextLines.clip(f[1]) }
                    last = nil
                case "mod", "dep":
                    guard f.count >= 3, !f[1].isEmpty else { info.malformed.append(kind); continue }
                    let name = TextLines.clip(f[1]), version = TextLines.clip(f[2])
                    if kind == "mod" {
                        info.main = (name, version); last = -1
                    } else {
                        info.deps.append((name, version, version)); last = info.deps.count - 1
                    }
                case "=>":
                    // Replaces the module of the line before it; a replacement by a local
                    // directory has no version: it is built from source.
                    guard f.count >= 3, let l = last else { continue }
                    let name = TextLines.clip(f[1]), stated = TextLines.clip(f[2])
                    let version = stated.isEmpty ? GoMainVersion.devel : stated
                    if l < 0 { info.main = (name, version) } else { info.deps[l] = (name, version, info.deps[l].stated) }
                    last = nil
                case "build":
                    if f.count >= 2, let eq = f[1].firstIndex(of: "=") {
                        info.settings[String(f[1][..<eq])] = GoMainVersion.unquote(String(f[1][f[1].index(after: eq)...]))
                    }
                default: continue
                }
            }
            // No main module (a binary built outside module mode, as Debian builds its Go
            // packages, or from a file list): the one dependency stated as built from source,
            // else the package path, at `(devel)` (Syft's rule).
            if (info.main == nil && info.path?.isEmpty == false) || (info.main?.name == "command-line-arguments" && info.main?.version.isEmpty == true) {
                let local = info.deps.indices.filter { info.deps[$0].stated == GoMainVersion.devel }
                if local.count == 1 {
                    let d = info.deps.remove(at: local[0])
                    info.main = (d.name, d.version)
                } else if let path = info.path, !path.isEmpty {
                    info.main = (path, GoMainVersion.devel)
                }
            }
            return .success(info)
        }
    }

    /// Where the uvarint-length-prefixed string at `p` ends; nil when it does not fit (yet).
    static func stringEnd(_ d: [UInt8], _ p: Int) -> Int? {
        var p = p, length = 0, shift = 0
        while true {
            guard p < d.count, shift < 35 else { return nil }
            let b = d[p]; p += 1
            length |= Int(b & 0x7F) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        return length <= d.count - p ? p + length : nil
    }

    /// A uvarint length followed by that many bytes; nil when it does not fit.
    static func string(_ d: [UInt8], _ p: inout Int) -> [UInt8]? {
        guard let end = stringEnd(d, p) else { return nil }
        defer { p = end }
        var start = p
        while d[start] & 0x80 != 0 { start += 1 }
        return Array(d[(start + 1)..<end])
    }
}
