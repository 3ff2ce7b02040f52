import BlobStorage
import NIOCore
import NIOHTTP1

/// Carries a blob store's transfer (`BlobStore.startTransfer`: the S3 store's GET) onto one
/// client connection, on that connection's event loop: the store calls `write` with each chunk
/// as it arrives and the relay writes it to the channel at once, below Hummingbird's response
/// writer (as `SendfileHandler` does with files), so no Swift task wakes per chunk.
///
/// Back-pressure: `write`'s future succeeds while the channel is writable and otherwise when it
/// becomes writable again, and the store reads no further from its source until then. Before
/// the response head is out (until `SendfileHandler` meets the relay's token and calls
/// `attach`) chunks wait here and so does the store.
///
/// Failure: when the connection goes away or a write to it fails, the relay fails its pending
/// and later writes and cancels the store's transfer; when the transfer fails (the source broke
/// off mid-stream), `fail` closes the connection, so a client never takes a short body for a
/// whole one.
///
/// All state is touched on `eventLoop` only (calls from elsewhere hop there).
final class BlobStreamRelay: BlobByteSink, @unchecked Sendable {
    let eventLoop: any EventLoop

    private var context: ChannelHandlerContext?
    private var pending: [ByteBuffer] = []
    /// What the store waits on: the head to go out, or the channel to become writable.
    private var ready: EventLoopPromise<Void>?
    private var failure: (any Error)?
    private var finished = false
    private var cancelTransfer: (@Sendable () -> Void)?

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func write(_ chunk: ByteBuffer) -> EventLoopFuture<Void> {
        guard eventLoop.inEventLoop else {
            return eventLoop.flatSubmit { self.write(chunk) }
        }
        if let failure { return eventLoop.makeFailedFuture(failure) }
        guard let context else {
            pending.append(chunk)
            return waitUntilReady()
        }
        send(chunk, on: context)
        context.flush()
        return context.channel.isWritable ? eventLoop.makeSucceededVoidFuture() : waitUntilReady()
    }

    /// The response head is out (`SendfileHandler` met the token): chunks go to `context`.
    func attach(_ context: ChannelHandlerContext) {
        eventLoop.assertInEventLoop()
        guard failure == nil, !finished else { return }
        self.context = context
        let chunks = pending
        pending = []
        for chunk in chunks { send(chunk, on: context) }
        context.flush()
        if context.channel.isWritable { signalReady() }
    }

    func writabilityChanged() {
        eventLoop.assertInEventLoop()
        if let context, context.channel.isWritable { signalReady() }
    }

    /// The transfer's cancellation: called when the relay fails (at once if it already has).
    func onFailure(cancel: @escaping @Sendable () -> Void) {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.onFailure(cancel: cancel) }
            return
        }
        if failure != nil {
            cancel()
        } else if !finished {
            cancelTransfer = cancel
        }
    }

    /// Stops the transfer and cuts the connection, unless the transfer already finished.
    func fail(_ error: any Error) {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.fail(error) }
            return
        }
        guard failure == nil, !finished else { return }
        failure = error
        pending = []
        let waiting = ready
        ready = nil
        let cancel = cancelTransfer
        cancelTransfer = nil
        let connection = context
        context = nil
        waiting?.fail(error)
        cancel?()
        connection?.close(promise: nil)
    }

    /// Every byte went out: the relay lets go of the connection.
    func finish() {
        guard eventLoop.inEventLoop else {
            eventLoop.execute { self.finish() }
            return
        }
        guard failure == nil else { return }
        finished = true
        context = nil
        cancelTransfer = nil
    }

    private func send(_ chunk: ByteBuffer, on context: ChannelHandlerContext) {
        let written = eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { error in self.fail(error) }
        context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(chunk))), promise: written)
    }

    private func waitUntilReady() -> EventLoopFuture<Void> {
        if let ready { return ready.futureResult }
        let promise = eventLoop.makePromise(of: Void.self)
        ready = promise
        return promise.futureResult
    }

    private func signalReady() {
        guard let promise = ready else { return }
        ready = nil
        promise.succeed()
    }
}
