import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let roundTripCases: [Case] = [
        Case("round trips: every read and every write reaches the store's count, and only its own store's") { s in
            let counted = try #require(s as? any CountsMetadataRoundTrips)
            let start = counted.roundTrips.total
            let exists = try await s.repositoryExists("team/app")
            #expect(!exists)
            let afterRead = counted.roundTrips.total
            #expect(afterRead > start)
            try await store(s, push("team/app", "m1", tag: "v1"))
            let afterWrite = counted.roundTrips.total
            #expect(afterWrite > afterRead)
            // nothing asked, nothing counted
            #expect(counted.roundTrips.total == afterWrite)
        },
    ]
}
