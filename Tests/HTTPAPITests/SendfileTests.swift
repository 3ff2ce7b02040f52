import BlobStorage
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
@testable import HTTPAPI

/// The sendfile handler swaps exactly the queued token for the queued file, passes every other
/// body through, and closes every file it was given: once written, once cancelled, or when the
/// connection goes away.
@Suite struct SendfileTests {
    private func makeFile(_ bytes: Int) throws -> (path: String, file: BlobFile) {
        let path = NSTemporaryDirectory() + "/berth-sendfile-\(UUID().uuidString)"
        try Data(repeating: 7, count: bytes).write(to: URL(fileURLWithPath: path))
        let fd = open(path, O_RDONLY)
        try #require(fd >= 0)
        return (path, BlobFile(handle: NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: fd), size: Int64(bytes)))
    }

    private func isOpen(_ file: BlobFile) -> Bool {
        (try? file.handle.withUnsafeFileDescriptor { fcntl($0, F_GETFD) >= 0 }) ?? false
    }

    @Test func tokenBecomesTheFileRegionAndTheFileIsClosedAfterTheWrite() throws {
        let handler = SendfileHandler()
        let channel = EmbeddedChannel(handler: handler)
        let (path, file) = try makeFile(1000)
        defer { unlink(path) }
        let token = try #require(handler.queue.enqueue(file, range: 10..<900))
        #expect(token.readableBytes == SendfileQueue.tokenSize)

        // Another body of the same length that is not the token passes through untouched.
        var lookalike = token
        lookalike.setInteger(lookalike.getInteger(at: 0, as: UInt8.self)! &+ 1, at: 0)
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(lookalike)))
        guard case .body(.byteBuffer(let passed)) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("expected the look-alike body to pass through")
            return
        }
        #expect(passed == lookalike)
        #expect(isOpen(file))

        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(token)))
        guard case .body(.fileRegion(let region)) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("expected a file region")
            return
        }
        #expect(region.readerIndex == 10 && region.endIndex == 900)
        // The embedded channel completes the write at once: the file is closed.
        #expect(!isOpen(file))
        // The token is used up: writing it again passes it through as bytes.
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(token)))
        guard case .body(.byteBuffer) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("a used token must not map to a file again")
            return
        }
        _ = try channel.finish()
    }

    @Test func tokensMatchOutOfOrderAndCancelledOnesAreClosed() throws {
        let handler = SendfileHandler()
        let channel = EmbeddedChannel(handler: handler)
        let (p1, f1) = try makeFile(100)
        let (p2, f2) = try makeFile(200)
        defer { unlink(p1); unlink(p2) }
        let t1 = try #require(handler.queue.enqueue(f1, range: 0..<100))
        let t2 = try #require(handler.queue.enqueue(f2, range: 0..<200))
        #expect(t1 != t2)
        handler.queue.cancel(token: t1)
        #expect(!isOpen(f1))
        try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(t2)))
        guard case .body(.fileRegion(let region)) = try channel.readOutbound(as: HTTPServerResponsePart.self) else {
            Issue.record("expected the second file")
            return
        }
        #expect(region.endIndex == 200)
        _ = try channel.finish()
    }

    @Test func closingTheConnectionClosesQueuedFilesAndRefusesNewOnes() throws {
        let handler = SendfileHandler()
        let channel = EmbeddedChannel(handler: handler)
        let (p1, f1) = try makeFile(100)
        let (p2, f2) = try makeFile(100)
        defer { unlink(p1); unlink(p2) }
        _ = try #require(handler.queue.enqueue(f1, range: 0..<100))
        _ = try channel.finish()
        #expect(!isOpen(f1))
        #expect(!handler.queue.isOpen)
        #expect(handler.queue.enqueue(f2, range: 0..<100) == nil)
        #expect(!isOpen(f2))
    }
}
