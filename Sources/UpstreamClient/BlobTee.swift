import NIOConcurrencyHelpers
import NIOCore

/// The hand-off of one blob fill's chunks to the client that asked for it: at most `capacity`
/// chunks wait between the upstream and the client, so the fill goes at the pace of the slower
/// of the client and the store and nothing is buffered beyond that. The fill (the writer) first
/// says what it has (`begin`: a length to stream, or `whole` when it cannot stream), then sends
/// chunks, then ends (`finish`); the client (the reader) may leave at any time (`close`), and the
/// fill then goes on alone to store the blob. Used by the pull-through cache's fills and by a
/// data endpoint's fetch of a blob it lacks (replication).
public final class BlobTee: Sendable {
    public enum Head: Sendable, Equatable {
        /// The blob's declared length: its bytes follow.
        case streaming(Int64)
        /// No streaming (no declared length, or nothing to fetch): the client waits for the stored copy.
        case whole
    }

    private struct State {
        var head: Result<Head, any Error>?
        var headWaiter: CheckedContinuation<Head, any Error>?
        var chunks: [ByteBuffer] = []
        var end: Result<Void, any Error>?
        var readerGone = false
        var readerWaiter: CheckedContinuation<ByteBuffer?, any Error>?
        var writerWaiter: CheckedContinuation<Void, Never>?
    }

    public static let capacity = 4
    /// How long, in all, the fill may wait for its client over the whole blob (review, high: a
    /// limit per wait let a client reading a chunk every 59 s hold the fill, and every pull and
    /// manifest fill waiting on it, for days). A client slower than that is cut and comes back for
    /// the stored copy; the fill never waits longer than this for anyone.
    public static let stallBudget: Duration = .seconds(10)
    public let stallBudget: Duration
    private let state = NIOLockedValueBox(State())
    /// What the fill has waited for the client so far.
    private let waited = NIOLockedValueBox<Duration>(.zero)

    public init(stallBudget: Duration = BlobTee.stallBudget) {
        self.stallBudget = stallBudget
    }

    // MARK: the fill's side

