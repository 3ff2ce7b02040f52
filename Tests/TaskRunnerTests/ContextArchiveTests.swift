import Foundation
import XCTest
@testable import TaskRunner

/// Hostile uploaded contexts, built here as tar archives of a few blocks, are refused before tar
/// runs, each with a reason naming the member.
final class ContextArchiveTests: XCTestCase {
    private var directory = ""

    override func setUp() async throws {
        directory = FileManager.default.temporaryDirectory.path + "/berth-context-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory + "/out", withIntermediateDirectories: true)
    }

    override func tearDown() async throws { try? FileManager.default.removeItem(atPath: directory) }

    /// One ustar header; `size` is what the header claims (the contents written are `contents`).
    private func header(_ name: String, type: Character = "0", size: Int = 0, link: String = "") -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
        put(name, 0)
        put("0000644", 100); put("0000000", 108); put("0000000", 116)
        put(String(format: "%011o", size), 124)
        put("00000000000", 136)
        h[156] = UInt8(ascii: type.unicodeScalars.first!)
        put(link, 157)
        put("ustar", 257); put("00", 263)
        for i in 148..<156 { h[i] = 32 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o", sum), 148); h[154] = 0; h[155] = 32
        return h
    }

    private func member(_ name: String, type: Character = "0", contents: [UInt8] = [], claimed: Int? = nil, link: String = "") -> [UInt8] {
        var bytes = header(name, type: type, size: claimed ?? contents.count, link: link)
        bytes += contents
        bytes += [UInt8](repeating: 0, count: (512 - contents.count % 512) % 512)
        return bytes
    }

    private func archive(_ members: [[UInt8]]) throws -> String {
        let path = directory + "/context-\(UUID().uuidString).tar"
        try Data(members.joined() + [UInt8](repeating: 0, count: 1024)).write(to: URL(fileURLWithPath: path))
        return path
    }

    private func assertRefused(_ path: String, _ reason: String, limits: ContextArchiveLimits = ContextArchiveLimits(),
                               file: StaticString = #filePath, line: UInt = #line) async {
        var checkout = SourceCheckout()
        checkout.contextLimits = limits
        do {
            try await checkout.extract(archive: path, into: directory + "/out")
            XCTFail("extracted", file: file, line: line)
        } catch {
            XCTAssert(error.description.contains(reason), error.description, file: file, line: line)
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/out")) ?? []
        XCTAssertEqual(left, [], "nothing is unpacked", file: file, line: line)
    }

    func testAnOrdinaryContextWithInsideLinksIsUnpacked() async throws {
        let path = try archive([
            member("./", type: "5"), member("src/", type: "5"), member("src/main.c", contents: Array("int main;\n".utf8)),
            member("src/alias.c", type: "2", link: "main.c"), member("top.c", type: "2", link: "src/../src/main.c"),
            member("hard.c", type: "1", link: "src/main.c"),
        ])
        try await SourceCheckout().extract(archive: path, into: directory + "/out")
        XCTAssertEqual(try String(contentsOfFile: directory + "/out/top.c", encoding: .utf8), "int main;\n")
        XCTAssertEqual(try String(contentsOfFile: directory + "/out/hard.c", encoding: .utf8), "int main;\n")
    }

    func testEscapingNamesAndLinksAreRefused() async throws {
        await assertRefused(try archive([member("../evil", contents: [1])]), "a name with '..'")
        await assertRefused(try archive([member("/etc/evil", contents: [1])]), "an absolute name")
        await assertRefused(try archive([member("a/../../evil", contents: [1])]), "a name with '..'")
        await assertRefused(try archive([member("etc", type: "2", link: "/etc")]), "symbolic link leading out")
        await assertRefused(try archive([member("up", type: "2", link: "sub/../../..")]), "symbolic link leading out")
        // A link to "." is inside, but going up from under it is not.
        await assertRefused(try archive([member("here", type: "2", link: "."), member("up", type: "2", link: "here/..")]),
                            "symbolic link leading out")
        // A member written through a link (that comes later in the archive or not).
        await assertRefused(try archive([member("d/x", contents: [1]), member("d", type: "2", link: "sub")]),
                            "under a symbolic link")
        await assertRefused(try archive([member("h", type: "1", link: "../../etc/passwd")]), "hard link leading out")
        await assertRefused(try archive([member("h", type: "1", link: "/etc/passwd")]), "hard link leading out")
    }

    func testDevicesFIFOsAndSpecialMembersAreRefused() async throws {
        await assertRefused(try archive([member("null", type: "3")]), "a device file")
        await assertRefused(try archive([member("disk", type: "4")]), "a device file")
        await assertRefused(try archive([member("pipe", type: "6")]), "a FIFO")
        await assertRefused(try archive([member("sparse", type: "S")]), "unsupported type")
    }

    func testEntryCountAndUnpackedSizeAreBounded() async throws {
        let many = (0..<11).map { member("f\($0)", contents: [1]) }
        await assertRefused(try archive(many), "more than 10 members", limits: ContextArchiveLimits(maxEntries: 10))
        await assertRefused(try archive([member("a", contents: [UInt8](repeating: 7, count: 600)), member("b", contents: [1])]),
                            "unpacks to more than 600 bytes", limits: ContextArchiveLimits(maxBytes: 600))
    }

    /// A small gzip stream that would expand to GBs is refused without being expanded.
    func testACompressedContextIsRefused() async throws {
        let path = directory + "/bomb.tar.gz"
        var bytes: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]
        bytes += [UInt8](repeating: 0, count: 600)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        await assertRefused(path, "compressed")
        // Shorter than one tar block, as a real gzip of a small tar is.
        try Data([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3] + [UInt8](repeating: 0, count: 40)).write(to: URL(fileURLWithPath: path))
        await assertRefused(path, "compressed")
        try Data(repeating: 0x41, count: 2048).write(to: URL(fileURLWithPath: path))
        await assertRefused(path, "not a tar archive")
    }
}
