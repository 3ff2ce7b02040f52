import Foundation
import NIOCore
import Testing
@testable import Scanning

/// Layers are untrusted: each hostile input gives a clear problem (a partial index, or a problem
/// on the file) within the limits, never a crash, a hang or unbounded memory.
@Suite struct HostileLayerTests {
    static var small: ScanLimits {
        var l = ScanLimits()
        l.maxDecompressedBytes = 1 << 20
        return l
    }

    /// A layer with a package database first, so a partial index shows what was read before.
    static func withDatabaseFirst(_ rest: (inout TarWriter) -> Void) -> [UInt8] {
        var t = TarWriter()
        t.file("lib/apk/db/installed", "P:musl\nV:1.2.4-r2\n")
        rest(&t)
        return t.finished
    }

    @Test func aGzipBombStopsAtTheDecompressedLimit() async throws {
        let tar = Self.withDatabaseFirst { $0.file("zeros", [UInt8](repeating: 0, count: 8 << 20)) }
        let bomb = try Compress.gzip(tar)
        #expect(bomb.count < 64 << 10)
        let index = try await walk(bomb, limits: Self.small)
        #expect(!index.complete)
        #expect(index.problemText.contains("decompresses to more than 1048576 bytes"))
        #expect(index.decompressedBytes <= (1 << 20) + (128 << 10))
        #expect(index.summary == ["apk:musl@1.2.4-r2"])
    }

    @Test func aZstdBombStopsAtTheDecompressedLimit() async throws {
        // A tar header announcing 1.25 GiB, then ten thousand RLE blocks: 40 KB of zstd that
        // would decompress to 1.25 GiB of zeros.
        let tar = Self.withDatabaseFirst { $0.raw(TarWriter.header(name: "zeros", size: 10_000 << 17)) }.dropLast(1024)
        let bomb = Compress.zstdRaw(Array(tar)) + Compress.zstdRLE(byte: 0, blocks: 10_000)
        #expect(bomb.count < 64 << 10)
        let index = try await walk(bomb, limits: Self.small)
        #expect(!index.complete)
        #expect(index.problemText.contains("decompresses to more than"))
        #expect(index.summary == ["apk:musl@1.2.4-r2"])
    }