    public func begin(_ head: Head) {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Head, any Error>? in
            guard s.head == nil else { return nil }
            s.head = .success(head)
            defer { s.headWaiter = nil }
            return s.headWaiter
        }
        waiter?.resume(returning: head)
    }

    /// Hands a chunk to the client; waits while `capacity` chunks wait for it; returns at once
    /// when the client is gone.
    public func send(_ chunk: ByteBuffer) async {
        enum Step { case done, handed(CheckedContinuation<ByteBuffer?, any Error>), wait }
        while true {
            let step = state.withLockedValue { s -> Step in
                if s.readerGone || s.end != nil { return .done }
                if let reader = s.readerWaiter {
                    s.readerWaiter = nil
                    return .handed(reader)
                }
                if s.chunks.count < Self.capacity {
                    s.chunks.append(chunk)
                    return .done
                }
                return .wait
            }
            switch step {
            case .done:
                return
            case .handed(let reader):
                reader.resume(returning: chunk)
                return
            case .wait:
                // A client that reads slower than the upstream sends (or stops reading but keeps
                // its connection) is left behind once the fill has waited `stallBudget` for it in
                // all, its response cut: it must not hold the fill, and every pull waiting for it.
                let left = stallBudget - waited.withLockedValue { $0 }
                guard left > .zero else {
                    close()
                    return
                }
                let started = ContinuousClock.now
                let stalled = Task { [weak self] in
                    try await Task.sleep(for: left)
                    self?.close()
                }
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    let now = state.withLockedValue { s -> Bool in
                        if s.readerGone || s.end != nil || s.chunks.count < Self.capacity { return true }
                        s.writerWaiter = c
                        return false
                    }
                    if now { c.resume() }
                }
                stalled.cancel()
                let spent = ContinuousClock.now - started
                waited.withLockedValue { $0 += spent }
            }
        }
    }

    /// The fill's end: success once the blob is verified (its last chunk sent), or its failure,
    /// which the client gets instead of the chunks still waiting.
    public func finish(_ result: Result<Void, any Error>) {
        let (headWaiter, head, reader, writer) = state.withLockedValue { s in
            if s.end == nil {
                s.end = result
                if case .failure = result { s.chunks = [] }
            }
            if s.head == nil { s.head = result.map { Head.whole } }
            let headWaiter = s.headWaiter
            s.headWaiter = nil
            var reader: CheckedContinuation<ByteBuffer?, any Error>?
            if s.chunks.isEmpty {
                reader = s.readerWaiter
                s.readerWaiter = nil
            }
            let writer = s.writerWaiter
            s.writerWaiter = nil
            return (headWaiter, s.head!, reader, writer)
        }
        headWaiter?.resume(with: head)
        reader?.resume(with: result.map { Optional<ByteBuffer>.none })
        writer?.resume()
    }

    // MARK: the client's side

    /// What the fill has: a length to stream, `whole`, or its failure before any byte.
    public func head() async throws -> Head {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Head, any Error>) in
            let now = state.withLockedValue { s -> Result<Head, any Error>? in
                if let head = s.head { return head }
                s.headWaiter = c
                return nil
            }
            if let now { c.resume(with: now) }
        }
    }

    /// The length to stream, once the fill said it; nil (the tee closed, so the fill goes on
    /// without waiting for this reader) when it cannot stream and the reader is to wait for the
    /// stored copy; the fill's failure before any byte is thrown (the tee closed too).
    public func streamingLength() async throws -> Int64? {
        let head: Head
        do {
            head = try await self.head()
        } catch {
            close()
            throw error
        }
        guard case .streaming(let length) = head else {
            close()
            return nil
        }
        return length
    }

    /// The next chunk; nil after the last, once the fill verified the blob; throws its failure.
    public func next() async throws -> ByteBuffer? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<ByteBuffer?, any Error>) in
                let (now, writer) = state.withLockedValue { s -> (Result<ByteBuffer?, any Error>?, CheckedContinuation<Void, Never>?) in
                    if !s.chunks.isEmpty {
                        let writer = s.writerWaiter
                        s.writerWaiter = nil
                        return (.success(s.chunks.removeFirst()), writer)
                    }
                    if let end = s.end { return (end.map { Optional<ByteBuffer>.none }, nil) }
                    if s.readerGone { return (.failure(CancellationError()), nil) }
                    s.readerWaiter = c
                    return (nil, nil)
                }
                writer?.resume()
                if let now { c.resume(with: now) }
            }
        } onCancel: {
            close()
        }
    }

    /// The client is gone: the fill goes on without waiting for it.
    public func close() {
        let (reader, writer) = state.withLockedValue { s in
            s.readerGone = true
            s.chunks = []
            let reader = s.readerWaiter
            let writer = s.writerWaiter
            s.readerWaiter = nil
            s.writerWaiter = nil
            return (reader, writer)
        }
        reader?.resume(throwing: CancellationError())
        writer?.resume()
    }
}

extension BlobTee {
    /// Begins a fill of `stream` through this tee, and returns what the store is to read: when the
    /// source declared a length, `admit` is asked with it first (a write lock or a full quota is
    /// refused before the response begins), the head is `streaming(length)` and every chunk is
    /// handed on as it passes; with no length the head is `whole` and nothing is handed on.
    public func feeding(_ stream: VerifiedBlobStream, admit: (Int64) async throws -> Void) async throws -> TeeSequence {
        guard let length = stream.size, length > 0 else {
            begin(.whole)
            return TeeSequence(source: stream, tee: nil, length: 0)
        }
        try await admit(length)
        begin(.streaming(length))
        return TeeSequence(source: stream, tee: self, length: length)
    }
}

/// A verified upstream blob stream that also hands each chunk to a `BlobTee`, except the bytes
/// that complete the declared length: those reach the client only once the stream verified the
/// whole blob's digest, so a client never holds a complete response of wrong bytes. Without a tee
/// it is the stream itself.
public struct TeeSequence: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let source: VerifiedBlobStream
    let tee: BlobTee?
    let length: Int64

    public init(source: VerifiedBlobStream, tee: BlobTee?, length: Int64) {
        self.source = source
        self.tee = tee
        self.length = length
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var inner: VerifiedBlobStream.AsyncIterator
        let tee: BlobTee?
        let length: Int64
        var count: Int64 = 0
        var held: ByteBuffer?

        public mutating func next() async throws -> ByteBuffer? {
            guard let tee else { return try await inner.next() }
            if let chunk = try await inner.next() {
                count += Int64(chunk.readableBytes)
                if count >= length {
                    if held == nil { held = chunk } else { held!.writeImmutableBuffer(chunk) }
                } else if chunk.readableBytes > 0 {
                    await tee.send(chunk)
                }
                return chunk
            }
            // The stream ended: every byte read and the digest verified.
            if let last = held {
                held = nil
                await tee.send(last)
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(inner: source.makeAsyncIterator(), tee: tee, length: length)
    }
}
