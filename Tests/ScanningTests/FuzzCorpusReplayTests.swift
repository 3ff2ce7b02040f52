import Foundation
import Testing
@_spi(Fuzzing) import Scanning

/// Replays the fuzz package's corpus (`fuzz/corpus/<target>/`, seeds and every input the fuzzer
/// found worth keeping, crashes included once fixed) through the same entry points the fuzz
/// targets call, so a fixed finding stays fixed without running a fuzzing campaign.
@Suite struct FuzzCorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fuzz/corpus")

    static func files(_ target: ScanFuzzEntry.Target) throws -> [URL] {
        let dir = corpus.appendingPathComponent(target.rawValue)
        return try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// Resident memory of this process, in bytes (Linux), to catch an input that keeps memory.
    static func residentBytes() -> Int? {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    @Test func everyCorpusDirectoryIsATarget() throws {
        let dirs = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).filter { !$0.hasPrefix(".") }
        #expect(Set(dirs) == Set(ScanFuzzEntry.Target.allCases.map(\.rawValue)))
    }

    @Test(arguments: ScanFuzzEntry.Target.allCases)
    func corpusReplaysWithoutCrashOrHang(_ target: ScanFuzzEntry.Target) async throws {
        let files = try Self.files(target)
        #expect(!files.isEmpty, "no corpus for \(target.rawValue)")
        var productive = 0
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            let before = Self.residentBytes()
            let clock = ContinuousClock()
            let start = clock.now
            let outcome = await ScanFuzzEntry.run(target, bytes)
            let elapsed = clock.now - start
            // A hang guard, not a performance bound: the fuzzer's own limit is 10 s per input
            // (-timeout=10); a loaded 2-core machine gets six times that.
            #expect(elapsed < .seconds(60), "\(target.rawValue)/\(file.lastPathComponent) took \(elapsed)")
            if let before, let after = Self.residentBytes() {
                #expect(after - before < 512 << 20, "\(target.rawValue)/\(file.lastPathComponent) kept \(after - before) bytes")
            }
            if outcome.results > 0 { productive += 1 }
        }
        // The seeds include well-formed inputs, so the entry point reaches the parser (an entry
        // point that rejected everything would pass the loop above and fuzz nothing).
        #expect(productive > 0, "no \(target.rawValue) corpus file gave a result")
    }
}
