import Access
import Foundation
import Logging
import NIOConcurrencyHelpers
import OCIModel
import RegistryStore
import SQLiteStore
import Testing
@testable import TasksFeature

/// Per-platform base digests (issue 16 item 4 and the multi-arch rebuild storm of its Why): a
/// base whose tag points at an index is recorded with the index digest and the digest of the
/// manifest for the platform the run builds for; the trigger fires when the index moves for
/// that platform, and not when only another platform's child was added or changed.
@Suite struct PlatformBaseTests {
    static let registry = "berth.test:5000"

    /// An index of `children` (architecture → manifest digest), as its bytes and digest.
    static func index(_ children: [(String, String)]) -> (digest: Digest, bytes: [UInt8]) {
        let entries = children.map { arch, digest in
            #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(digest)","size":100,"platform":{"architecture":"\#(arch)","os":"linux"}}"#
        }
        let bytes = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(entries.joined(separator: ","))]}"#.utf8)
        return (Digest.compute(bytes), bytes)
    }

    @Test func anIndexBaseRecordsItsPlatformsManifestAndOnlyThatPlatformsChangeTriggers() async throws {
        let amd1 = "sha256:" + String(repeating: "a", count: 64)
        let amd2 = "sha256:" + String(repeating: "b", count: 64)
        let arm = "sha256:" + String(repeating: "c", count: 64)
        let first = Self.index([("amd64", amd1)])
        let armAdded = Self.index([("amd64", amd1), ("arm64", arm)])      // pushed again: an arm64 child only
        let amdMoved = Self.index([("amd64", amd2), ("arm64", arm)])      // the amd64 image changed
        let indexes = [first, armAdded, amdMoved]

        let dir = NSTemporaryDirectory() + "berth-platform-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = try SQLiteMetadataStore(path: dir + "/m.sqlite")
        var configuration = TasksConfiguration(stateDirectory: dir + "/tasks", registry: Self.registry, serviceName: "s",
                                               transport: .plainHTTP, outbound: OutboundPolicy())
        configuration.platform = "linux/amd64"
        configuration.baseTriggerWindow = 0
        let asked = NIOLockedValueBox<[String]>([])
        configuration.manifestContent = { repository, digest in
            asked.withLockedValue { $0.append(repository) }
            guard let hit = indexes.first(where: { $0.digest == digest }) else {
                return ("application/vnd.oci.image.manifest.v1+json", Array("{}".utf8))
            }
            return ("application/vnd.oci.image.index.v1+json", hit.bytes)
        }
        let tasks = TaskService(store: store, configuration: configuration, logger: Logger(label: "test"))

        // What a run records for a base: the index digest, the platform and its manifest.
        let platformChild = await tasks.platformManifest(repository: "base", digest: armAdded.digest)
        #expect(platformChild?.string == amd1)
        #expect(await tasks.platformManifest(repository: "base", digest: try Digest(parsing: amd1)) == nil)   // not an index
        var arm64 = configuration
        arm64.platform = "linux/arm64"
        #expect(await TaskService(store: store, configuration: arm64, logger: Logger(label: "test"))
            .platformManifest(repository: "base", digest: first.digest) == nil)                                 // no arm64 child

        var task = TaskRecord(name: "app", taskFile: "version: v1.1.0\nsteps:\n  - build: -t $Registry/app:1 .\n  - push: [$Registry/app:1]\n",
                              context: "https://git.example.com/app.git#main", schedule: nil, values: [:], timeoutSeconds: 600,
                              repositories: ["app"], createdBy: "o", createdAt: Date(), updatedAt: Date(), baseImageTrigger: "Runtime",
                              bases: [TaskBaseRecord(reference: "base:1.0", runtime: true)])
        task.outputs = ["app:1"]
        #expect(try await store.createTask(task))
        // A run built from the first index, and finished.
        _ = try await store.queueTaskRun(task: "app", trigger: "manual", uploadedContext: nil)
        var run = try #require(try await store.startNextTaskRun(node: "n"))
        var base = TaskRunImageRecord(reference: Self.registry + "/base:1.0", digest: first.digest.string, runtime: true)
        base.platform = "linux/amd64"
        base.platformDigest = amd1
        run.baseImages = [base]
        run.status = .succeeded
        run.finishedAt = Date()
        #expect(try await store.updateTaskRun(run, expected: .running))

        let t0 = Date()
        // The index is pushed again with an arm64 child added: amd64's image is the same, nothing is queued.
        try await tasks.baseImageMoved("app", reference: "base:1.0", digest: armAdded.digest.string, now: t0)
        #expect(try await store.taskRuns(task: "app", limit: 10).count == 1)
        #expect(asked.withLockedValue { $0 }.allSatisfy { $0 == "base" })
        // The amd64 child changes: the task is queued once.
        try await tasks.baseImageMoved("app", reference: "base:1.0", digest: amdMoved.digest.string, now: t0.addingTimeInterval(1))
        let runs = try await store.taskRuns(task: "app", limit: 10)
        #expect(runs.map(\.trigger) == ["base-image", "manual"])
    }
}
