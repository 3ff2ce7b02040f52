import AsyncHTTPClient
import BlobStorage
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

extension S3Client {
    /// Starts a GET of `range` (not empty) of an object whose body goes to `sink` as it arrives:
    /// AsyncHTTPClient hands each chunk to a response delegate that writes it to the sink and
    /// reads on only when the sink's future says it can take more. When the client's event-loop
    /// group holds the sink's loop (the server and the S3 client share the process's group), the
    /// connection to the store runs on that loop too, so a chunk goes from one socket to the
    /// other with no thread or task switch (the `AsyncSequence` body of `getObject(_:range:into:)`
    /// costs a task wake-up per chunk and another hop into the server's writer).
    ///
    /// Returns once the store's answer has begun: an error answer (`notFound` for a missing
    /// object, 416 for a range past its end) or a transport failure is thrown here, retried like
    /// `send` while no byte has gone to the sink. The transfer's `completion` fails when the
    /// body stops short (`malformedResponse`), brings more than the range, the connection to the
    /// store fails, or the sink fails a write; `cancel` stops it.
    public func startGetObject(_ key: String, range: Range<Int64>, into sink: any BlobByteSink) async throws -> BlobTransfer {
        precondition(!range.isEmpty, "startGetObject needs a range that is not empty")
        let headers = [("Range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)")]
        let loop = sink.eventLoop
        let preference: HTTPClient.EventLoopPreference = http.eventLoopGroup.makeIterator().contains { $0 === loop }
            ? .delegateAndChannel(on: loop) : .indifferent
        var attempt = 0
        while true {
            let signed = request(.GET, key: key, query: [], headers: headers, payloadHash: SigV4Signer.emptyPayloadHash)
            let delegate = S3GetDelegate(expected: Int64(range.count), sink: sink, head: loop.makePromise(of: Void.self))
            let task = http.execute(request: try HTTPClient.Request(url: signed.url, method: .GET, headers: signed.headers),
                                    delegate: delegate, eventLoop: preference, deadline: .now() + .hours(6), logger: nil)
            task.futureResult.whenComplete { delegate.finished($0) }
            do {
                try await withTaskCancellationHandler {
                    try await delegate.head.futureResult.get()
                } onCancel: {
                    task.cancel()
                }
                return BlobTransfer(completion: task.futureResult, cancel: { task.cancel() })
            } catch {
                task.cancel()
                let retryable: Bool
                if case .service(let s, let code, _)? = error as? S3Error {
                    retryable = Self.isRetryable(s) || code == "SlowDown"
                } else {
                    retryable = Self.isTransient(error)
                }
                guard retryable, attempt + 1 < attempts, !Task.isCancelled else { throw error }
                logger.debug("S3 GetObject failed before its body (\(error)); retrying", metadata: ["attempt": "\(attempt + 1)"])
                try await pause(attempt)
                attempt += 1
            }
        }
    }
}

/// The response delegate of `startGetObject`. AsyncHTTPClient calls it on the task's event loop
/// only, one call at a time, so its counters need no lock; `head` is completed once, guarded by
/// `headDone` (the task's end may come from another thread when it is cancelled).
final class S3GetDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = Void

    let expected: Int64
    let sink: any BlobByteSink
    /// Succeeds when a 206 of the expected length began; fails with the request's error.
    let head: EventLoopPromise<Void>
    private let headDone = NIOLockedValueBox(false)
    private var status = 0
    /// The body of an error answer (S3's `<Error>` document), up to 1 MiB.
    private var errorBody: ByteBuffer?
    private var received: Int64 = 0

    init(expected: Int64, sink: any BlobByteSink, head: EventLoopPromise<Void>) {
        self.expected = expected
        self.sink = sink
        self.head = head
    }

    private func completeHead(_ result: Result<Void, any Error>) {
        let first = headDone.withLockedValue { done -> Bool in
            defer { done = true }
            return !done
        }
        if first { head.completeWith(result) }
    }

    func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        if status >= 300 {
            errorBody = ByteBuffer()
            return task.eventLoop.makeSucceededVoidFuture()
        }
        guard status == 206 else {
            return task.eventLoop.makeFailedFuture(S3Error.malformedResponse("GetObject: asked for a range, got HTTP \(status)"))
        }
        if let length = head.headers.first(name: "content-length").flatMap({ Int64($0) }), length != expected {
            return task.eventLoop.makeFailedFuture(
                S3Error.malformedResponse("GetObject: asked for \(expected) bytes, the answer has \(length)"))
        }
        completeHead(.success(()))
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        if errorBody != nil {
            if errorBody!.readableBytes + buffer.readableBytes <= 1 << 20 {
                var part = buffer
                errorBody!.writeBuffer(&part)
            }
            return task.eventLoop.makeSucceededVoidFuture()
        }
        received += Int64(buffer.readableBytes)
        guard received <= expected else {
            return task.eventLoop.makeFailedFuture(S3Error.malformedResponse("GetObject: more bytes than the range asked for"))
        }
        return sink.write(buffer)
    }

    func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        // The task's future fails with it; `finished` passes it on.
    }

    func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        if var body = errorBody {
            throw S3Client.error(status: status, body: body.readBytes(length: body.readableBytes) ?? [], operation: "GetObject")
        }
        guard received == expected else {
            throw S3Error.malformedResponse("GetObject: \(received) of \(expected) bytes arrived")
        }
    }

    /// The task ended: a head that never came fails with the task's error.
    func finished(_ result: Result<Void, any Error>) {
        switch result {
        case .success: completeHead(.failure(S3Error.malformedResponse("GetObject: the answer ended before its head")))
        case .failure(let error): completeHead(.failure(error))
        }
    }
}
