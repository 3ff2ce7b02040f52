import FileSystemStorage
import BlobStoreConformance
import Foundation
import Testing
@testable import BlobStorage

/// The filesystem blob store against the blob store conformance suite: every case gets a fresh,
/// empty root directory of its own.
@Suite struct FileSystemBlobStoreConformanceTests {
    @Test(arguments: BlobStoreConformance.cases)
    func conformance(_ c: BlobStoreConformance.Case) async throws {
        try await c.run { try FileSystemBlobStore(root: tempDir()) }
    }
}
