import Foundation
import Testing
@testable import Scanning

/// Go 1.13 to 1.17 binaries (the pointer format of build information), read as Go's
/// `debug/buildinfo` reads them (and so Syft), from a single streaming pass over the file.
@Suite struct GoPointerFormatTests {
    static func packages(_ bytes: [UInt8], chunk: Int) async throws -> (packages: [String], problems: [String]) {
        var t = TarWriter()
        t.file("usr/bin/old", bytes)
        let index = try await walk(t.finished, chunk: chunk)
        let file = index.files["usr/bin/old"]
        return ((file?.packages ?? []).map { "\($0.name)@\($0.version)" }.sorted(), (file?.problems ?? []).map(\.reason))
    }

    static let expected = ["example.com/old@(devel)", "golang.org/x/text@v0.3.7", "stdlib@go1.16.15"]

    @Test(arguments: [1, 7, 333, 4096, 1 << 20])
    func everyLayoutIsReadInEveryChunking(chunk: Int) async throws {
        for layout in [GoPointerELF(), GoPointerELF(is64: false, bigEndian: true), GoPointerELF(bigEndian: true),
                       GoPointerELF(is64: false), GoPointerELF(stringsAfter: true), GoPointerELF(is64: false, stringsAfter: true)] {
            let got = try await Self.packages(layout.bytes, chunk: chunk)
            #expect(got.packages == Self.expected, "\(layout.is64) \(layout.bigEndian) \(layout.stringsAfter): \(got.problems)")
            #expect(got.problems.isEmpty)
        }
    }

    @Test func aDevelMainModuleTakesTheBinarysVersionString() async throws {
        let layout = GoPointerELF(rodataPrefix: [0] + Array("2.5.0".utf8) + [0])
        let got = try await Self.packages(layout.bytes, chunk: 500)
        #expect(got.packages == ["example.com/old@v2.5.0", "golang.org/x/text@v0.3.7", "stdlib@go1.16.15"])
    }

    @Test func goVersionLikeBytesBeforeTheRealStringDoNotMisleadIt() async throws {
        // Many `go1.` and a stray module sentinel before the real strings: the pointers decide.
        var prefix: [UInt8] = []
        for k in 0..<200 { prefix += Array("go1.\(k) ".utf8) }
        prefix += GoBinary.modStart + Array("mod\tdecoy\tv9.9.9\t\n".utf8) + GoBinary.modEnd
        let got = try await Self.packages(GoPointerELF(rodataPrefix: prefix).bytes, chunk: 4096)
        #expect(got.packages == Self.expected)
    }

    @Test func whatCannotBeReadIsAProblemNeverAGuess() async throws {
        // A string header at an address no segment maps: Go's reader gives no version, not a Go binary.
        var unmapped = GoPointerELF()
        unmapped.headerPointers = (0x10, 0x20)
        var got = try await Self.packages(unmapped.bytes, chunk: 333)
        #expect(got.packages.isEmpty)
        #expect(got.problems == ["Go build information truncated or malformed"])
        // A length past its segment: the same.
        var long = GoPointerELF()
        long.versionHeader = (GoPointerELF.base + 0x1002, 0x10_0000)
        got = try await Self.packages(long.bytes, chunk: 333)
        #expect(got.packages.isEmpty && got.problems.count == 1)
        // Over the build information's limit.
        long.versionHeader = (GoPointerELF.base + 0x1002, 1 << 40)
        got = try await Self.packages(long.bytes, chunk: 333)
        #expect(got.problems.first?.contains("over the") == true)
        // More version-like starts than are kept before the real one: said, not guessed.
        var flood: [UInt8] = []
        for _ in 0..<(GoStringWindows.maxVersionWindows + 10) { flood += Array("go1.".utf8) }
        flood += [UInt8](repeating: 0, count: GoStringWindows.versionWindowBytes)
        got = try await Self.packages(GoPointerELF(rodataPrefix: flood).bytes, chunk: 4096)
        #expect(got.packages.isEmpty)
        #expect(got.problems.first?.contains("before 1.18") == true && got.problems.first?.contains("no copy") == true, "\(got.problems)")
        // A program header with no bytes listed first covers every address in Go's reader.
        got = try await Self.packages(GoPointerELF(leadingEmptySegment: true).bytes, chunk: 333)
        #expect(got.packages.isEmpty && got.problems == ["Go build information truncated or malformed"])
        // The file ends before the strings it points at.
        let whole = GoPointerELF(stringsAfter: true).bytes
        got = try await Self.packages(Array(whole[..<(whole.count - 300)]), chunk: 333)
        #expect(got.packages.isEmpty && got.problems.count == 1)
    }

