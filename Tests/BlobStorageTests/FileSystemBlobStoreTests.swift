import FileSystemStorage
import BlobStoreConformance
import Foundation
import NIOCore
import Testing
@testable import BlobStorage
import OCIModel

func tempDir() -> String {
    let path = NSTemporaryDirectory() + "berth-test-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func randomBytes(_ n: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
}

func readAll(_ store: FileSystemBlobStore, _ d: Digest, _ range: Range<Int64>) async throws -> [UInt8] {
    var out: [UInt8] = []
    try await store.read(d, range: range) { out.append(contentsOf: $0.readableBytesView) }
    return out
}

@Suite struct FileSystemBlobStoreTests {
    @Test func chunkedUploadIsHashedWhileWrittenAndCommittedAtomically() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        let data = randomBytes(3 << 20)
        let digest = Digest.compute(data)
        try await store.createUpload(id: "0123abcd-0000", owner: "repo")
        #expect(try await store.uploadOwner(id: "0123abcd-0000") == "repo")
        let half = data.count / 2
        var size = try await store.append(id: "0123abcd-0000", offset: 0, body: body(Array(data[..<half]), chunk: 65536), limit: nil)
        #expect(size == Int64(half))
        #expect(try await store.size(of: digest) == nil)   // not visible before commit
        size = try await store.append(id: "0123abcd-0000", offset: size, body: body(Array(data[half...]), chunk: 100_000), limit: nil)
        #expect(try await store.commitUpload(id: "0123abcd-0000", expected: digest, expectedSize: Int64(data.count)) == Int64(data.count))
        #expect(try await store.size(of: digest) == Int64(data.count))
        #expect(try await readAll(store, digest, 0..<Int64(data.count)) == data)
        #expect(try await readAll(store, digest, 10..<20) == Array(data[10..<20]))
        #expect(try await store.uploadedSize(id: "0123abcd-0000") == nil)
        #expect(try await store.allDigests() == [digest])
    }

    @Test func digestMismatchLeavesNothingVisible() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        let data = randomBytes(1000)
        let wrong = Digest.compute(Array("other".utf8))
        try await store.createUpload(id: "aaaa", owner: "r")
        _ = try await store.append(id: "aaaa", offset: 0, body: body(data, chunk: 100), limit: nil)
        await #expect(throws: BlobStoreError.digestMismatch(computed: Digest.compute(data))) {
            try await store.commitUpload(id: "aaaa", expected: wrong, expectedSize: nil)
        }
        #expect(try await store.size(of: wrong) == nil)
        #expect(try await store.size(of: Digest.compute(data)) == nil)
        await #expect(throws: BlobStoreError.sizeMismatch(actual: 1000)) {
            try await store.commitUpload(id: "aaaa", expected: Digest.compute(data), expectedSize: 999)
        }
    }

    @Test func resumesAfterRestartByRehashing() async throws {
        let root = tempDir()
        let data = randomBytes(200_000)
        do {
            let store = try FileSystemBlobStore(root: root)
            try await store.createUpload(id: "bbbb", owner: "r")
            _ = try await store.append(id: "bbbb", offset: 0, body: body(Array(data[..<50_000]), chunk: 4096), limit: nil)
        }
        // A new process: no in-memory hash state.
        let store = try FileSystemBlobStore(root: root)
        #expect(try await store.uploadedSize(id: "bbbb") == 50_000)
        _ = try await store.append(id: "bbbb", offset: 50_000, body: body(Array(data[50_000...]), chunk: 4096), limit: nil)
        _ = try await store.commitUpload(id: "bbbb", expected: Digest.compute(data), expectedSize: nil)
        #expect(try await readAll(store, Digest.compute(data), 0..<200_000) == data)
    }

    @Test func sha512Uploads() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        let data = randomBytes(70_000)
        let digest = Digest.compute(data, algorithm: .sha512)
        try await store.createUpload(id: "cccc", owner: "r")
        _ = try await store.append(id: "cccc", offset: 0, body: body(data, chunk: 8192), limit: nil)
        _ = try await store.commitUpload(id: "cccc", expected: digest, expectedSize: nil)
        #expect(try await store.size(of: digest) == 70_000)
    }

    @Test func wrongOffsetAndUnknownIDsAreRefused() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        try await store.createUpload(id: "dddd", owner: "r")
        _ = try await store.append(id: "dddd", offset: 0, body: body([1, 2, 3], chunk: 3), limit: nil)
        await #expect(throws: BlobStoreError.offsetMismatch(expected: 3, actual: 0)) {
            try await store.append(id: "dddd", offset: 0, body: body([4], chunk: 1), limit: nil)
        }
        for hostile in ["../../etc", "ZZZZ", "", String(repeating: "a", count: 100), "a/b"] {
            await #expect(throws: BlobStoreError.uploadUnknown) {
                try await store.append(id: hostile, offset: 0, body: body([1], chunk: 1), limit: nil)
            }
            #expect(try await store.uploadedSize(id: hostile) == nil)
        }
    }

    @Test func interruptedBodyKeepsReceivedBytesForResume() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        let data = randomBytes(5000)
        try await store.createUpload(id: "eeee", owner: "r")
        await #expect(throws: ClientWentAway.self) {
            try await store.append(id: "eeee", offset: 0, body: BrokenBody(bytes: Array(data[..<1000])), limit: nil)
        }
        #expect(try await store.uploadedSize(id: "eeee") == 1000)
        _ = try await store.append(id: "eeee", offset: 1000, body: body(Array(data[1000...]), chunk: 999), limit: nil)
        _ = try await store.commitUpload(id: "eeee", expected: Digest.compute(data), expectedSize: 5000)
        #expect(try await store.size(of: Digest.compute(data)) == 5000)
    }

    @Test func duplicateCommitIsDeduplicated() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        let data = randomBytes(100_000)
        for id in ["f1", "f2"] {
            try await store.createUpload(id: id, owner: "r")
            _ = try await store.append(id: id, offset: 0, body: body(data, chunk: 10_000), limit: nil)
            _ = try await store.commitUpload(id: id, expected: Digest.compute(data), expectedSize: nil)
        }
        #expect(try await store.allDigests().count == 1)
        #expect(try await store.openUploadCount() == 0)
    }

    @Test func staleUploadsAreFoundAndCancelled() async throws {
        let store = try FileSystemBlobStore(root: tempDir())
        try await store.createUpload(id: "abab", owner: "r")
        #expect(try await store.staleUploads(olderThan: Date().timeIntervalSince1970 - 3600).isEmpty)
        #expect(try await store.staleUploads(olderThan: Date().timeIntervalSince1970 + 10) == ["abab"])
        try await store.cancelUpload(id: "abab")
        #expect(try await store.uploadedSize(id: "abab") == nil)
        #expect(try await store.openUploadCount() == 0)
    }
}
