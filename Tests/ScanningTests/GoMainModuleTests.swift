import Foundation
import Testing
@testable import Scanning

/// A Go binary's main module as Syft reports it: taken from the package path when the binary has
/// no module information (Debian builds its Go packages so), and a `(devel)` version guessed from
/// the ldflags, the binary's strings or the VCS settings.
@Suite struct GoMainModuleTests {
    static func sniff(_ bytes: [UInt8], chunk: Int = 7, batch: Int = GoVersionSniffer.batch) -> String? {
        var s = GoVersionSniffer(batchSize: batch)
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + chunk)
            bytes[i..<end].withUnsafeBytes { s.feed($0) }
            i = end
        }
        s.finish()
        return s.found
    }

    /// Strings as their UTF-8 bytes and byte arrays as they are, one after the other.
    enum Part: ExpressibleByStringLiteral, ExpressibleByArrayLiteral {
        case text(String), raw([UInt8])
        init(stringLiteral value: String) { self = .text(value) }
        init(arrayLiteral elements: UInt8...) { self = .raw(elements) }
        var bytes: [UInt8] { switch self { case .text(let t): Array(t.utf8); case .raw(let r): r } }
    }

    static func bytes(_ parts: [Part]) -> [UInt8] { parts.flatMap(\.bytes) }

    @Test func theFirstVersionBetweenNULsIsFound() {
        let cases: [([UInt8], String?)] = [
            (Self.bytes(["abc", [0], "1.1.5+ds1", [0], "zz", [0], "2.0.0", [0]]), "1.1.5+ds1"),
            (Self.bytes([[0], "v1.2.3-rc.1", [0]]), nil), // "." is not in [-\w] after the patch number
            (Self.bytes([[0], "v1.2.3-rc1", [0]]), "v1.2.3-rc1"),
            (Self.bytes([[0], "1.2.3+a-b", [0]]), nil), // no "-" after a "+"
            (Self.bytes([[0], "1.2", [0], "1.2.3", [0]]), "1.2.3"),
            (Self.bytes(["x", "1.2.3", [0]]), nil), // after an ASCII letter: no match
            (Self.bytes([[0], "1.2.3"]), nil), // no closing NUL
            (Self.bytes([[0xFF], "4.5.6", [0]]), "4.5.6"), // an invalid byte reads as U+FFFD
            (Self.bytes([[0x90], "4.5.6", [0]]), "4.5.6"), // a stray continuation byte too
            (Self.bytes([[0xC3, 0xA9], "4.5.6", [0]]), nil), // "é": a valid rune before, no match
            (Self.bytes([[0xE2, 0x82], "4.5.6", [0]]), "4.5.6"), // a cut sequence: U+FFFD
            (Self.bytes([[0xEF, 0xBF, 0xBD], "7.8.9", [0]]), "7.8.9"), // U+FFFD itself
            (Self.bytes([[0], "xL", "1.0.0", [0]]), "1.0.0"), // (.L)? before the version
            (Self.bytes([[0], "\n", "L", "1.0.0", [0]]), nil), // "." is no newline
            (Self.bytes([[0], "1.0.0x", [0]]), "1.0.0x"),
            (Self.bytes([[0], .text(String(repeating: "9", count: 300) + ".1.1"), [0]]), nil), // longer than the bound
        ]
        for (input, expected) in cases {
            for chunk in [1, 3, 7, 4096] {
                #expect(Self.sniff(input, chunk: chunk) == expected, "\(input) in chunks of \(chunk)")
            }
        }
        // A 4-byte rune cut by a chunk end is still one rune; a stray byte after it is U+FFFD.
        let emoji: [UInt8] = [0xF0, 0x9F, 0x98, 0x80]
        for chunk in [1, 2, 3, 5] {
            #expect(Self.sniff(emoji + Self.bytes(["1.2.3", [0]]), chunk: chunk) == nil)
            #expect(Self.sniff(emoji + [0x80] + Self.bytes(["1.2.3", [0]]), chunk: chunk) == "1.2.3")
        }
        // A long match where a batch ends is found whatever the chunks.
        let long = "1.1.1" + String(repeating: "a", count: 245)
        let around = [UInt8](repeating: 0x41, count: GoVersionSniffer.batch - 100) + Self.bytes([[0], .text(long), [0]])
            + [UInt8](repeating: 0x41, count: GoVersionSniffer.batch)
        for chunk in [1, 4096, 70_000] {
            #expect(Self.sniff(around, chunk: chunk) == long)
        }
        // Far into a large binary, across chunk ends.
        let big = [UInt8](repeating: 0x90, count: 100_000) + Self.bytes([[0], "12.34.56", [0]]) + [UInt8](repeating: 0xCC, count: 5000)
        #expect(Self.sniff(big, chunk: 4096) == "12.34.56")
    }

    /// The pattern read the plain way: the whole input decoded rune by rune as Go decodes a
    /// string, the pattern tried at each rune in order. The sniffer must agree on any input,
    /// however it is chunked.
    static func reference(_ d: [UInt8]) -> String? {
        var starts: [(at: Int, width: Int, prefix: Bool)] = []
        var i = 0
        while i < d.count {
            let w = d.withUnsafeBufferPointer { GoVersionSniffer.sequenceWidth($0, at: i) }
            let isFFFD = w == 1 && d[i] >= 0x80 || w == 3 && d[i] == 0xEF && d[i + 1] == 0xBF && d[i + 2] == 0xBD
            starts.append((i, w, d[i] == 0 || isFFFD))
            i += w
        }
        func version(_ r: Int) -> String? {
            var p = r
            if p < d.count, d[p] == UInt8(ascii: "v") { p += 1 }
            func digits() -> Bool { let f = p; while p < d.count, GoVersionSniffer.isDigit(d[p]) { p += 1 }; return p > f }
            guard digits(), p < d.count, d[p] == 0x2E else { return nil }
            p += 1
            guard digits(), p < d.count, d[p] == 0x2E else { return nil }
            p += 1
            guard digits() else { return nil }
            while p < d.count, GoVersionSniffer.isWord(d[p]) || d[p] == 0x2D { p += 1 }
            while p < d.count, GoVersionSniffer.isWord(d[p]) || d[p] == 0x2B { p += 1 }
            guard p < d.count, d[p] == 0, p - r < GoVersionSniffer.maxMatch else { return nil }
            return String(decoding: d[r..<p], as: UTF8.self)
        }
        for (k, s) in starts.enumerated() where s.prefix {
            let q = s.at + s.width
            if k + 1 < starts.count, d[q] != 0x0A {
                let l = q + starts[k + 1].width
                if l < d.count, d[l] == UInt8(ascii: "L"), let v = version(l + 1) { return v }
            }
            if let v = version(q) { return v }
        }
        return nil
    }

    @Test func theSnifferAgreesWithThePlainReadingOnRandomInput() {
        var rng = MutatedLayerTests.Generator(state: 20261203) // seeded: a failing round replays
        let alphabet: [UInt8] = [0, 0, 0x80, 0xBF, 0xC3, 0xA9, 0xE2, 0x82, 0xEF, 0xBF, 0xBD, 0xF0, 0x9F, 0xFF, 0x0A,
                                 0x4C, 0x76, 0x2E, 0x2E, 0x2B, 0x2D, 0x5F, 0x61, 0x78] + Array("0123456789".utf8)
        for round in 0..<3000 {
            let n = Int(rng.next() % 600) + 1
            let input = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            let chunk = Int(rng.next() % 16) + 1
            // Small passes too, so the bookkeeping between passes is reached.
            let batch = [1, 2, 3, 5, 8, 64, GoVersionSniffer.batch][Int(rng.next() % 7)]
            #expect(Self.sniff(input, chunk: chunk, batch: batch) == Self.reference(input),
                    "round \(round): \(input) in chunks of \(chunk), passes of \(batch)")
        }
    }

    @Test func ldflagsVCSAndPseudoVersions() {
        #expect(GoMainVersion.fromLDFlags("-s -w -X main.version=1.2.3", mainModule: "example.com/x") == "v1.2.3")
        #expect(GoMainVersion.fromLDFlags("-X example.com/x/internal/build.Version=v2.0.1-beta", mainModule: "example.com/x") == "v2.0.1-beta")
        #expect(GoMainVersion.fromLDFlags("-X main.gitTag=0.9.0", mainModule: "example.com/x") == "v0.9.0")
        #expect(GoMainVersion.fromLDFlags("-X other.com/y.Version=1.2.3", mainModule: "example.com/x") == nil)
        #expect(GoMainVersion.fromLDFlags("-X main.commit=abc", mainModule: "example.com/x") == nil)
        // Go's regexp: the digit runs may take dots' places ("20240101" reads as 2.0.240101).
        #expect(GoMainVersion.fromLDFlags("-X main.version=20240101", mainModule: "m") == "v20240101")
        #expect(GoMainVersion.fromLDFlags("-X 'main.Version=v1.2.3'", mainModule: "m") == "v1.2.3")
        #expect(GoMainVersion.fromLDFlags("-X main.version=build/1.2.3", mainModule: "m") == "v1.2.3")
        // A group of (\S+/)* has a byte before its "/"; "." is a character, not a byte; \s has no \v.
        #expect(GoMainVersion.fromLDFlags("-X main.version=/1.2.3", mainModule: "m") == nil)
        #expect(GoMainVersion.fromLDFlags("-X main.version=/v1.2.3 main.tag=9.9.9", mainModule: "m") == "v9.9.9")
        #expect(GoMainVersion.fromLDFlags("-X main.version=1é2.3", mainModule: "m") == "v1é2.3")
        #expect(GoMainVersion.fromLDFlags("-X main.version=a\u{0B}b/1.2.3", mainModule: "m") == "v1.2.3")
        // Hostile flags and module paths: literal, and never exponential.
        #expect(GoMainVersion.fromLDFlags("-X main.version=" + String(repeating: "a/", count: 2000) + "x", mainModule: "m") == nil)
        #expect(GoMainVersion.fromLDFlags("-X (a+)+/x.Version=1.2.3", mainModule: "(a+)+") == "v1.2.3")
        #expect(GoMainVersion.fromLDFlags("-X aaaa/x.Version=1.2.3", mainModule: "(a+)+") == nil)
        let module = "example.com/app"
        #expect(GoMainVersion.fromLDFlags(String(repeating: module + "/.", count: 100_000), mainModule: module) == nil)
        #expect(GoMainVersion.pseudoVersion(revision: "0123456789abcdef0123", time: "2024-01-02T03:04:05Z") == "v0.0.0-20240102030405-0123456789ab")
        #expect(GoMainVersion.pseudoVersion(revision: "abc", time: "not a time") == "v0.0.0-00010101000000-abc")
        #expect(GoMainVersion.unquote(#""-X main.version=1.2.3 -s""#) == "-X main.version=1.2.3 -s")
        #expect(GoMainVersion.unquote("plain") == "plain")
        // The order: ldflags, then the binary's strings, then VCS.
        let vcs = ["vcs.revision": "0123456789abcdef", "vcs.time": "2024-01-02T03:04:05Z"]
        #expect(GoMainVersion.guess(ldflags: "-X main.version=1.0.0", mainModule: "m", sniffed: "2.0.0", settings: vcs) == "v1.0.0")
        #expect(GoMainVersion.guess(ldflags: nil, mainModule: "m", sniffed: "2.0.0", settings: vcs) == "v2.0.0")
        #expect(GoMainVersion.guess(ldflags: nil, mainModule: "m", sniffed: nil, settings: vcs) == "v0.0.0-20240102030405-0123456789ab")
        #expect(GoMainVersion.guess(ldflags: nil, mainModule: "m", sniffed: nil, settings: [:]) == nil)
    }

    /// A tagged binary is read no further than its build information; a (devel) one on, for
    /// the version string that may come later.
    @Test func theBinaryIsReadOnOnlyForAVersionToGuess() {
        func scanner(_ modInfo: String) -> GoBuildInfoScanner {
            let s = GoBuildInfoScanner(path: "bin/x", maxBytes: 1 << 20)
            GoBinary.elf(modInfo: modInfo).withUnsafeBytes { s.feed($0) }
            return s
        }
        #expect(scanner("mod\texample.com/t\tv1.0.0\th1:x=\n").isDone)
        let devel = scanner("mod\texample.com/t\t(devel)\t\n")
        #expect(!devel.isDone)
        Self.bytes([[0], "2.3.4", [0]]).withUnsafeBytes { devel.feed($0) }
        #expect(devel.result()?.packages.map { "\($0.name)@\($0.version)" }.sorted() == ["example.com/t@v2.3.4", "stdlib@go1.21.5"])
    }

    static func index(_ files: [(String, [UInt8])]) async throws -> LayerIndex {
        var t = TarWriter()
        for (name, bytes) in files { t.file(name, bytes) }
        return try await walk(t.finished, chunk: 1000)
    }

    @Test func theMainModuleOfABinaryWithoutModuleInformation() async throws {
        let index = try await Self.index([
            // Debian's way: a package path and build settings, no "mod" line.
            ("usr/bin/skopeo", GoBinary.elf(modInfo: "path\tgithub.com/containers/skopeo/cmd/skopeo\nbuild\t-trimpath=true\n")),
            // A version string in the binary names the (devel) main module.
            ("usr/bin/runc", GoBinary.elf(modInfo: "path\tgithub.com/opencontainers/runc\n", padding: 4096)
                + Self.bytes([[0], "1.1.5+ds1", [0]])),
            // The one dependency built from source is the main module.
            ("usr/bin/local", GoBinary.elf(modInfo: "path\texample.com/m/cmd\ndep\texample.com/m\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.7\th1:x=\n")),
            // ldflags and VCS settings.
            ("usr/bin/ld", GoBinary.elf(modInfo: "path\texample.com/ld\nmod\texample.com/ld\t(devel)\t\nbuild\t-ldflags=\"-s -X main.version=4.5.6\"\n")),
            ("usr/bin/vcs", GoBinary.elf(modInfo: "path\texample.com/vcs\nmod\texample.com/vcs\t(devel)\t\nbuild\tvcs.revision=0123456789abcdef\nbuild\tvcs.time=2024-01-02T03:04:05Z\n")),
            // Tagged: kept as it is.
            ("usr/bin/tagged", GoBinary.elf(modInfo: "path\texample.com/t\nmod\texample.com/t\tv1.0.0\th1:x=\nbuild\t-ldflags=\"-X main.version=9.9.9\"\n")),
            // No module information at all: nothing, not even the standard library.
            ("usr/bin/none", GoBinary.elf(modInfo: "build\t-compiler=gc\n")),
        ])
        func packages(_ path: String) -> [String] {
            (index.files[path]?.packages ?? []).map { "\($0.name)@\($0.version)" }.sorted()
        }
        #expect(packages("usr/bin/skopeo") == ["github.com/containers/skopeo/cmd/skopeo@(devel)", "stdlib@go1.21.5"])
        #expect(packages("usr/bin/runc") == ["github.com/opencontainers/runc@v1.1.5+ds1", "stdlib@go1.21.5"])
        #expect(packages("usr/bin/local") == ["example.com/m@(devel)", "golang.org/x/text@v0.3.7", "stdlib@go1.21.5"])
        #expect(packages("usr/bin/ld") == ["example.com/ld@v4.5.6", "stdlib@go1.21.5"])
        #expect(packages("usr/bin/vcs") == ["example.com/vcs@v0.0.0-20240102030405-0123456789ab", "stdlib@go1.21.5"])
        #expect(packages("usr/bin/tagged") == ["example.com/t@v1.0.0", "stdlib@go1.21.5"])
        #expect(packages("usr/bin/none") == [])
    }
}
