import Foundation
import XCTest

@testable import BerthCredentials

#if canImport(Glibc)
import Glibc
#endif

/// The stored login's file is read with bounds: it is in the user's home, but a FIFO or a huge
/// file there must give an error, not a read that never ends.
final class StoredLoginFileTests: XCTestCase {
    private func directory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("berth-login-" + UUID().uuidString)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testAMissingFileIsNoLogin() throws {
        XCTAssertNil(try CLIConfig.readBounded(try directory().appendingPathComponent("config.json").path))
    }

    func testARegularFileIsReadWhole() throws {
        let path = try directory().appendingPathComponent("config.json").path
        let bytes = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0) })
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try CLIConfig.readBounded(path), bytes)
    }

    func testAFileOverTheLimitIsRefused() throws {
        let path = try directory().appendingPathComponent("config.json").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: UInt64(CLIConfig.sizeLimit + 1))   // sparse: no disk used
        try handle.close()
        XCTAssertThrowsError(try CLIConfig.readBounded(path)) { error in
            XCTAssertTrue("\(error)".contains("larger than"), "\(error)")
        }
    }

    func testAFIFOIsRefusedWithoutBlocking() throws {
        let path = try directory().appendingPathComponent("config.json").path
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        XCTAssertThrowsError(try CLIConfig.readBounded(path)) { error in
            XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
        }
    }

    func testADirectoryIsRefused() throws {
        let path = try directory().appendingPathComponent("config.json").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        XCTAssertThrowsError(try CLIConfig.readBounded(path))
    }
}
