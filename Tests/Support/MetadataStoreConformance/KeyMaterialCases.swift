import Foundation
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let keyMaterialCases: [Case] = [
        Case("key material: names by a byte prefix in byte order; a deleted name is gone, once") { s in
            for name in ["data-key-12", "data-key-10", "data-key-9", "data-keyX", "DATA-key-1", "data_key-1", "tokens"] {
                #expect(try await s.storeKeyMaterial(named: name, Data([1]), expectedVersion: 0))
            }
            let names = try await s.keyMaterialNames(prefix: "data-key-")
            #expect(names == ["data-key-10", "data-key-12", "data-key-9"])
            await #expect(try s.keyMaterialNames(prefix: "data_") == ["data_key-1"])   // no wildcard
            await #expect(try s.keyMaterialNames(prefix: "%") == [])
            await #expect(try s.keyMaterialNames(prefix: "").count == 7)
            #expect(try await s.deleteKeyMaterial(named: "data-key-9"))
            #expect(try await s.deleteKeyMaterial(named: "data-key-9") == false)
            await #expect(try s.keyMaterial(named: "data-key-9") == nil)
            await #expect(try s.keyMaterialNames(prefix: "data-key-") == ["data-key-10", "data-key-12"])
            await #expect(try s.keyMaterial(named: "data-key-10")?.blob == Data([1]))
            await #expect(try s.latestEventSequence() == 0)
        },
        Case("key material: nil while absent, then compare-and-swap on the version, per name") { s in
            await #expect(try s.keyMaterial(named: "tokens") == nil)
            let one = Data([1, 2, 3]), two = Data([4, 5])
            // nothing stored: only version 0 may write
            #expect(try await s.storeKeyMaterial(named: "tokens", one, expectedVersion: 1) == false)
            await #expect(try s.keyMaterial(named: "tokens") == nil)
            #expect(try await s.storeKeyMaterial(named: "tokens", one, expectedVersion: 0))
            var stored = try await #require(try s.keyMaterial(named: "tokens"))
            #expect(stored.version == 1)
            #expect(stored.blob == one)
            // a writer that read nothing lost: nothing changes
            #expect(try await s.storeKeyMaterial(named: "tokens", two, expectedVersion: 0) == false)
            stored = try await #require(try s.keyMaterial(named: "tokens"))
            #expect(stored.version == 1)
            #expect(stored.blob == one)
            #expect(try await s.storeKeyMaterial(named: "tokens", two, expectedVersion: 1))
            stored = try await #require(try s.keyMaterial(named: "tokens"))
            #expect(stored.version == 2)
            #expect(stored.blob == two)
            // names are independent, and key material is not in the registry's event log
            await #expect(try s.keyMaterial(named: "webhooks") == nil)
            await #expect(try s.latestEventSequence() == 0)
        },
        Case("key material: of many writers from the same version exactly one wins, and its blob is kept") { s in
            let wins = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for i in 0..<8 {
                    group.addTask { (i, try await s.storeKeyMaterial(named: "k", Data([UInt8(i)]), expectedVersion: 0)) }
                }
                var wins: [Int] = []
                for try await (i, won) in group where won { wins.append(i) }
                return wins
            }
            #expect(wins.count == 1)
            let stored = try await #require(try s.keyMaterial(named: "k"))
            #expect(stored.version == 1)
            #expect(stored.blob == wins.first.map { Data([UInt8($0)]) })
        },
    ]
}
