import BlobStorage
import Hummingbird
import HummingbirdCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// Blob downloads on plain-HTTP connections go out with `sendfile(2)`: the kernel moves the
/// bytes from the page cache to the socket, with no copy through the server's memory.
///
/// Hummingbird's response writer only carries `ByteBuffer`s, so the responder hands the file
/// to this connection's `SendfileHandler` (a queue of open files, each with a random token) and
/// writes the token as the body. The handler sits below the HTTPTypes codec, where body parts
/// are `IOData`, and swaps a body part that is exactly the token at the head of its queue for a
/// `FileRegion`. Any other body (a blob whose bytes happen to look like a token included) passes
/// through untouched: tokens are 16 random bytes, known only to this connection's queue.
///
/// TLS connections have no such handler (the TLS handler cannot encrypt a file region); the
/// responder then streams the file through memory as before.
///
/// The same token carries a blob store's transfer (S3: `BlobStreamRelay`): at the token the
/// handler hands the relay this context, and the store's chunks go out from here, on this
/// connection's event loop. The handler tells the relay when the connection becomes writable
/// again and when it goes away.
final class SendfileHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let queue = SendfileQueue()
    /// The relay whose token was written last (at most one response is being written at a time).
    private var relay: BlobStreamRelay?

    func handlerAdded(context: ChannelHandlerContext) {
        queue.eventLoop = context.eventLoop
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .body(.byteBuffer(let buffer)) = unwrapOutboundIn(data),
           buffer.readableBytes == SendfileQueue.tokenSize,
           let entry = queue.take(matching: buffer) {
            switch entry.payload {
            case .file(let file, let range):
                let region = FileRegion(fileHandle: file.handle, readerIndex: Int(range.lowerBound), endIndex: Int(range.upperBound))
                let written = context.eventLoop.makePromise(of: Void.self)
                written.futureResult.whenComplete { result in
                    file.close()
                    switch result {
                    case .success: promise?.succeed()
                    case .failure(let error): promise?.fail(error)
                    }
                }
                context.write(wrapOutboundOut(.body(.fileRegion(region))), promise: written)
            case .stream(let relay):
                self.relay = relay
                relay.attach(context)
                promise?.succeed()
            }
            return
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        relay?.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionGone()
        context.fireChannelInactive()
    }

    /// Also called when the connection closes (its pipeline is torn down).
    func handlerRemoved(context: ChannelHandlerContext) {
        connectionGone()
    }

    private func connectionGone() {
        relay?.fail(ChannelError.ioOnClosedChannel)
        relay = nil
        queue.shutDown()
    }
}

/// The files a connection's responder has handed over and the handler has not yet written.
/// Thread-safe: the responder enqueues from its task, the handler takes on the event loop.
final class SendfileQueue: Sendable {
    static let tokenSize = 16

    enum Payload: Sendable {
        case file(BlobFile, Range<Int64>)
        case stream(BlobStreamRelay)

        /// Releases what was never written: closes the file, stops the transfer.
        func drop() {
            switch self {
            case .file(let file, _): file.close()
            case .stream(let relay): relay.fail(ChannelError.ioOnClosedChannel)
            }
        }
    }

    struct Entry: Sendable {
        let token: [UInt8]
        let payload: Payload
    }

    private struct State {
        var entries: [Entry] = []
        var open = true
        var eventLoop: (any EventLoop)?
    }

    private let state = NIOLockedValueBox(State())

    /// The connection's event loop (set when the handler is added).
    var eventLoop: (any EventLoop)? {
        get { state.withLockedValue { $0.eventLoop } }
        set { state.withLockedValue { $0.eventLoop = newValue } }
    }

    /// Queues `file` for the next body part equal to the returned token. Returns nil (and closes
    /// the file) when the connection has already gone away.
    func enqueue(_ file: BlobFile, range: Range<Int64>) -> ByteBuffer? {
        enqueue(.file(file, range))
    }

