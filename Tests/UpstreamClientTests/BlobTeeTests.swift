import Foundation
import NIOCore
import Testing

@testable import UpstreamClient

/// The hand-off between a blob fill and its client: the fill waits for a slow client only so long
/// in all, never per chunk (review, high: a client reading one chunk just under the per-wait limit
/// held the fill, and every pull waiting on it, for as long as it liked).
@Suite struct BlobTeeTests {
    @Test func aClientSlowerThanTheFillIsCutOnceTheFillHasWaitedItsBudgetInAll() async throws {
        let tee = BlobTee(stallBudget: .milliseconds(1500))
        tee.begin(.streaming(Int64(40 * 4)))
        let fill = Task {
            for i in 0..<40 { await tee.send(ByteBuffer(bytes: [UInt8](repeating: UInt8(i), count: 4))) }
            tee.finish(.success(()))
        }
        // Each wait of the fill is short (a chunk every 0.4 s), but they add up past the budget.
        var received = 0
        do {
            while try await tee.next() != nil {
                received += 1
                try await Task.sleep(for: .milliseconds(400))
            }
        } catch {}
        await fill.value
        // left behind, not fed every chunk (the response is then short: StreamedBlob refuses it)
        #expect(received < 40)
    }

    @Test func aClientAsFastAsTheFillGetsEveryChunk() async throws {
        let tee = BlobTee(stallBudget: .seconds(30))
        tee.begin(.streaming(Int64(10 * 4)))
        let fill = Task {
            for i in 0..<10 { await tee.send(ByteBuffer(bytes: [UInt8](repeating: UInt8(i), count: 4))) }
            tee.finish(.success(()))
        }
        var received = 0
        while try await tee.next() != nil { received += 1 }
        await fill.value
        #expect(received == 10)
    }
}
