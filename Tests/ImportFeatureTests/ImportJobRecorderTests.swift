import Backends
import Foundation
import Logging
import OCIModel
import Testing

@testable import ImportFeature

/// Import jobs kept in the metadata store: any node answers for a job another node runs, a job
/// whose node stopped shows as failed, and a finished job never runs again.
@Suite struct ImportJobRecorderTests {
    static func recorder(_ backends: Backends, node: String) -> JobRecorder {
        JobRecorder(store: backends.metadata, node: node, log: Logger(label: "import"))
    }

    @Test func anotherNodeSeesTheJobItsProgressAndItsEnd() async throws {
        let (_, backends) = try ImportCopierTests.fresh()
        let a = Self.recorder(backends, node: "a"), b = Self.recorder(backends, node: "b")
        let job = ImportJob(id: "j1", source: "up.example/lib/app:v1", image: "mirror/app:v1", owner: "identity:alice")
        try await a.save(job)
        var seen = try #require(try await b.load("j1", now: Date()))
        #expect(seen.image == "mirror/app:v1" && seen.view.state == "running" && seen.view.source == "up.example/lib/app:v1")
        job.update { $0.blobsCopied = 3; $0.bytesCopied = 1234 }
        try await a.save(job)
        seen = try #require(try await b.load("j1", now: Date()))
        #expect(seen.view.blobsCopied == 3 && seen.view.bytesCopied == 1234)
        let digest = Digest.compute(Array("m".utf8))
        job.finish(digest: digest)
        await a.finish(job)
        seen = try #require(try await b.load("j1", now: Date().addingTimeInterval(JobRecorder.staleAfter * 10)))
        #expect(seen.view.state == "succeeded" && seen.view.digest == digest.string && seen.view.finishedAt != nil)
        await #expect(try b.load("nope", now: Date()) == nil)
    }

    @Test func aRunningJobWhoseNodeStoppedWritingShowsFailed() async throws {
        let (_, backends) = try ImportCopierTests.fresh()
        let a = Self.recorder(backends, node: "a"), b = Self.recorder(backends, node: "b")
        let job = ImportJob(id: "j2", source: "s/r:t", image: "mirror/x:v1", owner: "identity:bob")
        try await a.save(job)
        let fresh = try #require(try await b.load("j2", now: Date().addingTimeInterval(JobRecorder.staleAfter / 2)))
        #expect(fresh.view.state == "running")
        let stale = try #require(try await b.load("j2", now: Date().addingTimeInterval(JobRecorder.staleAfter + 5)))
        #expect(stale.view.state == "failed" && stale.view.error?.contains("run the import again") == true)
    }

    @Test func theFollowerWritesProgressUntilTheJobEnds() async throws {
        let (_, backends) = try ImportCopierTests.fresh()
        let a = Self.recorder(backends, node: "a"), b = Self.recorder(backends, node: "b")
        let job = ImportJob(id: "j3", source: "s/r:t", image: "mirror/x:v1", owner: "identity:bob")
        try await a.save(job)
        let follower = Task { await a.follow(job) }
        job.update { $0.manifestsCopied = 2 }
        // polled, not timed: the follower writes every JobRecorder.interval
        var copied = 0
        for _ in 0..<300 where copied != 2 {
            copied = try await b.load("j3", now: Date())?.view.manifestsCopied ?? 0
            if copied != 2 { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(copied == 2)
        job.fail("boom", code: "UNSUPPORTED")
        follower.cancel()
        await a.finish(job)
        // a late progress write of the stopped job cannot bring it back
        job.update { $0.state = "running" }
        try await a.save(job)
        #expect(try await b.load("j3", now: Date())?.view.state == "failed")
    }
}