    @Test func aBuildInfoLiteralInReadOnlyDataIsNoHeader() async throws {
        // The `go` command holds the magic as a string in .rodata; at an aligned offset it came
        // first and hid the real header. Only the data segment may hold the header.
        let literal = GoBinary.magic + [8, 2] + [UInt8](repeating: 0xEE, count: 48)
        let got = try await Self.packages(GoPointerELF(rodataPrefix: literal).bytes, chunk: 333)
        #expect(got.packages == Self.expected, "\(got.problems)")
    }

    @Test func aChunkLargerThanTheCaptureIsReadWhole() {
        // The strings after their headers, past what the header's capture holds (maxBytes): the
        // rest of the chunk is still read.
        let bytes = GoPointerELF(stringsAfter: true).bytes
        let scanner = GoBuildInfoScanner(path: "x", maxBytes: 150)
        bytes.withUnsafeBytes { scanner.feed($0) }
        #expect(scanner.result()?.packages.map { "\($0.name)@\($0.version)" }.sorted() == Self.expected)
    }

    @Test func moduleWindowsShareOneBudget() {
        // Eight sentinels in a row, no end sentinel: every window opens before any is full.
        var stream: [UInt8] = []
        for _ in 0..<GoStringWindows.maxModWindows { stream += GoStringWindows.modStart }
        stream += [UInt8](repeating: 0x41, count: 20_000)
        for chunk in [7, 4096, stream.count] {
            var windows = GoStringWindows(maxModBytes: 3000, startingAt: 100)
            var p = 0
            while p < stream.count {
                let end = min(stream.count, p + chunk)
                Array(stream[p..<end]).withUnsafeBytes { windows.feed($0) }
                p = end
            }
            let kept = windows.windows.filter(\.isMod)
            #expect(kept.reduce(0) { $0 + $1.bytes.count } <= 3000, "\(chunk)")
            #expect(kept.first?.at == 100 && kept.allSatisfy { !$0.open }, "\(chunk)")
            // Small chunks open all eight before any is full: still one budget.
            if chunk == 7 { #expect(kept.count == GoStringWindows.maxModWindows) }
        }
    }

    @Test func programHeadersAreReadAsGoReadsThem() {
        let bytes = GoPointerELF().bytes
        let segments = try! #require(ELFSegments(head: Array(bytes.prefix(4096))))
        #expect(segments.segments.count == 3)
        // The data segment (read-write, not executable) may hold the header; text and rodata not.
        #expect(segments.mayHoldBuildInfo(at: 0x2000) && !segments.mayHoldBuildInfo(at: 0x1000) && !segments.mayHoldBuildInfo(at: 0x10))
        #expect(segments.fileOffset(of: GoPointerELF.base + 0x1004, count: 4) == 0x1004)
        #expect(segments.fileOffset(of: GoPointerELF.base + 0x1004, count: 1 << 30) == nil)
        #expect(segments.fileOffset(of: 0x10, count: 1) == nil)
        // Truncated or absurd headers are refused, never read out of bounds.
        #expect(ELFSegments(head: Array(bytes.prefix(40))) == nil)
        #expect(ELFSegments(head: Array(bytes.prefix(100))) == nil)
        var absurd = bytes
        absurd[56] = 0xFF; absurd[57] = 0xFF
        #expect(ELFSegments(head: Array(absurd.prefix(4096))) == nil)
    }

    /// The windows find every start exactly once at its file offset, across any chunking.
    @Test func windowsFindEveryStartOnceInAnyChunking() {
        var stream: [UInt8] = []
        var starts: [Int] = []
        var versions = 0
        var generator = MutatedLayerTests.Generator(state: 7)
        for _ in 0..<300 {
            stream += (0..<Int(generator.next() % 40)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if generator.next() % 40 != 0 || starts.count - versions >= GoStringWindows.maxModWindows {
                versions += 1
                starts.append(stream.count)
                stream += Array("go1.".utf8)
            } else {
                starts.append(stream.count)
                stream += GoStringWindows.modStart + Array("x".utf8) + GoStringWindows.modEnd
            }
        }
        for chunk in [1, 3, 15, 16, 17, 64, 1000] {
            var windows = GoStringWindows(maxModBytes: 1 << 20)
            var p = 0
            while p < stream.count {
                let end = min(stream.count, p + chunk)
                Array(stream[p..<end]).withUnsafeBytes { windows.feed($0) }
                p = end
            }
            #expect(Set(windows.windows.map(\.at)) == Set(starts), "\(chunk)")
            #expect(windows.windows.count == starts.count, "\(chunk)")
            for w in windows.windows {
                #expect(Array(stream[w.at..<(w.at + w.bytes.count)]) == w.bytes)
                if w.isMod { #expect(w.bytes.suffix(16).elementsEqual(GoStringWindows.modEnd)) }
            }
        }
    }
}