    /// The relative bound: a bomb stops once its ratio is out of reach of real layers, long before
    /// the absolute bound (16 GiB by default); a layer of incompressible data the same size passes.
    @Test func aBombStopsAtTheCompressionRatio() async throws {
        var limits = ScanLimits()
        limits.compressionRatioFloor = 1 << 20
        limits.maxCompressionRatio = 100
        #expect(limits.maxDecompressedBytes == 16 << 30)
        let tar = Self.withDatabaseFirst { $0.file("zeros", [UInt8](repeating: 0, count: 8 << 20)) }
        let gzip = try await walk(try Compress.gzip(tar), limits: limits)
        #expect(!gzip.complete)
        #expect(gzip.problemText.contains("more than 100 times its compressed size"), "\(gzip.problemText)")
        #expect(gzip.decompressedBytes < 4 << 20)
        #expect(gzip.summary == ["apk:musl@1.2.4-r2"])
        // 1.25 GiB of zeros in 40 KB of zstd: stopped after a few MiB, not at 16 GiB.
        let header = Self.withDatabaseFirst { $0.raw(TarWriter.header(name: "zeros", size: 10_000 << 17)) }.dropLast(1024)
        let zstd = try await walk(Compress.zstdRaw(Array(header)) + Compress.zstdRLE(byte: 0, blocks: 10_000), limits: limits)
        #expect(!zstd.complete)
        #expect(zstd.problemText.contains("times its compressed size"), "\(zstd.problemText)")
        #expect(zstd.decompressedBytes < 4 << 20)
        #expect(zstd.summary == ["apk:musl@1.2.4-r2"])
        // Incompressible data over the floor, and a plain tar (no ratio: it is what is read).
        var rng = MutatedLayerTests.Generator(state: 9)
        let noise = (0..<(3 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let fine = try await walk(try Compress.gzip(Self.withDatabaseFirst { $0.file("noise", noise) }), limits: limits)
        #expect(fine.complete, "\(fine.problemText)")
        let plain = try await walk(tar, limits: limits)
        #expect(plain.complete, "\(plain.problemText)")
    }

    @Test func truncatedAndCorruptCompressedStreams() async throws {
        let tar = Self.withDatabaseFirst { $0.file("big", [UInt8](repeating: 7, count: 100_000)) }
        let gz = try Compress.gzip(tar)
        let cut = try await walk(Array(gz.dropLast(20)))
        #expect(!cut.complete)
        #expect(cut.problemText.contains("truncated gzip stream") || cut.problemText.contains("truncated tar"), "\(cut.problemText)")
        var corrupt = gz
        for k in 30..<60 { corrupt[k] ^= 0x5A }
        let bad = try await walk(corrupt)
        #expect(!bad.complete)
        #expect(!bad.problems.isEmpty)
        let zst = Compress.zstdRaw(tar)
        let cutZstd = try await walk(Array(zst.dropLast(5000)))
        #expect(!cutZstd.complete)
        #expect(cutZstd.problemText.contains("truncated"), "\(cutZstd.problemText)")
        // A zstd frame whose block header names a reserved block type.
        let reserved: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x58, 0x07, 0x00, 0x00]
        let badZstd = try await walk(reserved)
        #expect(!badZstd.complete)
        #expect(badZstd.problemText.contains("corrupt zstd data"), "\(badZstd.problemText)")
        // Garbage after a gzip member (of a tar without its end marker, so it is read).
        var open = TarWriter()
        open.file("lib/apk/db/installed", "P:musl\nV:1.2.4-r2\n")
        let trailing = try await walk(try Compress.gzip(open.bytes) + Array("garbage".utf8))
        #expect(!trailing.complete)
        #expect(trailing.problemText.contains("data after the end of the gzip stream"), "\(trailing.problemText)")
        #expect(trailing.summary == ["apk:musl@1.2.4-r2"])
    }

    @Test func aTarCutInsideAnEntryKeepsWhatCameBefore() async throws {
        let tar = Self.withDatabaseFirst { $0.file("var/lib/dpkg/status", "Package: a\nStatus: install ok installed\nVersion: 1\n" + String(repeating: "X: y\n", count: 500)) }
        let index = try await walk(Array(tar[..<1800]))
        #expect(!index.complete)
        #expect(index.problemText.contains("truncated tar"))
        #expect(index.summary == ["apk:musl@1.2.4-r2"])
        // Cut inside a header.
        let header = try await walk(Array(tar[..<1100]))
        #expect(header.problemText.contains("inside a header"))
    }

    @Test func brokenHeadersStopTheWalk() async throws {
        var badSum = TarWriter.header(name: "x", size: 0)
        badSum[0] = UInt8(ascii: "y")
        let sum = try await walk(Self.withDatabaseFirst { $0.raw(badSum) })
        #expect(!sum.complete && sum.problemText.contains("checksum"))

        // A 10 GiB size in base-256 with 1 KiB behind it: truncated, not read into memory.
        var huge: [UInt8] = [0x80] + [UInt8](repeating: 0, count: 11)
        huge[7] = 0x02; huge[8] = 0x80  // 0x0280000000 = 10 GiB
        let tenGiB = try await walk(Self.withDatabaseFirst { $0.raw(TarWriter.header(name: "sparse.img", size: 0, sizeField: huge)); $0.raw([UInt8](repeating: 1, count: 1024)) })
        #expect(!tenGiB.complete && tenGiB.problemText.contains("truncated tar"))
        #expect(tenGiB.summary == ["apk:musl@1.2.4-r2"])
        // Out of range and negative base-256 sizes.
        let overflow = try await walk(Self.withDatabaseFirst { $0.raw(TarWriter.header(name: "x", size: 0, sizeField: [0xBF] + [UInt8](repeating: 0xFF, count: 11))) })
        #expect(overflow.problemText.contains("size out of range"))
        let negative = try await walk(Self.withDatabaseFirst { $0.raw(TarWriter.header(name: "x", size: 0, sizeField: [UInt8](repeating: 0xFF, count: 12))) })
        #expect(negative.problemText.contains("negative size"))
        let notOctal = try await walk(Self.withDatabaseFirst { $0.raw(TarWriter.header(name: "x", size: 0, sizeField: Array("0000000000A\0".utf8))) })
        #expect(notOctal.problemText.contains("size field"))
        // A big "database" header over its cap is noted, its data skipped as it streams.
        var limits = ScanLimits()
        limits.maxDatabaseBytes = 1000
        let tooBig = try await walk(Self.withDatabaseFirst { $0.file("var/lib/dpkg/status", String(repeating: "Package: x\n", count: 200)) }, limits: limits)
        #expect(!tooBig.complete)
        #expect(tooBig.files["var/lib/dpkg/status"]?.problems.first?.reason.contains("over the 1000-byte limit") == true)
        #expect(tooBig.summary == ["apk:musl@1.2.4-r2"])
    }

    @Test func extensionHeadersAreBounded() async throws {
        var limits = ScanLimits()
        limits.maxHeaderBytes = 4096
        let longPax = try await walk(Self.withDatabaseFirst { $0.paxFile("x", records: ["path": String(repeating: "a", count: 5000)], []) }, limits: limits)
        #expect(longPax.problemText.contains("extension header of"))
        let malformed = try await walk(Self.withDatabaseFirst {
            $0.raw(TarWriter.header(name: "PaxHeader", size: 12, type: "x")); $0.data(Array("99 path=abc\n".utf8)); $0.file("y", "")
        })
        #expect(malformed.problemText.contains("malformed PAX header record"))
        let badSize = try await walk(Self.withDatabaseFirst { $0.paxFile("x", records: ["size": "-5"], []) })
        #expect(badSize.problemText.contains("invalid PAX size"))
        // A PAX sparse file (GNU 1.0: the stored data starts with the map) is not read as the file.
        let paxSparse = try await walk(Self.withDatabaseFirst {
            $0.paxFile("GNUSparseFile.0/status", records: ["GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "var/lib/dpkg/status",
                                                        "GNU.sparse.realsize": "10737418240"], Array("1\n0\n512\n".utf8) + [UInt8](repeating: 0, count: 500))
            $0.file("etc/os-release", "ID=alpine\n")
        })
        #expect(!paxSparse.complete)
        #expect(paxSparse.files["var/lib/dpkg/status"]?.problems.first?.reason == "sparse file; not read")
        #expect(paxSparse.files["etc/os-release"]?.os?.id == "alpine")
        // A symlink or directory whose header claims a size has no data behind it.
        var claims = TarWriter()
        claims.raw(TarWriter.header(name: "link", size: 4096, type: "2", link: "target"))
        claims.raw(TarWriter.header(name: "dir/", size: 4096, type: "5"))
        claims.file("etc/os-release", "ID=alpine\n")
        let headerOnly = try await walk(claims.finished)
        #expect(headerOnly.complete, "\(headerOnly.problemText)")
        #expect(headerOnly.files["etc/os-release"]?.os?.id == "alpine")
        // A long path is refused (partial), the walk goes on.
        limits = ScanLimits()
        limits.maxPathBytes = 200
        let longPath = try await walk(Self.withDatabaseFirst { $0.longNameFile(String(repeating: "d/", count: 150) + "f", "x"); $0.file("etc/os-release", "ID=alpine\n") }, limits: limits)
        #expect(longPath.problemText.contains("longer than 200 bytes"))
        #expect(longPath.files["etc/os-release"]?.os?.id == "alpine")
    }

    @Test func sparseExtensionsAndProblemsAreBounded() async throws {
        var limits = ScanLimits()
        limits.maxSparseExtensionBlocks = 2
        var t = TarWriter()
        t.raw(TarWriter.header(name: "disk.img", size: 0, type: "S", extended: true))
        var more = [UInt8](repeating: 0, count: 512); more[504] = 1
        for _ in 0..<5 { t.raw(more) }
        let sparse = try await walk(t.finished, limits: limits)
        #expect(!sparse.complete && sparse.problemText.contains("more than 2 extension headers"))
        // Problems past the cap are counted, and the merge says so.
        limits = ScanLimits()
        limits.maxProblems = 3
        let many = try await walk(Self.withDatabaseFirst { t in for k in 0..<10 { t.file("../escape\(k)", "") } }, limits: limits)
        #expect(many.problems.count == 3 && many.problemsNotKept == 7)
        #expect(ImageInventory(layers: [many]).problemText.contains("layer 1: 7 more problem(s) not kept"))
    }

    @Test func entryCountIsBounded() async throws {
        var limits = ScanLimits()
        limits.maxEntries = 50
        let index = try await walk(Self.withDatabaseFirst { t in for k in 0..<100 { t.file("f\(k)", "") } }, limits: limits)
        #expect(!index.complete && index.problemText.contains("more than 50 entries"))
        #expect(index.entries == 51)
    }

    @Test func oldGnuSparseHeadersAreReadPast() async throws {
        var t = TarWriter()
        t.raw(TarWriter.header(name: "disk.img", size: 512, type: "S", extended: true))
        var ext = [UInt8](repeating: 0, count: 512); ext[504] = 1
        t.raw(ext)
        t.raw([UInt8](repeating: 0, count: 512))  // last extension block
        t.raw([UInt8](repeating: 0xAB, count: 512))  // the stored data
        t.file("etc/os-release", "ID=alpine\n")
        let index = try await walk(t.finished)
        #expect(index.complete, "\(index.problemText)")
        #expect(index.files["etc/os-release"]?.os?.id == "alpine")
        #expect(index.paths.contains("disk.img"))
    }

    @Test func malformedPackageDatabases() async throws {
        var t = TarWriter()
        t.file("var/lib/dpkg/status", """
            Package: good
            Status: install ok installed
            Version: 1.0-1
            garbage line without a colon
             continuation after garbage

            Package: noversion
            Status: install ok installed

            Package: nostatus
            Version: 2

            \u{0}\u{1}binary: junk
            """)
        t.file("var/lib/dpkg/status.d/base", "Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n")
        t.file("var/lib/dpkg/status.d/base.md5sums", "d41d8cd98f00b204e9800998ecf8427e  etc/x\n")
        t.file("lib/apk/db/installed", "P:ok\nV:1\n\nV:2\n\nnot a field\nP:x\nV:3\n")
        let index = try await walk(t.finished)
        #expect(index.summary == ["apk:ok@1", "apk:x@3", "deb:base-files@12.4+deb12u5", "deb:good@1.0-1"])
        let dpkg = try #require(index.files["var/lib/dpkg/status"]).problems.map(\.reason).joined(separator: "\n")
        #expect(dpkg.contains("malformed line"))
        #expect(dpkg.contains("stanza at line 7 with no Package or Version; skipped"))
        #expect(dpkg.contains("2 stanzas with no Status skipped (first at line 10)"))
        let apk = try #require(index.files["lib/apk/db/installed"]).problems.map(\.reason).joined(separator: "\n")
        #expect(apk.contains("entry at line 4 with no P: or V:; skipped") && apk.contains("malformed line"))
        let inventory = ImageInventory(layers: [index])
        #expect(!inventory.complete)
    }

    /// A database of many broken stanzas and lines is reported per reason, with a count: the index
    /// of a hostile file does not grow with the number of its broken entries.
    @Test func brokenEntriesAreCountedNotListed() async throws {
        var status = "Package: good\nStatus: install ok installed\nVersion: 1\n\n"
        for i in 0..<5000 { status += "Package: p\(i)\nVersion: 1\n\nPackage: q\(i)\nStatus: install ok installed\n\nno colon\n\n" }
        var apk = "P:ok\nV:1\n\n"
        for _ in 0..<5000 { apk += "V:2\n\n?\n\n" }
        var t = TarWriter()
        t.file("var/lib/dpkg/status", status)
        t.file("lib/apk/db/installed", apk)
        let index = try await walk(t.finished)
        #expect(index.summary == ["apk:ok@1", "deb:good@1"])
        let dpkg = try #require(index.files["var/lib/dpkg/status"]).problems.map(\.reason)
        #expect(dpkg == ["5000 malformed line(s) ignored (first at line 11)",
                         "5000 stanzas with no Status skipped (first at line 5)",
                         "5000 stanzas with no Package or Version skipped (first at line 8)"])
        let apkProblems = try #require(index.files["lib/apk/db/installed"]).problems.map(\.reason)
        #expect(apkProblems == ["5000 malformed line(s) ignored (first at line 6)",
                                "5000 entries with no P: or V: skipped (first at line 4)"])
    }

    /// Giant lines and binary junk in the text databases: within the caps they are parsed (long
    /// values clipped), over them the file is refused; the packages around them are kept.
    @Test func giantLinesAndJunkInTextDatabases() async throws {
        let giant = String(repeating: "x", count: 8 << 20)
        var t = TarWriter()
        t.file("var/lib/dpkg/status", "Package: big\nStatus: install ok installed\nVersion: 1\nDescription: \(giant)\n\n"
               + "Package: after\nStatus: install ok installed\nVersion: 2\n\n\(giant)\n")
        var junk = [UInt8](repeating: 0, count: 2 << 20)
        var rng = MutatedLayerTests.Generator(state: 3)
        for k in junk.indices { junk[k] = UInt8.random(in: 0...255, using: &rng) | 0x80 }
        t.file("lib/apk/db/installed", Array("P:ok\nV:1\n\n".utf8) + junk)
        t.file("site-packages/huge-1.dist-info/METADATA", "Name: huge\nVersion: 1\nSummary: \(String(giant.prefix(5 << 20)))\n")
        t.file("site-packages/long-1.dist-info/METADATA", "Name: long\nVersion: 1\nSummary: \(String(giant.prefix(3 << 20)))\n")
        t.file("node_modules/big/package.json", #"{"name":"big","version":"1","description":"\#(giant.prefix(5 << 20))"}"#)
        t.file("node_modules/long/package.json", #"{"name":"long","version":"1","description":"\#(giant.prefix(3 << 20))"}"#)
        let index = try await walk(t.finished)
        #expect(index.summary == ["apk:ok@1", "deb:after@2", "deb:big@1", "npm:long@1", "python:long@1"])
        #expect(index.files["var/lib/dpkg/status"]?.problems.first?.reason.contains("malformed line") == true)
        #expect(index.files["lib/apk/db/installed"]?.problems.first?.reason.contains("malformed line") == true)
        for name in ["site-packages/huge-1.dist-info/METADATA", "node_modules/big/package.json"] {
            #expect(index.files[name]?.problems.first?.reason.contains("over the 4194304-byte limit") == true, "\(name)")
        }
        // What is kept of a package stays small whatever its file held.
        #expect(try JSONEncoder().encode(index).count < 64 << 10)
    }

    /// A pom.properties over the metadata cap inside a jar is refused by name; the jar's other
    /// packages are kept.
    @Test func aHostilePomPropertiesIsRefused() async throws {
        var jar = ZipWriter()
        try jar.add("META-INF/maven/g/huge/pom.properties", Array(("groupId=g\nartifactId=huge\nversion=1\n#" + String(repeating: "y", count: 5 << 20)).utf8), deflate: true)
        try jar.add("META-INF/maven/g/ok/pom.properties", ZipWriter.pomProperties(group: "g", artifact: "ok", version: "2"))
        var t = TarWriter()
        t.file("app/a.jar", jar.bytes)
        let index = try await walk(t.finished)
        #expect(index.summary == ["java-archive:g:ok@2"])
        #expect(index.files["app/a.jar"]?.problems.first?.reason.contains("over the 4194304-byte limit for this kind of file") == true,
                "\(index.problemText)")
    }

    /// Hard-link chains and loops: a link copies what its target held (so a chain carries it on),
    /// a loop of hard links holds nothing. (Symbolic-link loops: LayerWalkerTests.)
    @Test func hardLinkChainsAndLoops() async throws {
        var t = TarWriter()
        t.file("opt/a.jar", try ZipWriter.jar(group: "g", artifact: "a", version: "1"))
        t.hardLink("opt/b.jar", to: "opt/a.jar")
        t.hardLink("opt/c.jar", to: "opt/b.jar")
        t.hardLink("opt/x.jar", to: "opt/y.jar")
        t.hardLink("opt/y.jar", to: "opt/x.jar")
        let hard = try await walk(t.finished)
        #expect(hard.complete)
        #expect(hard.files["opt/c.jar"]?.packages.first?.locations == ["opt/c.jar!META-INF/maven/g/a/pom.properties"])
        #expect(hard.files["opt/x.jar"] == nil && hard.files["opt/y.jar"] == nil)
    }

    @Test func malformedPythonAndNpmMetadata() async throws {
        var t = TarWriter()
        t.file("site-packages/a-1.dist-info/METADATA", "Metadata-Version: 2.1\nSummary: no name\n")
        t.file("site-packages/b-1.dist-info/METADATA", [0xFF, 0xFE, 0x00] + Array(":::\n\n".utf8))
        t.file("site-packages/c.egg-info/PKG-INFO", "Name: c\nVersion: 0.1\n")
        // CRLF line ends (wheels built on Windows), in METADATA and a dpkg database alike.
        t.file("site-packages/d-2.dist-info/METADATA", "Metadata-Version: 2.1\r\nName: d\r\nVersion: 2.0\r\n\r\nbody\r\n")
        t.file("var/lib/dpkg/status", "Package: crlf\r\nStatus: install ok installed\r\nVersion: 1.0\r\n\r\n")
        t.file("node_modules/x/package.json", "[1,2,3]")
        t.file("node_modules/y/package.json", String(repeating: "[", count: 100_000))
        t.file("node_modules/z/package.json", #"{"name": 5, "version": "1"}"#)
        let index = try await walk(t.finished)
        #expect(index.summary == ["deb:crlf@1.0", "python:c@0.1", "python:d@2.0"])
        #expect(index.files["site-packages/a-1.dist-info/METADATA"]?.problems.first?.reason == "no Name or Version header")
        #expect(index.files["site-packages/b-1.dist-info/METADATA"]?.problems.isEmpty == false)
        #expect(index.files["node_modules/x/package.json"]?.problems.first?.reason == "not a JSON object")
        #expect(index.files["node_modules/y/package.json"]?.problems.first?.reason == "nested too deeply")
        #expect(index.files["node_modules/z/package.json"]?.problems.first?.reason == "name or version is not a string")
    }

    @Test func malformedAndTruncatedGoBinaries() async throws {
        var t = TarWriter()
        // The build information header is the last thing in the file: cut short.
        let full = GoBinary.elf(modInfo: "mod\tm\tv1.0.0\t\n")
        t.file("bin/cut", Array(full[..<(4096 + 40)]))
        // A length that runs past the end.
        var lying = GoBinary.elf(modInfo: "mod\tm\tv1.0.0\t\n")
        lying[4096 + 32] = 0xFF; lying[4096 + 33] = 0x7F
        t.file("bin/lying", Array(lying[..<(4096 + 200)]))
        // A varint that never ends.
        var endless = Array(GoBinary.elf(modInfo: "")[..<(4096 + 32)])
        endless += [UInt8](repeating: 0xFF, count: 64)
        t.file("bin/endless", endless)
        // Go before 1.18: pointer-format build information.
        var old = GoBinary.elf(modInfo: "x")
        old[4096 + 15] = 0
        t.file("bin/old", old)
        // The magic in a file that is not ELF is not looked for.
        t.file("data/blob", Array(GoBinary.elf(modInfo: "mod\tm\tv1\t\n").dropFirst(4)))
        // The magic off the 16-byte alignment is not build information.
        t.file("bin/unaligned", GoBinary.elf(modInfo: "mod\tm\tv1.0.0\t\n", padding: 4100))
        let index = try await walk(t.finished, chunk: 333)
        #expect(index.summary.isEmpty, "\(index.summary)")
        for name in ["bin/cut", "bin/lying", "bin/endless"] {
            #expect(index.files[name]?.problems.first?.reason.contains("truncated or malformed") == true, "\(name)")
        }
        #expect(index.files["bin/old"]?.problems.first?.reason.contains("before 1.18") == true)
        #expect(index.files["data/blob"] == nil && index.files["bin/unaligned"] == nil)
        // Build information over the cap.
        var limits = ScanLimits()
        limits.maxGoBuildInfoBytes = 100
        var big = TarWriter()
        big.file("bin/big", GoBinary.elf(modInfo: String(repeating: "dep\tx\tv1.0.0\t\n", count: 100)))
        let capped = try await walk(big.finished, limits: limits)
        #expect(capped.files["bin/big"]?.problems.first?.reason.contains("larger than 100 bytes") == true)
    }

    @Test func zipBombsAndDeepJarsAreBounded() async throws {
        var limits = ScanLimits()
        limits.maxArchiveBytes = 1 << 20
        limits.maxArchiveDepth = 3
        var t = TarWriter()
        // An entry declaring 2 GiB.
        var bomb = ZipWriter()
        try bomb.add("META-INF/maven/g/a/pom.properties", ZipWriter.pomProperties(group: "g", artifact: "a", version: "1"))
        try bomb.add("lib/huge.jar", [UInt8](repeating: 0, count: 1000), deflate: true, declaredSize: 2 << 30)
        t.file("app/bomb.jar", bomb.bytes)
        // An entry whose deflate stream inflates past the size it declares.
        var liar = ZipWriter()
        try liar.add("lib/liar.jar", [UInt8](repeating: 0, count: 500_000), deflate: true, declaredSize: 1000)
        t.file("app/liar.jar", liar.bytes)
        // Jars nested five deep.
        var nested = try ZipWriter.jar(group: "g", artifact: "level5", version: "5")
        for level in (1...4).reversed() {
            nested = try ZipWriter.jar(group: "g", artifact: "level\(level)", version: "\(level)", nested: [("lib/level\(level + 1).jar", nested)])
        }
        t.file("app/level1.jar", nested)
        // Many nested jars, each under the per-entry bound, over the whole archive's budget.
        var wide = ZipWriter()
        for k in 0..<8 {
            try wide.add("lib/w\(k).jar", try ZipWriter.jar(group: "g", artifact: "w\(k)", version: "1", nested: [("pad.bin", [UInt8](repeating: UInt8(k), count: 200_000))]), deflate: true)
        }
        t.file("app/wide.jar", wide.bytes)
        t.file("app/notzip.jar", "PK but not really")
        let index = try await walk(t.finished, limits: limits)
        #expect(index.complete, "\(index.problemText)")
        #expect(index.summary.contains("java-archive:g:a@1"))
        #expect(index.files["app/bomb.jar"]?.problems.first?.reason.contains("bytes left to inflate") == true)
        #expect(index.files["app/liar.jar"]?.problems.first?.reason.contains("deflate data") == true)
        let deep = try #require(index.files["app/level1.jar"])
        #expect(deep.packages.map(\.name) == ["g:level1", "g:level2", "g:level3"])
        #expect(deep.problems.first?.reason.contains("nested deeper than 3") == true)
        let wideFile = try #require(index.files["app/wide.jar"])
        #expect(wideFile.packages.count < 8 && wideFile.packages.count >= 3)
        #expect(wideFile.problems.contains { $0.reason.contains("bytes left to inflate") })
        #expect(index.files["app/notzip.jar"]?.problems.first?.reason.contains("not a readable zip archive") == true)
    }

    @Test func aZstdLayerWithoutTheSystemLibraryIsAClearError() async throws {
        #expect(ZstdLibrary.load("libberth-no-such-zstd.so.1") == nil)
        var walker = LayerWalker()
        walker.zstd = nil
        await #expect(throws: LayerWalkError.self) {
            _ = try await walker.index(Chunks(Compress.zstdRaw(Array("x".utf8))))
        }
        // Gzip and plain layers do not need it.
        let plain = try await walker.index(Chunks(try SampleLayer.everything()))
        #expect(plain.summary == SampleLayer.expected)
    }

    @Test func anEmptyOrTinyLayerIsAProblemNotACrash() async throws {
        let empty = try await walk([])
        #expect(!empty.complete && empty.problemText.contains("empty layer"))
        let tiny = try await walk([0x1F, 0x8B])
        #expect(!tiny.complete, "\(tiny.problemText)")
        let zeros = try await walk([UInt8](repeating: 0, count: 1024))
        #expect(zeros.complete && zeros.entries == 0)
    }
}

/// Seeded mutations of a layer with every kind of file of interest: whatever the bytes, the walk
/// ends with an index (complete or not), the merge and the JSON form hold, and nothing traps.
@Suite struct MutatedLayerTests {
    /// SplitMix64: the same mutations on every run and machine.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func mutatedLayersGiveAnIndexOrAProblem() async throws {
        let original = try SampleLayer.everything()
        var rng = Generator(state: 15)
        var partial = 0
        for round in 0..<300 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[at] = round % 3 == 0 ? UInt8.random(in: 0...255, using: &rng) : bytes[at] ^ (1 << UInt8.random(in: 0...7, using: &rng))
            }
            if round % 5 == 0 { bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng))) }
            let layer = round % 2 == 0 ? bytes : try Compress.gzip(bytes)
            let index = try await walk(layer, chunk: Int.random(in: 1...9000, using: &rng))
            if !index.complete { partial += 1 }
            let inventory = ImageInventory(layers: [index])
            #expect(inventory.complete || !inventory.problems.isEmpty, "round \(round)")
            #expect(try JSONDecoder().decode(LayerIndex.self, from: JSONEncoder().encode(index)) == index)
        }
        // The mutations do reach the parsers: many layers come out partial.
        #expect(partial > 50)
    }
}
