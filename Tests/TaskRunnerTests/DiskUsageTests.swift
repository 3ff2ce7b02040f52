import Foundation
import Testing
@testable import TaskRunner

/// What a run's disk quota counts: allocated blocks (a sparse file counts what it holds, not its
/// length), every file of a tree once (hard links once), links never followed.
@Suite struct DiskUsageTests {
    @Test func allocatedBytesCountBlocksOnceAndNeverFollowLinks() throws {
        let dir = NSTemporaryDirectory() + "berth-du-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/a/b", withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: dir) }
        let empty = DiskUsage.allocatedBytes(under: dir)
        // 1 MiB of data deep in the tree is counted.
        try Data(repeating: 7, count: 1 << 20).write(to: URL(fileURLWithPath: dir + "/a/b/data"))
        let withData = DiskUsage.allocatedBytes(under: dir)
        #expect(withData - empty >= 1 << 20 && withData - empty < (1 << 20) + (64 << 10))
        // A hard link to it adds nothing; a link to a big tree elsewhere is not followed.
        #expect(link(dir + "/a/b/data", dir + "/a/hard") == 0)
        try fm.createSymbolicLink(atPath: dir + "/usr", withDestinationPath: "/usr")
        let linked = DiskUsage.allocatedBytes(under: dir)
        #expect(linked - withData < 16 << 10)
        // A 10 GiB sparse file counts what it holds, not its length.
        let sparse = open(dir + "/sparse", O_CREAT | O_WRONLY, 0o600)
        #expect(sparse >= 0)
        #expect(ftruncate(sparse, 10 << 30) == 0)
        close(sparse)
        #expect(DiskUsage.allocatedBytes(under: dir) - linked < 64 << 10)
        // Nothing there: 0; a cap on entries stops the walk.
        #expect(DiskUsage.allocatedBytes(under: dir + "/missing") == 0)
        #expect(DiskUsage.allocatedBytes(under: dir, maxEntries: 1) < withData)
    }
}
