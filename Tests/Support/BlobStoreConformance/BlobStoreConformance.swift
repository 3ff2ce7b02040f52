import BlobStorage
import Foundation
import NIOCore
import OCIModel
import Testing

/// One suite of the `BlobStore` contract, run against any backend.
///
/// A backend's test target runs every case with a factory that makes a fresh, empty store:
///
///     @Test(arguments: BlobStoreConformance.cases)
///     func conformance(_ c: BlobStoreConformance.Case) async throws {
///         try await c.run { try makeEmptyStore() }
///     }
///
/// Upload ids are the registry's (lowercase UUIDs; `private-` and hex for its private sessions).
/// Every case gets a store of its own.
///
/// Writing a case: `#expect(try …)` compiles only in a case whose closure also has a `try` outside
/// any macro ("errors thrown from here are not handled" otherwise); hoist the call into a `let`.
public enum BlobStoreConformance {
    public typealias Factory = @Sendable () async throws -> any BlobStore

    public struct Case: Sendable, CustomTestStringConvertible, CustomStringConvertible {
        public let name: String
        let body: @Sendable (any BlobStore) async throws -> Void

        init(_ name: String, _ body: @escaping @Sendable (any BlobStore) async throws -> Void) {
            self.name = name
            self.body = body
        }

        public var description: String { name }
        public var testDescription: String { name }

        /// Runs the case against a fresh store made by `make`.
        public func run(_ make: Factory) async throws {
            try await body(try await make())
        }
    }

    public static var cases: [Case] { uploadCases + commitCases + readCases + hostileCases + concurrencyCases }
}

// MARK: fixtures

/// An upload id as the registry makes them.
func newID() -> String { UUID().uuidString.lowercased() }

/// Reproducible bytes (so a failure can be replayed), different for each seed.
func bytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state >> 24)
    }
}

/// A request body delivered in chunks of `size` bytes.
public func body(_ data: [UInt8], chunk size: Int = 64 << 10) -> AsyncStream<ByteBuffer> {
    AsyncStream { c in
        for start in stride(from: 0, to: data.count, by: max(size, 1)) {
            c.yield(ByteBuffer(bytes: data[start..<min(start + size, data.count)]))
        }
        c.finish()
    }
}

public struct ClientWentAway: Error {}

/// A body that delivers some bytes and then fails, like a client that disconnects.
public struct BrokenBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public struct AsyncIterator: AsyncIteratorProtocol {
        var sent = false
        let bytes: [UInt8]
        public mutating func next() async throws -> ByteBuffer? {
            if sent { throw ClientWentAway() }
            sent = true
            return ByteBuffer(bytes: bytes)
        }
    }
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(bytes: bytes) }
}

func readAll(_ s: any BlobStore, _ d: Digest, _ range: Range<Int64>) async throws -> [UInt8] {
    var out: [UInt8] = []
    try await s.read(d, range: range) { out.append(contentsOf: $0.readableBytesView) }
    return out
}

/// Uploads `data` in one append and commits it; returns its digest.
@discardableResult
func put(_ s: any BlobStore, _ data: [UInt8], algorithm: Digest.Algorithm = .sha256) async throws -> Digest {
    let id = newID()
    let d = Digest.compute(data, algorithm: algorithm)
    try await s.createUpload(id: id, owner: "r")
    _ = try await s.append(id: id, offset: 0, body: body(data), limit: nil)
    #expect(try await s.commitUpload(id: id, expected: d, expectedSize: Int64(data.count)) == Int64(data.count))
    return d
}

let farFuture = Date().timeIntervalSince1970 + 3600 * 24 * 365
