import Foundation
import Testing
@testable import ScanningFeature

/// The scan consumer's work runs on a thread of its own, not on the cooperative pool the request
/// handlers share (issue 15 item 10: a push acknowledged no later with scanning on).
@Suite struct BackgroundExecutorTests {
    @Test func workPreferringTheScannersExecutorRunsOnItsThread() async {
        let here = await withTaskExecutorPreference(BackgroundExecutor.scanning) { () async -> Bool in
            // Something awaited first: the body goes on where its preference says.
            await Task.yield()
            return BackgroundExecutor.scanning.isCurrent()
        }
        #expect(here)
        #expect(!BackgroundExecutor.scanning.isCurrent())
    }

    @Test func manyTasksAllRunThereAndFinish() async {
        let (total, everywhere) = await withTaskExecutorPreference(BackgroundExecutor.scanning) {
            await withTaskGroup(of: (Int, Bool).self) { group in
                for k in 0..<200 {
                    group.addTask {
                        await Task.yield()
                        return (k, BackgroundExecutor.scanning.isCurrent())
                    }
                }
                var sum = 0
                var all = true
                for await (k, here) in group {
                    sum += k
                    all = all && here
                }
                return (sum, all)
            }
        }
        #expect(total == 199 * 200 / 2 && everywhere)
    }
}
