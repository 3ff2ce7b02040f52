import BlobStorage
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import OCIModel
import Testing

extension BlobStoreConformance {
    static let uploadCases: [Case] = [
        Case("createUpload: a new upload is empty and owned; unknown uploads have no size or owner") { s in
            #expect(try await s.openUploadCount() == 0)
            let id = newID(), unknown = newID()
            try await s.createUpload(id: id, owner: "team/app")
            #expect(try await s.uploadOwner(id: id) == "team/app")
            #expect(try await s.uploadedSize(id: id) == 0)
            #expect(try await s.uploadOwner(id: unknown) == nil)
            #expect(try await s.uploadedSize(id: unknown) == nil)
            #expect(try await s.openUploadCount() == 1)
            try await s.createUpload(id: unknown, owner: "")
            #expect(try await s.uploadOwner(id: unknown) == "")
            #expect(try await s.openUploadCount() == 2)
        },
        Case("createUpload: an id in use is refused and the upload keeps its bytes") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "a")
            _ = try await s.append(id: id, offset: 0, body: body([1, 2, 3]), limit: nil)
            await #expect(throws: (any Error).self) { try await s.createUpload(id: id, owner: "b") }
            #expect(try await s.uploadedSize(id: id) == 3)
            #expect(try await s.uploadOwner(id: id) == "a")
        },
        Case("append: chunks at the current offset grow the upload, which is no blob until committed") { s in
            let data = bytes(300_000)
            let d = Digest.compute(data)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            var size = try await s.append(id: id, offset: 0, body: body(Array(data[..<100_000]), chunk: 7_000), limit: nil)
            #expect(size == 100_000)
            #expect(try await s.uploadedSize(id: id) == 100_000)
            size = try await s.append(id: id, offset: size, body: body(Array(data[100_000...]), chunk: 65_536), limit: nil)
            #expect(size == 300_000)
            #expect(try await s.size(of: d) == nil)
            #expect(try await s.allDigests() == [])
            #expect(try await s.commitUpload(id: id, expected: d, expectedSize: nil) == 300_000)
            #expect(try await readAll(s, d, 0..<300_000) == data)
        },
        Case("append: an empty body changes nothing and returns the current size") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            #expect(try await s.append(id: id, offset: 0, body: body([]), limit: nil) == 0)
            _ = try await s.append(id: id, offset: 0, body: body([9, 8]), limit: nil)
            #expect(try await s.append(id: id, offset: 2, body: body([]), limit: nil) == 2)
            #expect(try await s.uploadedSize(id: id) == 2)
        },
        Case("append: a wrong offset is refused with the expected one, and the bytes stay as they were") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body([1, 2, 3]), limit: nil)
            await #expect(throws: BlobStoreError.offsetMismatch(expected: 3, actual: 0)) {
                try await s.append(id: id, offset: 0, body: body([4]), limit: nil)
            }
            await #expect(throws: BlobStoreError.offsetMismatch(expected: 3, actual: 5)) {
                try await s.append(id: id, offset: 5, body: body([4]), limit: nil)
            }
            #expect(try await s.uploadedSize(id: id) == 3)
            #expect(try await s.append(id: id, offset: 3, body: body([4]), limit: nil) == 4)
            let d = Digest.compute([1, 2, 3, 4] as [UInt8])
            _ = try await s.commitUpload(id: id, expected: d, expectedSize: 4)
            #expect(try await readAll(s, d, 0..<4) == [1, 2, 3, 4])
        },
        Case("append: a body past the limit is refused with tooLarge and never exceeds it") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            await #expect(throws: BlobStoreError.tooLarge) {
                try await s.append(id: id, offset: 0, body: body(bytes(1000), chunk: 100), limit: 550)
            }
            let kept = try #require(try await s.uploadedSize(id: id))
            #expect(kept <= 550)
            #expect(try await s.allDigests() == [])
            // within the limit is fine
            let id2 = newID()
            try await s.createUpload(id: id2, owner: "r")
            #expect(try await s.append(id: id2, offset: 0, body: body(bytes(550), chunk: 100), limit: 550) == 550)
        },
        Case("append: a body that breaks off keeps what arrived, so the upload resumes") { s in
            let data = bytes(5000, seed: 3)
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            await #expect(throws: ClientWentAway.self) {
                try await s.append(id: id, offset: 0, body: BrokenBody(bytes: Array(data[..<1000])), limit: nil)
            }
            #expect(try await s.uploadedSize(id: id) == 1000)
            #expect(try await s.allDigests() == [])
            _ = try await s.append(id: id, offset: 1000, body: body(Array(data[1000...]), chunk: 999), limit: nil)
            #expect(try await s.commitUpload(id: id, expected: Digest.compute(data), expectedSize: 5000) == 5000)
            #expect(try await readAll(s, Digest.compute(data), 0..<5000) == data)
        },
        Case("cancelUpload: refused while an append is writing the upload; allowed once it is done") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            let (stream, feed) = AsyncStream<ByteBuffer>.makeStream()
            feed.yield(ByteBuffer(bytes: bytes(1000)))
            let reading = NIOLockedValueBox(false)
            let writing = Task { try await s.append(id: id, offset: 0, body: NoticedBody(inner: stream, noticed: reading), limit: nil) }
            // The append holds the upload until its body ends: once it reads its body.
            for _ in 0..<500 where !reading.withLockedValue({ $0 }) {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(reading.withLockedValue { $0 })
            await #expect(throws: BlobStoreError.uploadBusy) { try await s.cancelUpload(id: id) }
            feed.yield(ByteBuffer(bytes: bytes(24)))
            feed.finish()
            let size = try await writing.value
            #expect(size == 1024)
            let after = try await s.uploadedSize(id: id)
            #expect(after == 1024)
            try await s.cancelUpload(id: id)
            let gone = try await s.uploadedSize(id: id)
            #expect(gone == nil)
        },
        Case("cancelUpload: drops the upload and its bytes; the id is unknown afterwards") { s in
            let id = newID()
            try await s.createUpload(id: id, owner: "r")
            _ = try await s.append(id: id, offset: 0, body: body(bytes(100)), limit: nil)
            try await s.cancelUpload(id: id)
            #expect(try await s.uploadedSize(id: id) == nil)
            #expect(try await s.uploadOwner(id: id) == nil)
            #expect(try await s.openUploadCount() == 0)
            await #expect(throws: BlobStoreError.uploadUnknown) {
                try await s.append(id: id, offset: 0, body: body([1]), limit: nil)
            }
            await #expect(throws: BlobStoreError.uploadUnknown) {
                try await s.commitUpload(id: id, expected: Digest.compute(bytes(100)), expectedSize: nil)
            }
            #expect(try await s.allDigests() == [])
            // cancelling what is already gone is harmless
            try await s.cancelUpload(id: id)
        },
        Case("staleUploads/openUploadCount: uploads not touched since a time, and how many are open") { s in
            let a = newID(), b = newID()
            try await s.createUpload(id: a, owner: "r")
            try await s.createUpload(id: b, owner: "r")
            #expect(try await s.openUploadCount() == 2)
            #expect(try await s.staleUploads(olderThan: 0) == [])
            #expect(Set(try await s.staleUploads(olderThan: farFuture)) == [a, b])
            try await s.cancelUpload(id: a)
            #expect(try await s.staleUploads(olderThan: farFuture) == [b])
            _ = try await put(s, bytes(10))
            #expect(try await s.openUploadCount() == 1)
        },
        Case("uploads(idPrefix:): only the uploads of an id namespace, with owner, size and last change") { s in
            let ordinary = newID()
            let a = "private-" + String(repeating: "a", count: 56), b = "private-" + String(repeating: "0", count: 56)
            let before = Date().timeIntervalSince1970 - 5
            try await s.createUpload(id: ordinary, owner: "r")
            _ = try await s.append(id: ordinary, offset: 0, body: body(bytes(5)), limit: nil)
            try await s.createUpload(id: a, owner: "r#private#sha256:aa")
            _ = try await s.append(id: a, offset: 0, body: body(bytes(300, seed: 2)), limit: nil)
            try await s.createUpload(id: b, owner: "r#private#sha256:bb")
            let listed = try await s.uploads(idPrefix: "private-")
            #expect(listed.map(\.id) == [b, a])
            #expect(listed.map(\.owner) == ["r#private#sha256:bb", "r#private#sha256:aa"])
            #expect(listed.map(\.size) == [0, 300])
            #expect(listed.allSatisfy { $0.touchedAt >= before && $0.touchedAt <= Date().timeIntervalSince1970 + 5 })
            // The ids of the namespace are ids like any other to the rest of the store.
            #expect(try await s.uploadOwner(id: a) == "r#private#sha256:aa")
            #expect(try await s.uploadedSize(id: a) == 300)
            try await s.cancelUpload(id: a)
            let after = try await s.uploads(idPrefix: "private-")
            #expect(after.map(\.id) == [b])
            let none = try await s.uploads(idPrefix: "nothing-")
            #expect(none.isEmpty)
            #expect(try await s.uploadedSize(id: ordinary) == 5)
        },
        Case("checkHealth: a fresh store is healthy") { s in
            try await s.checkHealth()
        },
    ]
}

/// A body that notes when its reader first asks it for bytes (the append has taken its upload).
struct NoticedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let inner: AsyncStream<ByteBuffer>
    let noticed: NIOLockedValueBox<Bool>
    struct AsyncIterator: AsyncIteratorProtocol {
        var inner: AsyncStream<ByteBuffer>.AsyncIterator
        let noticed: NIOLockedValueBox<Bool>
        mutating func next() async -> ByteBuffer? {
            noticed.withLockedValue { $0 = true }
            return await inner.next()
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(inner: inner.makeAsyncIterator(), noticed: noticed) }
}
