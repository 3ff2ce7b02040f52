import BlobStorage
import Foundation
import NIOCore
import OCIModel
import Testing

/// Upload ids a client could send that must never reach a path or another upload.
let hostileIDs = ["../../etc/passwd", "..", ".", "a/b", "", String(repeating: "a", count: 300), "\u{0}", "/tmp/x",
                  "%2e%2e%2f", UUID().uuidString.lowercased() + "/../x", "a\nb"]

extension BlobStoreConformance {
    static let hostileCases: [Case] = [
        Case("hostile upload ids are unknown to every upload operation and create nothing") { s in
            let d = Digest.compute(bytes(1))
            for id in hostileIDs {
                await #expect(throws: BlobStoreError.uploadUnknown, "\(id.debugDescription)") {
                    try await s.createUpload(id: id, owner: "r")
                }
                let size = try await s.uploadedSize(id: id), owner = try await s.uploadOwner(id: id)
                #expect(size == nil, "\(id.debugDescription)")
                #expect(owner == nil, "\(id.debugDescription)")
                await #expect(throws: BlobStoreError.uploadUnknown, "\(id.debugDescription)") {
                    try await s.append(id: id, offset: 0, body: body([1]), limit: nil)
                }
                await #expect(throws: BlobStoreError.uploadUnknown, "\(id.debugDescription)") {
                    try await s.commitUpload(id: id, expected: d, expectedSize: nil)
                }
                await #expect(throws: BlobStoreError.uploadUnknown, "\(id.debugDescription)") {
                    try await s.readSmallUpload(id: id, expected: d, limit: 10)
                }
                await #expect(throws: BlobStoreError.uploadUnknown, "\(id.debugDescription)") {
                    try await s.cancelUpload(id: id)
                }
            }
            let open = try await s.openUploadCount(), stale = try await s.staleUploads(olderThan: farFuture)
            let stored = try await s.allDigests()
            #expect(open == 0)
            #expect(stale == [])
            #expect(stored == [])
        },
        Case("well-formed ids of no upload are unknown to append and commit") { s in
            let id = newID()
            await #expect(throws: BlobStoreError.uploadUnknown) {
                try await s.append(id: id, offset: 0, body: body([1]), limit: nil)
            }
            await #expect(throws: BlobStoreError.uploadUnknown) {
                try await s.commitUpload(id: id, expected: Digest.compute(bytes(1)), expectedSize: nil)
            }
            let size = try await s.uploadedSize(id: id), open = try await s.openUploadCount()
            #expect(size == nil)
            #expect(open == 0)
        },
        Case("an upload's owner is opaque: any label reads back as written") { s in
            for owner in ["team/app", "../../x", "ünïcødé", String(repeating: "o", count: 1000)] {
                let id = newID()
                try await s.createUpload(id: id, owner: owner)
                let stored = try await s.uploadOwner(id: id)
                #expect(stored == owner)
            }
        },
    ]

    static let concurrencyCases: [Case] = [
        Case("race: concurrent writers of the same digest all succeed, leaving one blob with its bytes") { s in
            let data = bytes(200_000, seed: 21)
            let d = Digest.compute(data)
            let sizes = try await withThrowingTaskGroup(of: Int64.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let id = newID()
                        try await s.createUpload(id: id, owner: "r")
                        _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 16_384), limit: nil)
                        return try await s.commitUpload(id: id, expected: d, expectedSize: Int64(data.count))
                    }
                }
                var sizes: [Int64] = []
                for try await size in group { sizes.append(size) }
                return sizes
            }
            #expect(sizes == Array(repeating: 200_000, count: 4))
            #expect(try await s.allDigests() == [d])
            #expect(try await s.size(of: d) == 200_000)
            #expect(try await readAll(s, d, 0..<200_000) == data)
            #expect(try await s.openUploadCount() == 0)
        },
        Case("race: two appends to one upload: one lands whole, the other is refused, bytes never interleave") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            let bodies = [bytes(300_000, seed: 31), bytes(300_000, seed: 32)]
            let outcomes = await withTaskGroup(of: (Int, (any Error)?).self) { group in
                for i in 0..<2 {
                    group.addTask {
                        do {
                            _ = try await s.append(id: id, offset: 0, body: body(bodies[i], chunk: 4096), limit: nil)
                            return (i, nil)
                        } catch {
                            return (i, error)
                        }
                    }
                }
                var outcomes: [(Int, (any Error)?)] = []
                for await o in group { outcomes.append(o) }
                return outcomes
            }
            let winners = outcomes.filter { $0.1 == nil }.map(\.0)
            #expect(winners.count == 1)
            for (_, error) in outcomes {
                guard let error else { continue }
                let refused = error as? BlobStoreError
                #expect(refused == .uploadBusy || refused == .offsetMismatch(expected: 300_000, actual: 0), "\(error)")
            }
            let winner = try #require(winners.first)
            #expect(try await s.uploadedSize(id: id) == 300_000)
            let d = Digest.compute(bodies[winner])
            #expect(try await s.commitUpload(id: id, expected: d, expectedSize: 300_000) == 300_000)
            #expect(try await readAll(s, d, 0..<300_000) == bodies[winner])
        },
        Case("race: uploads of different blobs in parallel are independent") { s in
            let blobs = (0..<8).map { bytes(50_000 + $0 * 1000, seed: UInt64(100 + $0)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for data in blobs {
                    group.addTask {
                        let id = newID()
                        try await s.createUpload(id: id, owner: "r")
                        let half = data.count / 2
                        let size = try await s.append(id: id, offset: 0, body: body(Array(data[..<half]), chunk: 3000), limit: nil)
                        _ = try await s.append(id: id, offset: size, body: body(Array(data[half...]), chunk: 5000), limit: nil)
                        _ = try await s.commitUpload(id: id, expected: Digest.compute(data), expectedSize: Int64(data.count))
                    }
                }
                try await group.waitForAll()
            }
            #expect(Set(try await s.allDigests()) == Set(blobs.map { Digest.compute($0) }))
            for data in blobs {
                let read = try await readAll(s, Digest.compute(data), 0..<Int64(data.count))
                #expect(read == data)
            }
        },
    ]
}
