import Foundation
import Testing
@testable import Access

/// The token signing keys are readable by their owner only.
@Suite struct KeyFileModeTests {
    @Test func keyFilesAreTheOwnersAlone() async throws {
        let (_, dir) = try await makeAccess()
        let mode = { (path: String) in (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1 }
        #expect(try mode(dir + "/keys") == 0o700)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/keys")
        #expect(files.contains("keys.json") && files.contains { $0.hasSuffix(".pem") })
        for file in files {
            #expect(try mode(dir + "/keys/" + file) == 0o600, "\(file)")
        }
    }
}