    /// Queues a store's transfer the same way. Returns nil (and fails the relay, which stops
    /// the transfer) when the connection has already gone away.
    func enqueue(_ relay: BlobStreamRelay) -> ByteBuffer? {
        enqueue(.stream(relay))
    }

    private func enqueue(_ payload: Payload) -> ByteBuffer? {
        var generator = SystemRandomNumberGenerator()
        var token: [UInt8] = []
        token.reserveCapacity(Self.tokenSize)
        for _ in 0..<(Self.tokenSize / 8) {
            withUnsafeBytes(of: generator.next() as UInt64) { token.append(contentsOf: $0) }
        }
        let queued = state.withLockedValue { state -> Bool in
            guard state.open else { return false }
            state.entries.append(Entry(token: token, payload: payload))
            return true
        }
        guard queued else {
            payload.drop()
            return nil
        }
        return ByteBuffer(bytes: token)
    }

    /// Removes and returns the entry whose token `buffer` is, if any.
    func take(matching buffer: ByteBuffer) -> Entry? {
        state.withLockedValue { state in
            guard let index = state.entries.firstIndex(where: { buffer.readableBytesView.elementsEqual($0.token) })
            else { return nil }
            return state.entries.remove(at: index)
        }
    }

    /// Withdraws an entry the responder could not write (its body write failed).
    func cancel(token: ByteBuffer) {
        take(matching: token)?.payload.drop()
    }

    /// The connection is gone: close whatever was never written, refuse anything new.
    func shutDown() {
        let entries = state.withLockedValue { state -> [Entry] in
            state.open = false
            defer { state.entries = [] }
            return state.entries
        }
        for entry in entries { entry.payload.drop() }
    }

    var isOpen: Bool { state.withLockedValue { $0.open } }

    /// The queue of the connection the current request arrived on (nil over TLS and in tests
    /// without a server).
    @TaskLocal static var current: SendfileQueue?
}

/// Hummingbird's HTTP/1 channel with an `HTTP10Handler` and (without TLS) a `SendfileHandler`
/// placed between the HTTP/1 encoder and the HTTPTypes codec, and (without TLS) a
/// `TLSOnPlainHTTPHandler` in front of everything.
struct SendfileHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    var sendfile = true

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let codec = try channel.pipeline.syncOperations.handler(type: HTTP1ToHTTPServerCodec.self)
            // Nearest the wire, so that it sees the file regions and the end of a sendfile body too.
            try channel.pipeline.syncOperations.addHandler(HTTP10Handler(), position: .before(codec))
            if sendfile {
                try channel.pipeline.syncOperations.addHandler(SendfileHandler(), position: .before(codec))
                try channel.pipeline.syncOperations.addHandler(TLSOnPlainHTTPHandler(logger: logger), position: .first)
            }
            return value
        }
    }

    /// Looks the connection's queue up once and serves every request of the connection with it
    /// bound (Hummingbird runs the responder in this task).
    func handle(value: Value, logger: Logger) async {
        let queue = sendfile ? await value.channel.sendfileQueue() : nil
        await SendfileQueue.$current.withValue(queue) {
            await inner.handle(value: value, logger: logger)
        }
    }
}

extension HTTPServerBuilder {
    /// `http1(configuration:)`, answering HTTP/1.0 as HTTP/1.0 and, unless `sendfile` is false
    /// (TLS), sending blob downloads by `sendfile(2)`.
    static func http1Sendfile(configuration: HTTP1Channel.Configuration, sendfile: Bool = true) -> HTTPServerBuilder {
        .init { responder in
            SendfileHTTP1Channel(inner: HTTP1Channel(responder: responder, configuration: configuration), sendfile: sendfile)
        }
    }
}

extension Channel {
    /// This connection's sendfile queue, when it has one (plain HTTP/1).
    func sendfileQueue() async -> SendfileQueue? {
        try? await eventLoop.submit { [pipeline] in
            try pipeline.syncOperations.handler(type: SendfileHandler.self).queue
        }.get()
    }
}
