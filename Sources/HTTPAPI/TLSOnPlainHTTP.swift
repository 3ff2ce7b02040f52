import Logging
import NIOCore

/// First handler of a plain-HTTP connection: when the first byte is a TLS handshake record
/// (0x16, which no HTTP request starts with), the client was pointed at `https://` on a
/// plain-HTTP registry. The log says so (once per connection) and the client gets a 400 before
/// the connection closes, instead of a garbled parse error. Any other first byte removes this
/// handler and passes everything through.
final class TLSOnPlainHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let tlsHandshakeRecord: UInt8 = 0x16
    static let body = "This registry serves plain HTTP: use http:// (or start it with --tls-cert and --tls-key).\n"

    let logger: Logger
    private var refused = false

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refused { return }
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        guard first == Self.tlsHandshakeRecord else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
            return
        }
        refused = true
        logger.warning("a client sent a TLS handshake to this plain-HTTP listener: it was given an https:// URL; use http:// or serve with --tls-cert/--tls-key",
                       metadata: ["remote": "\(context.remoteAddress?.description ?? "?")"])
        let response = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(Self.body.utf8.count)\r\nConnection: close\r\n\r\n\(Self.body)"
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: response))).whenComplete { _ in
            bound.value.close(promise: nil)
        }
    }
}
