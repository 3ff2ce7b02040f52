import Foundation
import MetadataStoreConformance
@testable import PostgresStore
import Testing

/// The PostgreSQL backend against the metadata store conformance suite, unchanged: every case gets
/// a fresh, empty schema of its own on the test database.
@Suite struct PostgresMetadataStoreConformanceTests {
    @Test(arguments: MetadataStoreConformance.cases)
    func conformance(_ c: MetadataStoreConformance.Case) async throws {
        let configuration = try await TestDatabase.freshSchema()
        let slot = StoreSlot()
        do {
            try await c.run {
                let store = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
                slot.set(store)
                return store
            }
        } catch {
            await slot.value?.close()
            try? await TestDatabase.dropSchema(configuration)
            throw error
        }
        await slot.value?.close()
        try await TestDatabase.dropSchema(configuration)
    }
}
