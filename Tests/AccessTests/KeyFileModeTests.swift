import Foundation
import Testing
@testable import Access

/// The key-encryption key (the default key file) is readable by its owner only.
@Suite struct KeyFileModeTests {
    @Test func keyFilesAreTheOwnersAlone() async throws {
        let (_, dir) = try await makeAccess()
        let mode = { (path: String) in (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
        #expect(try mode(dir + "/keys") == 0o700)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/keys")
        // the signing keys are in the metadata store, sealed under this file's key
        #expect(files == [KeyEncryptionKey.defaultFile])
        for file in files {
            #expect(try mode(dir + "/keys/" + file) == 0o600, "\(file)")
        }
    }
}
