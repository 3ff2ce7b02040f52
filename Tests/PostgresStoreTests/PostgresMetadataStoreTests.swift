import Foundation
import OCIModel
@testable import PostgresStore
import RegistryStore
import Synchronization
import Testing

/// What the conformance suite cannot say about PostgreSQL: migrations, hostile input, and the
/// event log's order when several transactions append at once.
@Suite struct PostgresMetadataStoreTests {
    @Test func migrationsApplyOnceWhenTwoOpenersStartTogether() async throws {
        try await TestDatabase.withSchema { configuration in
            async let first = PostgresMigrations.migrate(configuration, logger: TestDatabase.logger)
            async let second = PostgresMigrations.migrate(configuration, logger: TestDatabase.logger)
            let applied = try await [first, second].sorted { $0.count < $1.count }
            #expect(applied == [[], Array(1...PostgresMigrations.latest)])
            // Idempotent: a third open applies nothing, and the store works.
            #expect(try await PostgresMigrations.migrate(configuration, logger: TestDatabase.logger) == [])
            let store = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            try await store.linkBlob(repository: "r", digest: Digest.compute(Array("b".utf8)), size: 1, inline: nil)
            #expect(try await store.latestEventSequence() == 1)
            await store.close()
        }
    }

    @Test func aSchemaNewerThanTheBuildIsRefused() async throws {
        try await TestDatabase.withSchema { configuration in
            try await PostgresMigrations.migrate(configuration, logger: TestDatabase.logger)
            try await TestDatabase.execute(configuration, """
                INSERT INTO berth_schema_migrations(version, applied_at) VALUES (\(PostgresMigrations.latest + 1), 0)
                """)
            let error = try await #require(throws: PostgresStoreError.self) {
                _ = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            }
            #expect(error.message.contains("newer than this build"), "\(error)")
            // A build that knows that version and one more applies only the one more.
            let next = PostgresMigrations.all + [["CREATE TABLE later (id integer)"]]
            #expect(try await PostgresMigrations.migrate(configuration, migrations: next + [["SELECT 1"]], logger: TestDatabase.logger)
                == [PostgresMigrations.latest + 2])
        }
    }

    @Test func hostileTextIsRefusedOrKeptVerbatimNeverRun() async throws {
        try await TestDatabase.withStore { store in
            // NUL cannot be stored in PostgreSQL text: a clear store error, on writes and on reads.
            await #expect(throws: PostgresStoreError.self) { try await store.setSettingDocument("a\u{0}b", Data("1".utf8)) }
            await #expect(throws: PostgresStoreError.self) { _ = try await store.tagTarget(repository: "r", tag: "t\u{0}") }
            await #expect(throws: PostgresStoreError.self) {
                try await store.appendAudit([AuditRecord(actor: "x\u{0}", address: "127.0.0.1", action: "login", target: "", outcome: "denied")])
            }
            let error = try await #require(throws: PostgresStoreError.self) {
                try await store.linkBlob(repository: "r\u{0}", digest: Digest.compute([1]), size: 1, inline: nil)
            }
            #expect(error.sqlState == "22021" && error.description.contains("NUL"), "\(error)")
            // Nothing of the refused writes was kept, and the store goes on working.
            #expect(try await store.latestEventSequence() == 0)
            // Quotes and SQL are values like any other.
            let sneaky = "x'); DROP TABLE events; --"
            try await store.setSettingDocument(sneaky, Data("\"\(sneaky)\"".utf8))
            #expect(try await store.settingDocument(sneaky) == Data("\"\(sneaky)\"".utf8))
            #expect(try await store.events(after: 0, limit: 10).map(\.detail) == [sneaky])
            // Binary stays binary.
            let bytes: [UInt8] = [0, 255, 0, 39, 92]
            try await store.linkBlob(repository: "r", digest: Digest.compute(bytes), size: 5, inline: bytes)
            #expect(try await store.inlineContent(Digest.compute(bytes)) == bytes)
        }
    }

    /// A consumer that reads the log while many transactions append must see every event: sequence
    /// numbers become visible in order, with no gap a later commit could fill (with a plain
    /// `bigserial`, a reader would move its cursor past a number whose transaction commits later).
    @Test func theEventLogIsGapFreeInCommitOrderUnderConcurrentAppenders() async throws {
        try await TestDatabase.withStore { store in
            let writers = 8, perWriter = 15, total = writers * perWriter
            let finished = Flag()
            async let writing: Void = {
                // Set also when a writer fails, so the reader below stops either way.
                defer { finished.set() }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for w in 0..<writers {
                        group.addTask {
                            for i in 0..<perWriter {
                                let bytes = Array("w\(w)-\(i)".utf8)
                                try await store.linkBlob(repository: "repo\(w % 3)", digest: Digest.compute(bytes),
                                                         size: Int64(bytes.count), inline: bytes)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }()
            // The reader moves its cursor as a consumer does: to the last event it was given, until
            // the writers are done and nothing is left.
            var cursor: Int64 = 0
            var seen: [Int64] = []
            while true {
                let done = finished.value
                let page = try await store.events(after: cursor, limit: 7)
                seen += page.map(\.sequence)
                cursor = page.last?.sequence ?? cursor
                if page.isEmpty {
                    if done { break }
                    await Task.yield()
                }
            }
            try await writing
            #expect(seen == Array(1...Int64(total)))
            #expect(try await store.latestEventSequence() == Int64(total))
        }
    }

    /// The property itself, without a race to win: while one transaction that appended an event is
    /// still open, a second appender waits for it, so a consumer reading meanwhile sees neither
    /// and then both, in order. (With a sequence, the second would commit first and a consumer
    /// would move its cursor past the first.)
    @Test func aLaterAppenderWaitsUntilAnEarlierOneCommits() async throws {
        try await TestDatabase.withSchema { configuration in
            let store = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            let first = try await TestDatabase.connect(configuration)
            let watcher = try await TestDatabase.connect(configuration)
            let tx = Tx(conn: first, logger: TestDatabase.logger)
            // An appending transaction as the store runs one, left open.
            try await tx.exec("BEGIN")
            try await tx.exec("SELECT last FROM event_counter WHERE id = 1 FOR UPDATE")
            try await PostgresMetadataStore.appendEvent(tx, nil, .setting, "", detail: "first")
            let xid = try await tx.value("SELECT pg_current_xact_id()::text", String.self)!
            let laterDone = Flag()
            let later = Task {
                defer { laterDone.set() }
                try await store.setSettingDocument("second", Data("1".utf8))
            }
            // Until the later appender either waits for the open transaction or is done.
            let w = Tx(conn: watcher, logger: TestDatabase.logger)
            while !laterDone.value {
                let waiting = try await w.value("""
                    SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid' AND transactionid::text = \(xid)
                    """, Int.self) ?? 0
                if waiting > 0 { break }
                await Task.yield()
            }
            let readMeanwhile = try await store.events(after: 0, limit: 10)
            try await tx.exec("COMMIT")
            try await later.value
            let readAfter = try await store.events(after: readMeanwhile.last?.sequence ?? 0, limit: 10)
            #expect(readMeanwhile.isEmpty)
            #expect((readMeanwhile + readAfter).map(\.detail) == ["first", "second"])
            #expect((readMeanwhile + readAfter).map(\.sequence) == [1, 2])
            try? await first.close()
            try? await watcher.close()
            await store.close()
        }
    }

    /// A pull-times batch takes key-share locks on a manifest and then its tag, the opposite of a
    /// deletion's order, so waiting could deadlock with one (and PostgreSQL might abort the
    /// deletion). It gives way instead: a tag row held by another transaction fails the batch at
    /// once (the recorder keeps its pulls for the next flush); once released, the batch lands.
    @Test func aPullTimesBatchGivesWayToAHeldTagInsteadOfWaiting() async throws {
        try await TestDatabase.withSchema { configuration in
            let store = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            let bytes = Array("m".utf8)
            let record = ManifestRecord(digest: Digest.compute(bytes), mediaType: MediaType.ociManifest, size: Int64(bytes.count),
                                        artifactType: nil, subject: nil, annotations: nil, createdAt: Date())
            #expect(try await store.putManifest(ManifestPush(repository: "r", record: record, bytes: bytes, tag: "t", blobs: [],
                                                             children: [])) == .stored(previousTagTarget: nil))
            let holder = try await TestDatabase.connect(configuration)
            let tx = Tx(conn: holder, logger: TestDatabase.logger)
            // A deletion's first step, left open: the tag row locked.
            try await tx.exec("BEGIN")
            try await tx.exec("SELECT 1 FROM tags WHERE name = 't' FOR UPDATE")
            // Should the batch wait after all, the holder lets go after 10 s and the batch lands
            // (then the expectation below fails instead of the test hanging).
            let released = Flag()
            let watchdog = Task {
                try await Task.sleep(for: .seconds(10))
                released.set()
                try await tx.exec("ROLLBACK")
            }
            let pull = PullRecord(repository: "r", digest: record.digest, tag: "t", at: Date())
            await #expect(throws: (any Error).self) { try await store.recordPulls([pull]) }
            #expect(!released.value, "the batch waited for the holder")
            watchdog.cancel()
            if !released.value { try await tx.exec("ROLLBACK") }
            try await store.recordPulls([pull])
            let times = try await store.pullTimes(repository: "r")
            #expect(times.manifests[record.digest.string] != nil && times.tags["t"] != nil)
            try? await holder.close()
            await store.close()
        }
    }

    /// Two transactions that lock two rows in opposite orders deadlock; PostgreSQL aborts one of
    /// them (40P01) and the store runs it again from its start: both land whole, once each, and
    /// the retry is counted.
    @Test func aTransactionTheDatabaseAbortsAsADeadlockVictimIsRunAgain() async throws {
        try await TestDatabase.withSchema { configuration in
            try await TestDatabase.execute(configuration, "CREATE TABLE probe(id int PRIMARY KEY, v int NOT NULL)")
            try await TestDatabase.execute(configuration, "INSERT INTO probe VALUES (1, 0), (2, 0)")
            let store = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            let meeting = Rendezvous(parties: 2)
            let attempts = AttemptCounter()
            @Sendable func run(_ first: Int, _ second: Int) async throws {
                try await store.write(serialized: false) { tx in
                    let attempt = await attempts.next(first)
                    try await tx.exec("UPDATE probe SET v = v + 1 WHERE id = \(first)")
                    // Only the first attempts meet, each holding its first row: then each asks
                    // for the other's.
                    if attempt == 1 { await meeting.arrive() }
                    try await tx.exec("UPDATE probe SET v = v + 1 WHERE id = \(second)")
                }
            }
            async let a: Void = run(1, 2)
            async let b: Void = run(2, 1)
            try await a
            try await b
            let rows = try await store.read { tx in
                try await tx.rows("SELECT v FROM probe ORDER BY id").map { try $0.decode(0, Int.self) }
            }
            #expect(rows == [2, 2])
            #expect(await attempts.total == 3)
            #expect(store.roundTrips.retries == 1)
            await store.close()
        }
    }

    /// Any other failure is the caller's at once: the body runs once.
    @Test func aFailureTheDatabaseDoesNotAskToRetryIsNotRetried() async throws {
        try await TestDatabase.withSchema { configuration in
            try await TestDatabase.execute(configuration, "CREATE TABLE probe(id int PRIMARY KEY)")
            try await TestDatabase.execute(configuration, "INSERT INTO probe VALUES (1)")
            let store = try await PostgresMetadataStore.open(configuration, logger: TestDatabase.logger)
            let attempts = AttemptCounter()
            let error = await #expect(throws: PostgresStoreError.self) {
                try await store.write { tx in
                    _ = await attempts.next(1)
                    try await tx.exec("INSERT INTO probe VALUES (1)")
                }
            }
            #expect(error?.sqlState == "23505")
            #expect(await attempts.total == 1)
            #expect(store.roundTrips.retries == 0)
            await store.close()
        }
    }

    @Test func onlyDeadlocksAndSerializationFailuresAreRetryable() {
        #expect(PostgresMetadataStore.isRetryable(PostgresStoreError("deadlock", sqlState: "40P01")))
        #expect(PostgresMetadataStore.isRetryable(PostgresStoreError("serialization", sqlState: "40001")))
        for state in ["23505", "25P02", "57014", "08006", "40000", "40003", "40P0"] {
            #expect(!PostgresMetadataStore.isRetryable(PostgresStoreError("x", sqlState: state)), "\(state)")
        }
        #expect(!PostgresMetadataStore.isRetryable(PostgresStoreError("unreachable")))
        #expect(!PostgresMetadataStore.isRetryable(CancellationError()))
    }

    @Test func theURLIsReadAndRedacted() throws {
        let c = try PostgresConfiguration(url: "postgres://berth:s3cr%40t@db.example:6432/registry")
        #expect(c.host == "db.example" && c.port == 6432 && c.username == "berth" && c.password == "s3cr@t" && c.database == "registry")
        #expect(c.tls == .require)
        #expect(!c.description.contains("s3cr"))
        #expect(try PostgresConfiguration(url: "postgres://u@127.0.0.1/d").tls == .disable)
        #expect(try PostgresConfiguration(url: "postgres://u:p@h/d", password: "file").password == "file")
        #expect(throws: PostgresStoreError.self) { try PostgresConfiguration(url: "mysql://u@h/d") }
        #expect(throws: PostgresStoreError.self) { try PostgresConfiguration(url: "postgres://u@h/d?sslmode=maybe") }
        #expect(PostgresConfiguration.redact("bad postgres://u:hunter2@h/d here") == "bad postgres://u:***@h/d here")
    }

    @Test func aWrongPasswordIsAClearErrorWithoutThePassword() async throws {
        var c = try PostgresConfiguration(url: TestDatabase.url)
        c.password = "not-the-password"
        let error = try await #require(throws: PostgresStoreError.self) {
            _ = try await PostgresMetadataStore.open(c, logger: TestDatabase.logger)
        }
        #expect(error.sqlState == "28P01", "\(error)")
        #expect(!error.description.contains("not-the-password"))
    }
}

final class Flag: Sendable {
    private let state = Mutex(false)
    func set() { state.withLock { $0 = true } }
    var value: Bool { state.withLock { $0 } }
}

/// Waits until `parties` callers have arrived, then lets them all go; after 15 s it lets a
/// waiter go anyway (a party that failed before arriving makes the test fail, not hang).
actor Rendezvous {
    private let parties: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private var arrived = 0

    init(parties: Int) { self.parties = parties }

    func arrive() async {
        arrived += 1
        if arrived >= parties {
            release()
            return
        }
        Task { [weak self] in
            try? await Task.sleep(for: .seconds(15))
            await self?.release()
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        for c in waiting { c.resume() }
        waiting = []
    }
}

/// Attempts of transaction bodies, per key and in all.
actor AttemptCounter {
    private var counts: [Int: Int] = [:]
    private(set) var total = 0

    func next(_ key: Int) -> Int {
        total += 1
        counts[key, default: 0] += 1
        return counts[key]!
    }
}
