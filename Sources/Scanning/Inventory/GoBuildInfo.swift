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
    /// The header and what follows, once found.
    private var captured: [UInt8]?
    private var firstBytes: [UInt8] = []
    private(set) var isELF: Bool?
    /// The first version-like string of the binary, for a main module built as `(devel)`.
    private var sniffer = GoVersionSniffer()

    init(path: String, maxBytes: Int) {
        self.path = path
        self.maxBytes = maxBytes
    }

    /// True once the scanner has what it needs or knows the file is not a Go binary.
    var isDone: Bool {
        if isELF == false { return true }
        if let c = captured { return c.count >= maxBytes && sniffer.isDone }
        return false
    }

    func feed(_ bytes: UnsafeRawBufferPointer) {
        if isELF == nil {
            firstBytes.append(contentsOf: bytes.prefix(4 - firstBytes.count))
            if firstBytes.count == 4 { isELF = firstBytes == [0x7F, 0x45, 0x4C, 0x46] }
            if isELF == false { return }
        }
        sniffer.feed(bytes)
        if captured != nil {
            let room = maxBytes - captured!.count
            if room > 0 { captured!.append(contentsOf: bytes.prefix(room)) }
            return
        }
        let magic = Self.magic
        let base = fed
        fed += bytes.count
        if !carry.isEmpty {
            // The carry starts at an aligned offset in an earlier chunk: complete it and compare.
            let take = min(magic.count - carry.count, bytes.count)
            carry.append(contentsOf: bytes.prefix(take))
            if carry.count < magic.count { return }
            if carry == magic {
                captured = carry
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
                if k == magic.count {
                    captured = Array(bytes[p..<min(n, p + maxBytes)])
                    return
                }
            }
            p += 16
        }
        if p < n { carry = Array(bytes[p...]) }
    }

    /// The packages of the build information, or a problem when it is truncated or malformed;
    /// nil for files that are not Go binaries.
    func result() -> IndexedFile? {
        guard isELF == true, let c = captured else { return nil }
        var file = IndexedFile()
        func problem(_ r: String) -> IndexedFile? {
            file.problems.append(InventoryProblem(path: self.path, reason: r))
            return file
        }
        guard c.count >= Self.headerSize else { return problem("Go build information truncated") }
        let flags = c[15]
        guard flags & 2 != 0 else {
            return problem("Go build information of a Go release before 1.18 (pointer format) is not read")
        }
        var p = Self.headerSize
        guard let version = Self.string(c, &p), let rawModInfo = Self.string(c, &p) else {
            return problem(c.count >= maxBytes ? "Go build information larger than \(maxBytes) bytes" : "Go build information truncated or malformed")
        }
        guard let goVersion = String(validating: version, as: UTF8.self), goVersion.hasPrefix("go"), goVersion.utf8.count <= 64 else {
            return problem("Go build information has an invalid Go version")
        }
        // The module information is framed by 16-byte sentinels.
        var mod = rawModInfo[...]
        if mod.count >= 33, mod[mod.endIndex - 17] == 0x0A { mod = mod.dropFirst(16).dropLast(16) }
        let lines = String(decoding: mod, as: UTF8.self).split(separator: "\n")
        let stdlibVersion = String(goVersion.split(separator: " ").first ?? "")
        // The lines of `debug.BuildInfo`: path, the main module (mod), dependencies (dep), each
        // possibly replaced (=>, after its line), build settings (build KEY=VALUE).
        var path: String?
        var main: (name: String, version: String)?
        var deps: [(name: String, version: String)] = []
        var settings: [String: String] = [:]
        var last: Int? // the line "=>" replaces: -1 the main module, else a dependency
        for line in lines {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard let kind = f.first else { continue }
            switch kind {
            case "path":
                if f.count >= 2 { path = TextLines.clip(f[1]) }
                last = nil
            case "mod", "dep":
                guard f.count >= 3, !f[1].isEmpty else { file.problems.append(InventoryProblem(path: self.path, reason: "malformed \(kind) line in Go module information")); continue }
                let module = (TextLines.clip(f[1]), TextLines.clip(f[2]))
                if kind == "mod" { main = module; last = -1 } else { deps.append(module); last = deps.count - 1 }
            case "=>":
                // Replaces the module of the line before it; a replacement by a local directory
                // has no version: it is built from source.
                guard f.count >= 3, let l = last else { continue }
                let version = TextLines.clip(f[2])
                let replaced = (TextLines.clip(f[1]), version.isEmpty ? GoMainVersion.devel : version)
                if l < 0 { main = replaced } else { deps[l] = replaced }
                last = nil
            case "build":
                if f.count >= 2, let eq = f[1].firstIndex(of: "=") {
                    settings[String(f[1][..<eq])] = GoMainVersion.unquote(String(f[1][f[1].index(after: eq)...]))
                }
            default: continue
            }
        }
        // No main module (a binary built outside module mode, as Debian builds its Go packages,
        // or from a file list): the one dependency built from source, else the package path,
        // at `(devel)` (Syft's rule).
        if (main == nil && path?.isEmpty == false) || (main?.name == "command-line-arguments" && main?.version.isEmpty == true) {
            let local = deps.indices.filter { deps[$0].version == GoMainVersion.devel }
            if local.count == 1 {
                main = deps.remove(at: local[0])
            } else if let path, !path.isEmpty {
                main = (path, GoMainVersion.devel)
            }
        }
        if var m = main, m.version == GoMainVersion.devel {
            sniffer.finish()
            if let guess = GoMainVersion.guess(ldflags: settings["-ldflags"], mainModule: m.name, sniffed: sniffer.found, settings: settings) {
                m.version = TextLines.clip(guess)
                main = m
            }
        }
        let modules = (main.map { [$0] } ?? []) + deps
        // The toolchain's standard library, for a binary with any module information at all.
        if !modules.isEmpty {
            file.packages.append(InventoryPackage(type: .goModule, name: "stdlib", version: stdlibVersion, locations: [self.path]))
        }
        for m in modules {
            file.packages.append(InventoryPackage(type: .goModule, name: m.name, version: m.version, locations: [self.path]))
        }
        return file
    }

    /// A uvarint length followed by that many bytes; nil when it does not fit.
    static func string(_ d: [UInt8], _ p: inout Int) -> [UInt8]? {
        var length = 0, shift = 0
        while true {
            guard p < d.count, shift < 35 else { return nil }
            let b = d[p]; p += 1
            length |= Int(b & 0x7F) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        guard length <= d.count - p else { return nil }
        defer { p += length }
        return Array(d[p..<(p + length)])
    }
}
