import BlobStorage
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import OCIModel
import Testing

extension BlobStoreConformance {
    static let commitCases: [Case] = [
        Case("commitUpload: makes the blob, returns its size, and ends the upload") { s in
            let data = bytes(70_000)
            let d = Digest.compute(data)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 8192), limit: nil)
            #expect(try await s.commitUpload(id: id, expected: d, expectedSize: 70_000) == 70_000)
            #expect(try await s.size(of: d) == 70_000)
            #expect(try await s.allDigests() == [d])
            #expect(try await s.uploadedSize(id: id) == nil)
            #expect(try await s.uploadOwner(id: id) == nil)
            #expect(try await s.openUploadCount() == 0)
        },
        Case("commitUpload: a wrong digest is refused with the computed one, exposing nothing, and leaves the upload") { s in
            let data = bytes(1000)
            let wrong = Digest.compute(Array("something else".utf8))
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 100), limit: nil)
            await #expect(throws: BlobStoreError.digestMismatch(computed: Digest.compute(data))) {
                try await s.commitUpload(id: id, expected: wrong, expectedSize: nil)
            }
            #expect(try await s.size(of: wrong) == nil)
            #expect(try await s.size(of: Digest.compute(data)) == nil)
            #expect(try await s.allDigests() == [])
            await #expect(throws: BlobStoreError.blobUnknown) { try await readAll(s, wrong, 0..<1) }
            // left as it was: the caller may still finish it, or cancel it
            #expect(try await s.uploadedSize(id: id) == 1000)
            _ = try await s.append(id: id, offset: 1000, body: body([7]), limit: nil)
            let full = data + [7]
            #expect(try await s.commitUpload(id: id, expected: Digest.compute(full), expectedSize: 1001) == 1001)
            #expect(try await readAll(s, Digest.compute(full), 0..<1001) == full)
        },
        Case("commitUpload: a wrong size is refused with the actual one, exposing nothing") { s in
            let data = bytes(1000)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(data), limit: nil)
            await #expect(throws: BlobStoreError.sizeMismatch(actual: 1000)) {
                try await s.commitUpload(id: id, expected: Digest.compute(data), expectedSize: 999)
            }
            #expect(try await s.size(of: Digest.compute(data)) == nil)
            #expect(try await s.allDigests() == [])
            #expect(try await s.uploadedSize(id: id) == 1000)
        },
        Case("commitUpload: a digest of another algorithm (sha512) is verified with that algorithm") { s in
            let data = bytes(70_000, seed: 5)
            let d512 = Digest.compute(data, algorithm: .sha512)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 8192), limit: nil)
            await #expect(throws: BlobStoreError.digestMismatch(computed: d512)) {
                try await s.commitUpload(id: id, expected: Digest.compute(bytes(5), algorithm: .sha512), expectedSize: nil)
            }
            #expect(try await s.commitUpload(id: id, expected: d512, expectedSize: nil) == 70_000)
            #expect(try await s.size(of: d512) == 70_000)
            #expect(try await s.size(of: Digest.compute(data)) == nil)
            #expect(try await s.allDigests() == [d512])
            #expect(try await readAll(s, d512, 0..<70_000) == data)
        },
        Case("commitUpload: the empty blob") { s in
            let d = try await put(s, [])
            #expect(try await s.size(of: d) == 0)
            #expect(try await readAll(s, d, 0..<0) == [])
            #expect(try await s.allDigests() == [d])
        },
        Case("commitUpload: bytes already stored are deduplicated; the upload still ends") { s in
            let data = bytes(100_000, seed: 9)
            let d = try await put(s, data)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 10_000), limit: nil)
            #expect(try await s.commitUpload(id: id, expected: d, expectedSize: nil) == 100_000)
            #expect(try await s.allDigests() == [d])
            #expect(try await s.openUploadCount() == 0)
            #expect(try await readAll(s, d, 0..<100_000) == data)
        },
        Case("readSmallUpload: verified bytes of a small upload, nil over the limit, no blob either way") { s in
            let data = bytes(300)
            let d = Digest.compute(data)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(data, chunk: 64), limit: nil)
            #expect(try await s.readSmallUpload(id: id, expected: d, limit: 300) == data)
            #expect(try await s.readSmallUpload(id: id, expected: d, limit: 299) == nil)
            await #expect(throws: BlobStoreError.digestMismatch(computed: d)) {
                try await s.readSmallUpload(id: id, expected: Digest.compute(bytes(3)), limit: 1000)
            }
            #expect(try await s.size(of: d) == nil)
            #expect(try await s.allDigests() == [])
            // the upload is still there for the caller to cancel
            #expect(try await s.uploadedSize(id: id) == 300)
            try await s.cancelUpload(id: id)
            #expect(try await s.openUploadCount() == 0)
            // an unknown upload yields no bytes (the commit that follows reports it unknown)
            #expect(try await s.readSmallUpload(id: newID(), expected: d, limit: 1000) == nil)
        },
        Case("delete: removes the blob's bytes; deleting an unknown blob is harmless; the digest can come back") { s in
            let keep = try await put(s, bytes(10, seed: 1))
            let gone = try await put(s, bytes(10, seed: 2))
            try await s.delete(gone)
            #expect(try await s.size(of: gone) == nil)
            #expect(try await s.allDigests() == [keep])
            await #expect(throws: BlobStoreError.blobUnknown) { try await readAll(s, gone, 0..<10) }
            try await s.delete(gone)
            try await s.delete(Digest.compute(bytes(1, seed: 42)))
            #expect(try await s.size(of: keep) == 10)
            try await put(s, bytes(10, seed: 2))
            #expect(Set(try await s.allDigests()) == [keep, gone])
        },
        Case("allDigests: every stored blob, of either algorithm") { s in
            #expect(try await s.allDigests() == [])
            var expected: Set<Digest> = []
            for i in 0..<5 { expected.insert(try await put(s, bytes(100 + i, seed: UInt64(i)))) }
            expected.insert(try await put(s, bytes(64, seed: 77), algorithm: .sha512))
            let all = try await s.allDigests()
            #expect(all.count == expected.count)
            #expect(Set(all) == expected)
        },
    ]

    static let readCases: [Case] = [
        Case("read: any range returns exactly those bytes, in order, across chunk boundaries") { s in
            let data = bytes(700_000, seed: 11)
            let d = try await put(s, data)
            let n = Int64(data.count)
            for range in [0..<n, 0..<1, 10..<20, 262_143..<262_145, 262_144..<524_289, n - 1..<n, 5..<5, 100_000..<n] {
                let got = try await readAll(s, d, range)
                #expect(got.count == range.count, "range \(range)")
                #expect(got == Array(data[Int(range.lowerBound)..<Int(range.upperBound)]), "range \(range)")
            }
        },
        Case("read/size/openFile: an unknown blob is unknown") { s in
            let unknown = Digest.compute(bytes(3))
            let size = try await s.size(of: unknown)
            #expect(size == nil)
            await #expect(throws: BlobStoreError.blobUnknown) { try await readAll(s, unknown, 0..<1) }
            // stores without local files return nil; those with files say the blob is unknown
            do {
                let file = try await s.openFile(unknown)
                #expect(file?.size == nil)
                file?.close()
            } catch {
                #expect(error as? BlobStoreError == .blobUnknown)
            }
        },
        Case("openFile: when a store hands out a file, it is the blob's, of its size") { s in
            let data = bytes(5000, seed: 4)
            let d = try await put(s, data)
            guard let file = try await s.openFile(d) else { return } // a store without local files
            defer { file.close() }
            #expect(file.size == 5000)
            var buffer = [UInt8](repeating: 0, count: 5000)
            let n = try buffer.withUnsafeMutableBytes { ptr in
                try file.handle.withUnsafeFileDescriptor { fd in pread(fd, ptr.baseAddress, 5000, 0) }
            }
            #expect(n == 5000)
            #expect(buffer == data)
        },
    ]
}
