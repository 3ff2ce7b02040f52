import Foundation
import GRDBSQLite
import Testing
@testable import Scanning

/// rpm headers as the rpm database stores them, written field by field: real ones and every
/// way a hostile one can lie (counts, offsets, types, lengths).
struct RpmHeaderWriter {
    struct Entry { var tag: UInt32; var type: UInt32; var offset: UInt32; var count: UInt32 }
    var entries: [Entry] = []
    var data: [UInt8] = []

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    mutating func string(_ tag: UInt32, _ s: String, type: UInt32 = 6) {
        entries.append(Entry(tag: tag, type: type, offset: UInt32(data.count), count: 1))
        data += Array(s.utf8) + [0]
    }
    mutating func int32(_ tag: UInt32, _ v: UInt32) {
        while data.count % 4 != 0 { data.append(0) }
        entries.append(Entry(tag: tag, type: 4, offset: UInt32(data.count), count: 1))
        data += Self.be32(v)
    }

    /// The blob: entry count, data length, the entries, the data (or what the overrides say).
    func blob(entryCount: UInt32? = nil, dataLength: UInt32? = nil) -> [UInt8] {
        var out = Self.be32(entryCount ?? UInt32(entries.count)) + Self.be32(dataLength ?? UInt32(data.count))
        for e in entries { out += Self.be32(e.tag) + Self.be32(e.type) + Self.be32(e.offset) + Self.be32(e.count) }
        return out + data
    }

    static func package(name: String = "bash", epoch: UInt32? = nil, version: String = "5.1.8", release: String = "6.el9",
                        arch: String = "x86_64", sourceRPM: String? = "bash-5.1.8-6.el9.src.rpm") -> RpmHeaderWriter {
        var w = RpmHeaderWriter()
        // A region tag first, as rpm writes (HEADER_IMMUTABLE, BIN, 16 bytes): skipped.
        w.entries.append(Entry(tag: 63, type: 7, offset: 0, count: 16))
        w.data += [UInt8](repeating: 0, count: 16)
        w.string(1000, name)
        w.string(1001, version)
        w.string(1002, release)
        if let epoch { w.int32(1003, epoch) }
        w.string(1022, arch)
        if let sourceRPM { w.string(1044, sourceRPM) }
        w.string(1014, "GPLv3+", type: 9)
        return w
    }
}

/// SQLite databases written through the C API and serialised to bytes (no file).
enum SQLiteBytes {
    static func make(_ sql: String, blobs: [[UInt8]] = []) throws -> [UInt8] {
        var db: OpaquePointer?
        guard sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_MEMORY, nil) == SQLITE_OK, let db else {
            throw Failure(message: "open")
        }
        defer { sqlite3_close(db) }
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else { throw Failure(message: String(cString: sqlite3_errmsg(db))) }
        var insert: OpaquePointer?
        if !blobs.isEmpty {
            guard sqlite3_prepare_v2(db, "INSERT INTO Packages (blob) VALUES (?)", -1, &insert, nil) == SQLITE_OK else { throw Failure(message: "prepare") }
            defer { sqlite3_finalize(insert) }
            for b in blobs {
                sqlite3_reset(insert)
                _ = b.withUnsafeBytes { sqlite3_bind_blob(insert, 1, $0.baseAddress, Int32($0.count), unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
                guard sqlite3_step(insert) == SQLITE_DONE else { throw Failure(message: "insert") }
            }
        }
        var size: sqlite3_int64 = 0
        guard let p = sqlite3_serialize(db, "main", &size, 0) else { throw Failure(message: "serialize") }
        defer { sqlite3_free(p) }
        return Array(UnsafeBufferPointer(start: p, count: Int(size)))
    }

    static let schema = "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);"

    struct Failure: Error { var message: String }
}

@Suite struct RpmDatabaseTests {
    static let path = "var/lib/rpm/rpmdb.sqlite"

    @Test func aHeaderGivesNameEpochVersionReleaseArchAndSource() throws {
        let header = try RpmHeader(RpmHeaderWriter.package(name: "openssl-libs", epoch: 1, version: "3.0.7", release: "24.el9",
                                                           sourceRPM: "openssl-3.0.7-24.el9.src.rpm").blob())
        let p = try #require(try header.package(location: Self.path))
        #expect(p.type == .rpm && p.name == "openssl-libs" && p.version == "1:3.0.7-24.el9")
        #expect(p.sourceName == "openssl" && p.architecture == "x86_64" && p.license == "GPLv3+")
        #expect(p.sourceRPM == "openssl-3.0.7-24.el9.src.rpm")
        #expect(p.purl == "pkg:rpm/openssl-libs@3.0.7-24.el9?arch=x86_64&epoch=1&upstream=openssl-3.0.7-24.el9.src.rpm")
        // No epoch: VERSION-RELEASE, as Syft prints it.
        let bash = try #require(try RpmHeader(RpmHeaderWriter.package().blob()).package(location: Self.path))
        #expect(bash.version == "5.1.8-6.el9" && bash.sourceName == "bash")
        // rpm's imported signing keys are not packages.
        #expect(try RpmHeader(RpmHeaderWriter.package(name: "gpg-pubkey", version: "fd431d51", release: "4ae0493b").blob())
            .package(location: Self.path) == nil)
    }

