import Foundation
import OCIModel
import RegistryStore
import Testing

extension MetadataStoreConformance {
    static let scanCases: [Case] = [
        Case("layerIndex: stored once per digest, replaced by a later put, bytes kept exactly") { s in
            let layer = digest("layer-a")
            let none = try await s.layerIndex(layer)
            #expect(none == nil)
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            let first = StoredLayerIndex(digest: layer, format: 1, catalogerVersion: "c1", complete: false, document: [0, 1, 255, 0],
                                         indexedAt: at)
            try await s.putLayerIndex(first)
            let read = try #require(try await s.layerIndex(layer))
            #expect(read == first)
            let second = StoredLayerIndex(digest: layer, format: 2, catalogerVersion: "c2", complete: true, document: Array(repeating: 7, count: 70_000),
                                          indexedAt: at.addingTimeInterval(5))
            try await s.putLayerIndex(second)
            let replaced = try await s.layerIndex(layer)
            #expect(replaced == second)
            let other = try await s.layerIndex(digest("layer-b"))
            #expect(other == nil)
        },
        Case("putInventory: the inventory and its package keys; a second put replaces both") { s in
            let m1 = digest("manifest-1"), m2 = digest("manifest-2")
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            let inv = StoredInventory(manifest: m1, status: .partial, layers: [digest("l1"), digest("l2")], catalogerVersion: "c1",
                                      document: [1, 2, 3], detail: "layer 2: truncated", createdAt: at)
            let bash = InventoryPackageKey(ecosystem: "Debian", name: "bash")
            let zlib = InventoryPackageKey(ecosystem: "Debian", name: "zlib")
            let requests = InventoryPackageKey(ecosystem: "PyPI", name: "requests")
            try await s.putInventory(inv, packages: [bash, zlib, bash, requests])
            try await s.putInventory(StoredInventory(manifest: m2, status: .complete, layers: [digest("l1")], catalogerVersion: "c1",
                                                     document: [9], detail: nil, createdAt: at), packages: [bash])
            let read = try #require(try await s.inventory(manifest: m1))
            #expect(read == inv)
            let withBash = try await s.inventories(containing: bash, after: nil, limit: 10)
            #expect(withBash == [m1, m2].sorted { $0.string < $1.string })
            let withZlib = try await s.inventories(containing: zlib, after: nil, limit: 10)
            #expect(withZlib == [m1])
            // The ecosystem is part of the key.
            let otherEcosystem = try await s.inventories(containing: InventoryPackageKey(ecosystem: "Ubuntu", name: "bash"), after: nil, limit: 10)
            #expect(otherEcosystem.isEmpty)

            // Replaced: status, layers, document, detail and the package keys.
            let again = StoredInventory(manifest: m1, status: .complete, layers: [digest("l3")], catalogerVersion: "c2", document: [],
                                        detail: nil, createdAt: at.addingTimeInterval(1))
            try await s.putInventory(again, packages: [requests])
            let replaced = try await s.inventory(manifest: m1)
            #expect(replaced == again)
            let zlibAfter = try await s.inventories(containing: zlib, after: nil, limit: 10)
            #expect(zlibAfter.isEmpty)
            let requestsAfter = try await s.inventories(containing: requests, after: nil, limit: 10)
            #expect(requestsAfter == [m1])
            let none = try await s.inventory(manifest: digest("manifest-3"))
            #expect(none == nil)
        },
        Case("inventories(containing:): pages in digest order after a digest") { s in
            let key = InventoryPackageKey(ecosystem: "npm", name: "@scope/left-pad")
            let manifests = (0..<7).map { digest("m\($0)") }.sorted { $0.string < $1.string }
            for m in manifests {
                try await s.putInventory(StoredInventory(manifest: m, status: .complete, layers: [], catalogerVersion: "c",
                                                         document: [], detail: nil, createdAt: Date()), packages: [key])
            }
            var seen: [Digest] = []
            var after: Digest?
            while true {
                let page = try await s.inventories(containing: key, after: after, limit: 3)
                if page.isEmpty { break }
                #expect(page.count <= 3)
                seen += page
                after = page.last
            }
            #expect(seen == manifests)
            let none = try await s.inventories(containing: key, after: nil, limit: 0)
            #expect(none.isEmpty)
        },
        Case("inventories(manifests:): exactly the asked inventories that exist, once each, in digest order, across statements") { s in
            let at = Date(timeIntervalSince1970: 1_700_000_000)
            // More than one statement's worth, so the store's own chunking is exercised.
            let count = ScanStoreLimits.maxInventoryBatch + 20
            var stored: [Digest: StoredInventory] = [:]
            for k in 0..<count {
                let m = digest("batch-inv-\(k)")
                let inv = StoredInventory(manifest: m, status: k % 3 == 0 ? .partial : .complete, layers: [digest("bl\(k % 4)")],
                                          catalogerVersion: "c\(k % 2)", document: [UInt8(k % 256), 1, 2], detail: k % 3 == 0 ? "partial \(k)" : nil,
                                          createdAt: at.addingTimeInterval(Double(k)))
                try await s.putInventory(inv, packages: [])
                stored[m] = inv
            }
            let asked = stored.keys.sorted { $0.string < $1.string }.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
            let missing = digest("batch-inv-missing")
            let read = try await s.inventories(manifests: asked.reversed() + [missing, asked[0], asked[1]])
            #expect(read.map(\.manifest) == asked)
            #expect(read == asked.map { stored[$0]! })
            // Nothing asked, or only unknown manifests: nothing answered.
            #expect(try await s.inventories(manifests: []).isEmpty)
            #expect(try await s.inventories(manifests: [missing]).isEmpty)
            // Each answer is what the single read gives.
            let one = try await s.inventory(manifest: asked[3])
            #expect(read[3] == one)
        },
        Case("putInventory: every status round-trips, a not-an-image record has no packages") { s in
            for (k, status) in InventoryStatus.allCases.enumerated() {
                let m = digest("status-\(k)")
                let inv = StoredInventory(manifest: m, status: status, layers: [], catalogerVersion: "c", document: [],
                                          detail: status == .failed ? "no such layer" : nil, createdAt: Date(timeIntervalSince1970: 10))
                try await s.putInventory(inv, packages: [])
                let read = try await s.inventory(manifest: m)
                #expect(read == inv)
            }
        },
    ]
}
