import NIOCore
import NIOHTTP1

/// Answers HTTP/1.0 requests as HTTP/1.0 clients expect.
///
/// Below it the HTTPTypes codec forgets the request's version and answers every request as
/// HTTP/1.1 with the connection kept open, so an HTTP/1.0 client (which reads until the server
/// closes unless the response says `Connection: keep-alive`) hangs. This handler sits under the
/// codec, where versions are still visible: a response to an HTTP/1.0 request goes out as HTTP/1.0,
/// with `Connection: keep-alive` when the client asked for it and the body is delimited (a
/// Content-Length, or no body), and otherwise with `Connection: close`, closing after the response.
/// HTTP/1.1 requests pass through untouched.
final class HTTP10Handler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private struct Pending {
        var http10: Bool
        var keepAlive: Bool
        var head: Bool
    }

    /// Requests in arrival order whose response head has not gone out yet.
    private var pending: [Pending] = []
    /// The response being written answers an HTTP/1.0 request that does not keep the connection.
    private var closeAfterResponse = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let http10 = head.version.major == 1 && head.version.minor == 0
            pending.append(Pending(http10: http10, keepAlive: head.isKeepAlive, head: head.method == .HEAD))
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            guard !pending.isEmpty else { break }
            let request = pending.removeFirst()
            guard request.http10 else { break }
            head.version = .http1_0
            let delimited = request.head || head.headers[canonicalForm: "content-length"].count == 1
                || head.status == .noContent || head.status == .notModified
            if request.keepAlive, delimited, !head.headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "close" }) {
                head.headers.replaceOrAdd(name: "Connection", value: "keep-alive")
                closeAfterResponse = false
            } else {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                closeAfterResponse = true
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        case .end where closeAfterResponse:
            closeAfterResponse = false
            let bound = context.loopBound
            context.writeAndFlush(data).flatMap {
                bound.value.close()
            }.cascade(to: promise)
            return
        default:
            break
        }
        context.write(data, promise: promise)
    }
}
