import SQLiteStore
import Foundation
import MetadataStoreConformance
import Testing
@testable import RegistryStore

/// The SQLite backend against the metadata store conformance suite: every case gets a fresh,
/// empty database of its own.
@Suite struct SQLiteMetadataStoreConformanceTests {
    @Test(arguments: MetadataStoreConformance.cases)
    func conformance(_ c: MetadataStoreConformance.Case) async throws {
        try await c.run { try newStore() }
    }
}
