import Foundation
import Testing
@testable import Scanning

/// How a layer's tar stream may end. umoci 0.4 writes layers whose last entry has no padding and
/// no end-of-archive marker; Go's archive/tar (runtimes, Syft) reads them as complete, so must we.
@Suite struct TarEndTests {
    static func layer(lastFileSize: Int) -> [UInt8] {
        var tar = TarWriter()
        tar.file("usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n")
        let content = Array("Metadata-Version: 2.1\nName: idna\nVersion: 3.7\n\n".utf8) + [UInt8](repeating: 0x41, count: lastFileSize)
        tar.raw(TarWriter.header(name: "usr/lib/python3/dist-packages/idna-3.7.dist-info/METADATA", size: content.count))
        tar.raw(content)  // no padding, no end marker
        return tar.bytes
    }

    @Test(arguments: [0, 17, 463, 464, 1000])
    func lastEntryWithoutPaddingOrEndMarkerIsComplete(size: Int) async throws {
        for chunk in [7, 512, 4096] {
            let index = try await walk(Self.layer(lastFileSize: size), chunk: chunk)
            #expect(index.complete, "\(index.problems)")
            #expect(index.packages.map(\.name) == ["idna", "six"])
            let gz = try await walk(try Compress.gzip(Self.layer(lastFileSize: size)), chunk: chunk)
            #expect(gz.complete && gz.packages.count == 2, "\(gz.problems)")
        }
    }

    @Test func dataCutShortIsStillTruncated() async throws {
        let bytes = Self.layer(lastFileSize: 100).dropLast(1)
        let index = try await walk(Array(bytes))
        #expect(!index.complete)
        #expect(index.problems.map(\.reason) == ["truncated tar: the input ends inside an entry"])
        #expect(index.packages.map(\.name) == ["six"])
    }
}
