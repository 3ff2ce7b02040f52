import Foundation
import MetadataStoreConformance
@testable import PostgresStore
import Testing

/// The PostgreSQL backend against the metadata store conformance suite, unchanged: every case gets
/// a fresh, empty schema of its own on the test database. At most two cases at a time: a case
/// mostly waits for commits (fsync), so a few overlap well, but a hundred schemas made at once
/// would starve the suites that run beside it on a 2-core CI machine.
@Suite struct PostgresMetadataStoreConformanceTests {
    @Test(arguments: MetadataStoreConformance.cases)
    func conformance(_ c: MetadataStoreConformance.Case) async throws {
        await Self.limiter.acquire()
        defer { Task { await Self.limiter.release() } }
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

    static let limiter = Limiter(permits: 2)
}

/// At most `permits` holders at once; the others wait in order.
actor Limiter {
    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) { free = permits }

    func acquire() async {
        if free > 0 { free -= 1; return }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty { free += 1 } else { waiting.removeFirst().resume() }
    }
}
