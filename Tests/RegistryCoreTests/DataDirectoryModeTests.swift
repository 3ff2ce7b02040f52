import Backends
import Foundation
import Testing
@testable import RegistryCore

/// The data directory (images, keys, sealed secrets) and the database are readable by their
/// owner only.
@Suite struct DataDirectoryModeTests {
    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
    }

    @Test func aNewDataDirectoryAndItsDatabaseAreTheOwnersAlone() throws {
        let dir = NSTemporaryDirectory() + "berth-modes-" + UUID().uuidString + "/data"
        let registry = try Registry.embedded(dataDirectory: dir)
        defer { withExtendedLifetime(registry) {} }   // the -wal and -shm files exist while it is open
        #expect(try mode(dir) == 0o700)
        for file in ["metadata.sqlite", "metadata.sqlite-wal", "metadata.sqlite-shm"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + file), "\(file)")
            #expect(try mode(dir + "/" + file) == 0o600, "\(file)")
        }
    }

    @Test func permissiveModesOfAnExistingDataDirectoryAreTightened() throws {
        let dir = NSTemporaryDirectory() + "berth-modes-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        _ = fm.createFile(atPath: dir + "/metadata.sqlite", contents: nil, attributes: [.posixPermissions: 0o644])
        _ = try Registry.embedded(dataDirectory: dir)
        #expect(try mode(dir) == 0o700)
        #expect(try mode(dir + "/metadata.sqlite") == 0o600)
    }
}