    @Test func sourcePackageNamesComeFromSourceRPM() {
        #expect(RpmHeader.sourceName("openssl-3.0.7-24.el9.src.rpm") == "openssl")
        #expect(RpmHeader.sourceName("python3-libs-3.9.18-1.el9_3.src.rpm") == "python3-libs")
        #expect(RpmHeader.sourceName("kernel-5.14.0-362.el9.nosrc.rpm") == "kernel")
        #expect(RpmHeader.sourceName("garbage") == nil)
        #expect(RpmHeader.sourceName("-1-2.src.rpm") == nil)
        #expect(RpmHeader.sourceName(".rpm") == nil)
    }

    /// Every way a header can lie gives an error (a problem on the database), never a crash or
    /// a read outside the blob.
    @Test func hostileHeadersAreRefused() throws {
        let good = RpmHeaderWriter.package()
        let blob = good.blob()
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("seven bytes", Array(blob.prefix(7))),
            ("no entries", RpmHeaderWriter().blob()),
            ("truncated in the index", Array(blob.prefix(8 + 16 * 3 + 5))),
            ("truncated in the data", Array(blob.dropLast(3))),
            ("huge entry count", good.blob(entryCount: 0xFFFF_FFFF)),
            ("entry count past rpm's bound", good.blob(entryCount: 0x10000)),
            ("entry count larger than the blob", good.blob(entryCount: 1000)),
            ("huge data length", good.blob(dataLength: 0xFFFF_FFF0)),
            ("data length past the blob", good.blob(dataLength: UInt32(good.data.count + 1))),
        ]
        func mutate(_ change: (inout RpmHeaderWriter) -> Void) -> [UInt8] { var w = good; change(&w); return w.blob() }
        let nameEntry = good.entries.firstIndex { $0.tag == 1000 }!
        let versionEntry = good.entries.firstIndex { $0.tag == 1001 }!
        cases += [
            ("NAME offset outside the data", mutate { $0.entries[nameEntry].offset = 0x7FFF_FFFF }),
            ("NAME offset at the end of the data", mutate { $0.entries[nameEntry].offset = UInt32($0.data.count) }),
            ("NAME count zero", mutate { $0.entries[nameEntry].count = 0 }),
            ("NAME count huge", mutate { $0.entries[nameEntry].count = 0xFFFF_FFFF }),
            ("NAME of type INT32", mutate { $0.entries[nameEntry].type = 4 }),
            ("NAME of an unknown type", mutate { $0.entries[nameEntry].type = 0xFFFF }),
            ("VERSION not terminated", mutate { w in
                w.entries[versionEntry].offset = UInt32(w.data.count); w.data += Array("1.0".utf8)
            }),
            ("EPOCH as a string", mutate { $0.string(1003, "1") }),
            ("EPOCH past the data", mutate { w in
                w.int32(1003, 1); w.entries[w.entries.count - 1].offset = UInt32(w.data.count - 2)
            }),
            ("EPOCH misaligned", mutate { w in
                w.int32(1003, 1); w.entries[w.entries.count - 1].offset = UInt32(w.data.count - 3)
            }),
            ("no NAME", mutate { $0.entries.remove(at: nameEntry) }),
            ("empty VERSION", mutate { w in w.entries[versionEntry].offset = UInt32(w.data.count); w.data += [0] }),
        ]
        for (what, bytes) in cases {
            #expect(throws: RpmHeader.Problem.self, "\(what)") {
                let h = try RpmHeader(bytes)
                _ = try h.package(location: Self.path)
            }
        }
        // Random bytes never crash the parser (errors are fine).
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var b = blob
            for _ in 0..<Int.random(in: 1...8, using: &rng) { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
            _ = try? RpmHeader(b).package(location: Self.path)
        }
    }

    @Test func aDatabaseOfHeadersIsCatalogedAndBadRowsAreProblems() throws {
        let db = try SQLiteBytes.make(SQLiteBytes.schema, blobs: [
            RpmHeaderWriter.package().blob(),
            [0, 0, 0, 1],
            RpmHeaderWriter.package(name: "glibc", version: "2.34", release: "83.el9", sourceRPM: "glibc-2.34-83.el9.src.rpm").blob(),
            RpmHeaderWriter.package().blob(entryCount: 0xFFFF_FFFF),
        ])
        let file = RpmDatabase.catalog(db, path: Self.path)
        #expect(file.packages.map { "\($0.name)@\($0.version)" } == ["bash@5.1.8-6.el9", "glibc@2.34-83.el9"])
        #expect(file.problems.count == 1)
        #expect(file.problems.first?.reason.hasPrefix("2 unreadable header(s) skipped: package 2: header shorter than 8 bytes; package 4:") == true,
                "\(file.problems)")
    }

    @Test func hostileDatabasesAreProblemsNotCrashes() throws {
        let good = try SQLiteBytes.make(SQLiteBytes.schema, blobs: [RpmHeaderWriter.package().blob()])
        #expect(RpmDatabase.catalog(good, path: Self.path).packages.count == 1)
        var cases: [(String, [UInt8], String)] = [
            ("empty", [], "not a SQLite database"),
            ("text", Array("hello, world".utf8), "not a SQLite database"),
            ("no Packages table", try SQLiteBytes.make("CREATE TABLE Other (x);"), "no readable Packages table"),
            ("Packages without a blob column", try SQLiteBytes.make("CREATE TABLE Packages (hnum INTEGER);"), "no readable Packages table"),
            ("truncated", Array(good.prefix(good.count / 2)), ""),
            ("only the header page", Array(good.prefix(100)), ""),
        ]
        // Text and numbers where blobs belong are unreadable headers, not crashes.
        let typed = try SQLiteBytes.make("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob); INSERT INTO Packages VALUES (1, 'text'), (2, 42), (3, NULL);")
        cases.append(("values of the wrong type", typed, "3 unreadable header(s)"))
        // The file's own schema is untrusted (review, high): a view over an endless recursive
        // query, a virtual table, generated columns; none is read, none runs unbounded.
        cases.append(("Packages as an endless view", try SQLiteBytes.make("""
            CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
            SELECT max(x) AS hnum, zeroblob(10) AS blob FROM c;
            """), "is a view"))
        cases.append(("Packages with a generated column", try SQLiteBytes.make(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, n INTEGER, blob BLOB GENERATED ALWAYS AS (zeroblob(n)) VIRTUAL);"
            + "INSERT INTO Packages (hnum, n) VALUES (1, 1000000), (2, 1000000);"), "generated or hidden columns"))
        cases.append(("Packages as a virtual table", try SQLiteBytes.make(
            "CREATE VIRTUAL TABLE Packages USING fts4(hnum, blob);"), "virtual table"))
        var corrupt = good
        for k in stride(from: 100, to: corrupt.count, by: 7) { corrupt[k] ^= 0x5A }
        cases.append(("corrupt pages", corrupt, ""))
        for (what, bytes, reason) in cases {
            let file = RpmDatabase.catalog(bytes, path: Self.path)
            #expect(!file.problems.isEmpty, "\(what)")
            #expect(file.problems.allSatisfy { $0.path == Self.path }, "\(what)")
            if !reason.isEmpty { #expect(file.problems.contains { $0.reason.contains(reason) }, "\(what): \(file.problems)") }
        }
    }

    /// A plain table whose rows make a query long (a self-join of 10^4 rows read through the
    /// budget would be 10^8 steps): the step budget interrupts what the schema check cannot see.
    @Test func aQueryPastItsStepBudgetIsInterrupted() throws {
        let bytes = try SQLiteBytes.make(SQLiteBytes.schema, blobs: [RpmHeaderWriter.package().blob()])
        var db: OpaquePointer?
        #expect(sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, nil) == SQLITE_OK)
        defer { sqlite3_close(db) }
        let budget = StepBudget(callbacks: 10, deadline: .now + .seconds(60))
        sqlite3_progress_handler(db, 1000, { context in
            Unmanaged<StepBudget>.fromOpaque(context!).takeUnretainedValue().spend() ? 0 : 1
        }, Unmanaged.passUnretained(budget).toOpaque())
        let rc = withExtendedLifetime(budget) {
            sqlite3_exec(db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c", nil, nil, nil)
        }
        #expect(rc == SQLITE_INTERRUPT)
        #expect(RpmDatabase.catalog(bytes, path: Self.path).packages.count == 1)
    }

    /// A database written by rpm itself (scripts/make-test-rpmdb: rpmbuild and `rpm --justdb`),
    /// in a layer with a Rocky Linux os-release, through the walker and the image inventory.
    @Test func aRealRpmDatabaseInALayer() async throws {
        let db = try RealRpmDB.bytes()
        var t = TarWriter()
        t.file("etc/os-release", "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n")
        t.file("usr/lib/sysimage/rpm/rpmdb.sqlite", db)
        let index = try await walk(try Compress.gzip(t.finished), chunk: 65_536)
        #expect(index.complete && index.problems.isEmpty, "\(index.problemText)")
        #expect(index.summary == ["rpm:berth-demo@2:1.4.2-3.el9", "rpm:openssl-libs@1:3.0.7-24.el9", "rpm:openssl@1:3.0.7-24.el9",
                                  "rpm:zlib@1.2.11-40.el9"])
        let inventory = ImageInventory(layers: [index])
        #expect(inventory.complete, "\(inventory.problemText)")
        let libs = try #require(inventory.packages.first { $0.name == "openssl-libs" })
        #expect(libs.sourceName == "openssl" && libs.architecture == "x86_64" && libs.license == "ASL 2.0" && libs.vendor == "Berth Tests")
        #expect(libs.purl == "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=x86_64&distro=rocky-9.3&epoch=1&upstream=openssl-3.0.7-24.el9.src.rpm")
        let installed = inventory.installedPackages().first { $0.name == "openssl-libs" }
        #expect(installed == InstalledPackage(ecosystem: "Rocky Linux", name: "openssl-libs", version: "1:3.0.7-24.el9",
                                              sourceName: "openssl", release: "9"))

        // Over the database cap: a problem on the file and a partial inventory.
        var limits = LayerLimits()
        limits.maxDatabaseBytes = db.count - 1
        let capped = ImageInventory(layers: [try await walk(t.finished, limits: limits)])
        #expect(!capped.complete && capped.packages.isEmpty)
        #expect(capped.problemText.contains("over the \(db.count - 1)-byte limit"), "\(capped.problemText)")
    }

    /// Advisories naming the binary package (OSV's Rocky and Alma records) and the source
    /// package both match, once each, by rpm's version order and the release's major version.
    @Test func rpmPackagesMatchAdvisoriesByBinaryOrSourceName() throws {
        func advisory(_ id: String, _ ecosystem: String, _ name: String, fixed: String) -> Advisory {
            Advisory(id: id, source: .osv, affected: [AffectedPackage(ecosystem: ecosystem, name: name,
                                                        ranges: [AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed(fixed)])])])
        }
        let index = AdvisoryIndex([
            advisory("RLSA-1", "Rocky Linux:9", "openssl-libs", fixed: "1:3.0.7-25.el9"),
            advisory("RLSA-2", "Rocky Linux:9", "openssl", fixed: "1:3.0.7-27.el9"),
            advisory("RLSA-3", "Rocky Linux:9", "openssl-libs", fixed: "1:3.0.7-24.el9"),
            advisory("RLSA-4", "Rocky Linux:8", "openssl-libs", fixed: "1:3.0.7-99.el8"),
            advisory("ALSA-1", "AlmaLinux:9", "openssl-libs", fixed: "1:3.0.7-99.el9"),
        ])
        let libs = InstalledPackage(ecosystem: "Rocky Linux", name: "openssl-libs", version: "1:3.0.7-24.el9", sourceName: "openssl", release: "9")
        #expect(index.matches(for: libs).matches.map(\.advisory.id).sorted() == ["RLSA-1", "RLSA-2"])
        #expect(AdvisoryIndex.packageKeys(of: [libs]).map(\.name) == ["openssl", "openssl-libs"])
        #expect(ImageInventory.rpmEcosystem(OSRelease(id: "almalinux")) == "AlmaLinux")
        #expect(ImageInventory.rpmEcosystem(OSRelease(id: "ol", idLike: ["fedora"])) == "Fedora")
        #expect(ImageInventory.rpmEcosystem(OSRelease(id: "rhel")) == "Red Hat")
    }
}

/// The database scripts/make-test-rpmdb writes with Debian's rpm tools, made once per run.
enum RealRpmDB {
    static let made: Result<[UInt8], any Error> = Result {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/make-test-rpmdb")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("berth-rpmdb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [script.path, dir.path]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let message = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw SQLiteBytes.Failure(message: "scripts/make-test-rpmdb failed (is Debian's rpm installed? scripts/install-test-deps): "
                                      + String(decoding: message, as: UTF8.self))
        }
        return Array(try Data(contentsOf: dir.appendingPathComponent("rpmdb.sqlite")))
    }

    static func bytes() throws -> [UInt8] { try made.get() }
}
