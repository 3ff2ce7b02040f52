import Foundation
import GRDBSQLite

/// The rpm package database of an image, `rpmdb.sqlite` (`var/lib/rpm/` on RHEL 9 and its
/// rebuilds, `usr/lib/sysimage/rpm/` on Fedora): a SQLite database whose `Packages` table holds
/// one rpm header blob per installed package.
///
/// The file is handed over as bytes (read under `ScanLimits.maxDatabaseBytes` by the walker) and
/// opened through `sqlite3_deserialize` as a read-only in-memory database: nothing is written to
/// disk and no path from the layer reaches SQLite. SQLite checks the file's structure itself; the
/// header blobs are parsed by `RpmHeader`, every offset and count checked.
enum RpmDatabase {
    /// Packages read from one database at most (a real one has a few thousand).
    static let maxPackages = 200_000

    static func catalog(_ bytes: [UInt8], path: String) -> IndexedFile {
        var file = IndexedFile()
        func problem(_ reason: String) -> IndexedFile {
            file.problems.append(InventoryProblem(path: path, reason: reason))
            return file
        }
        guard bytes.count >= 100, bytes.starts(with: Array("SQLite format 3\u{0}".utf8)) else {
            return problem("not a SQLite database")
        }
        var db: OpaquePointer?
        guard sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY | SQLITE_OPEN_NOMUTEX, nil) == SQLITE_OK, let db else {
            sqlite3_close(db)
            return problem("SQLite could not open an in-memory database")
        }
        defer { sqlite3_close(db) }
        // No hostile file may make a single value larger than the file itself, or a query run for long.
        sqlite3_limit(db, SQLITE_LIMIT_LENGTH, Int32(clamping: max(bytes.count, 1 << 20)))
        sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0)

        // SQLite owns (and frees) the copy; rpm leaves its database in WAL mode, which an
        // in-memory database cannot use, so the copy says "rollback journal" instead (the file
        // format version bytes 18 and 19: 2 = WAL, 1 = legacy).
        let size = bytes.count
        guard let memory = sqlite3_malloc64(sqlite3_uint64(size)) else { return problem("out of memory for a \(size)-byte database") }
        let buffer = memory.bindMemory(to: UInt8.self, capacity: size)
        bytes.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: size) }
        if buffer[18] == 2 { buffer[18] = 1 }
        if buffer[19] == 2 { buffer[19] = 1 }
        let flags = UInt32(SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_READONLY)
        guard sqlite3_deserialize(db, "main", buffer, sqlite3_int64(size), sqlite3_int64(size), flags) == SQLITE_OK else {
            return problem("SQLite could not read the database: \(message(db))")
        }

        // The file brings its own schema (review, high): `Packages` could be a view over an endless
        // recursive query, a virtual table, or have generated columns computing megabytes per row.
        // Only a plain table is read, and every statement runs under a budget of VM steps and a
        // deadline (SQLite interrupts it), with no sort: nothing the file says runs unbounded.
        let budget = StepBudget(callbacks: Self.maxProgressCallbacks, deadline: .now + Self.maxQueryTime)
        sqlite3_progress_handler(db, 1000, { context in
            guard let context else { return 1 }
            return Unmanaged<StepBudget>.fromOpaque(context).takeUnretainedValue().spend() ? 0 : 1
        }, Unmanaged.passUnretained(budget).toOpaque())
        defer { sqlite3_progress_handler(db, 0, nil, nil) }
        if let refusal = withExtendedLifetime(budget, { plainPackagesTable(db) }) { return problem(refusal) }

        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, "SELECT hnum, blob FROM Packages", -1, &statement, nil) == SQLITE_OK, let statement else {
            return problem("no readable Packages table: \(message(db))")
        }
        defer { sqlite3_finalize(statement) }
        var numbered: [(Int64, InventoryPackage)] = []
        var bad: [String] = []
        var badCount = 0
        var rows = 0
        while true {
            let rc = withExtendedLifetime(budget) { sqlite3_step(statement) }
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else {
                file.problems.append(InventoryProblem(path: path, reason: "reading the Packages table stopped: \(message(db))"))
                break
            }
            rows += 1
            guard rows <= maxPackages else {
                file.problems.append(InventoryProblem(path: path, reason: "more than \(maxPackages) packages; the rest not read"))
                break
            }
            let hnum = sqlite3_column_int64(statement, 0)
            let count = Int(sqlite3_column_bytes(statement, 1))
            let blob: [UInt8]
            if count > 0, let p = sqlite3_column_blob(statement, 1) {
                blob = Array(UnsafeRawBufferPointer(start: p, count: count))
            } else {
                blob = []
            }
            do {
                let header = try RpmHeader(blob)
                if let p = try header.package(location: path) { numbered.append((hnum, p)) }
            } catch {
                badCount += 1
                if bad.count < 5 { bad.append("package \(hnum): \(error)") }
            }
        }
        // In rpm's own order (hnum), sorted here rather than by the file's query plan.
        file.packages.append(contentsOf: numbered.sorted { $0.0 < $1.0 }.map(\.1))
        if badCount > 0 {
            let more = badCount > bad.count ? " (and \(badCount - bad.count) more)" : ""
            file.problems.append(InventoryProblem(path: path, reason: "\(badCount) unreadable header(s) skipped: \(bad.joined(separator: "; "))\(more)"))
        }
        return file
    }

    /// VM-step budget of one database's queries (progress callbacks, each 1,000 steps: 10^8
    /// steps, far above a real database of thousands of rows) and their deadline.
    static let maxProgressCallbacks = 100_000
    static let maxQueryTime: Duration = .seconds(5)

    /// Nil when `Packages` is a plain table (not a view, not virtual, no generated or hidden
    /// column); else why it is not read.
    static func plainPackagesTable(_ db: OpaquePointer) -> String? {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(db, "SELECT type, rootpage FROM sqlite_schema WHERE name = 'Packages' COLLATE NOCASE",
                                 -1, &statement, nil) == SQLITE_OK, let statement else {
            return "no readable schema: \(message(db))"
        }
        defer { sqlite3_finalize(statement) }
        guard sqlite3_step(statement) == SQLITE_ROW else { return "no readable Packages table: \(message(db))" }
        let type = sqlite3_column_text(statement, 0).map { String(cString: $0) } ?? ""
        // a virtual table (like a view) has no b-tree of its own: root page 0
        let rootPage = sqlite3_column_int64(statement, 1)
        guard type == "table", rootPage > 0 else {
            return "the Packages table is a \(type == "table" ? "virtual table" : type.isEmpty ? "missing table" : type), not read"
        }
        var columns: OpaquePointer?
        guard sqlite3_prepare_v2(db, "SELECT hidden FROM pragma_table_xinfo('Packages')", -1, &columns, nil) == SQLITE_OK, let columns else {
            return "no readable Packages columns: \(message(db))"
        }
        defer { sqlite3_finalize(columns) }
        while true {
            let rc = sqlite3_step(columns)
            if rc == SQLITE_DONE { return nil }
            guard rc == SQLITE_ROW else { return "no readable Packages columns: \(message(db))" }
            if sqlite3_column_int64(columns, 0) != 0 { return "the Packages table has generated or hidden columns, not read" }
        }
    }

    static func message(_ db: OpaquePointer) -> String {
        guard let m = sqlite3_errmsg(db) else { return "unknown error" }
        return TextLines.clip(String(cString: m))
    }
}

/// One rpm header as the database stores it (without the lead and the 8-byte magic of a
/// package file): the index entry count and the data length (32-bit big-endian), that many
/// 16-byte index entries (tag, type, offset into the data, count), then the data.
///
/// Everything is untrusted: the counts are bounded, every entry's offset and extent checked
/// against the data, its type against the tag's, and strings must end inside the data.
struct RpmHeader {
    struct Problem: Error, CustomStringConvertible, Equatable { var description: String }

    enum Tag: UInt32 {
        case name = 1000, version = 1001, release = 1002, epoch = 1003, vendor = 1011, license = 1014, arch = 1022, sourceRPM = 1044
    }
    enum DataType: UInt32 { case null = 0, char, int8, int16, int32, int64, string, bin, stringArray, i18nString }

    /// rpm's own bounds (`hdrchkTags`, `hdrchkData`): at most 65535 entries and 256 MiB of data.
    static let maxEntries = 0xFFFF
    static let maxData = 256 << 20

    struct Entry { var type: UInt32; var offset: Int; var count: Int }
    let data: ArraySlice<UInt8>
    var entries: [UInt32: Entry] = [:]

    init(_ blob: [UInt8]) throws {
        guard blob.count >= 8 else { throw Problem(description: "header shorter than 8 bytes") }
        let il = Int(Self.be32(blob, 0)), dl = Int(Self.be32(blob, 4))
        guard il >= 1, il <= Self.maxEntries else { throw Problem(description: "\(il) index entries (allowed: 1 to \(Self.maxEntries))") }
        guard dl <= Self.maxData else { throw Problem(description: "\(dl) bytes of data (over \(Self.maxData))") }
        let dataStart = 8 + il * 16
        guard dataStart <= blob.count, dl <= blob.count - dataStart else {
            throw Problem(description: "\(il) entries and \(dl) bytes of data do not fit in \(blob.count) bytes")
        }
        data = blob[dataStart..<(dataStart + dl)]
        for k in 0..<il {
            let at = 8 + k * 16
            let tag = Self.be32(blob, at), type = Self.be32(blob, at + 4)
            let offset = Int(Self.be32(blob, at + 8)), count = Int(Self.be32(blob, at + 12))
            // Only the tags read here are checked and kept; the region tags and the file lists are skipped.
            guard Tag(rawValue: tag) != nil else { continue }
            guard offset < dl else { throw Problem(description: "tag \(tag): offset \(offset) outside the \(dl)-byte data") }
            guard count >= 1, count <= dl else { throw Problem(description: "tag \(tag): count \(count)") }
            if entries[tag] == nil { entries[tag] = Entry(type: type, offset: offset, count: count) }
        }
    }

    static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    /// A string tag (STRING, or the first of an I18NSTRING or STRING_ARRAY); nil when absent.
    func string(_ tag: Tag) throws -> String? {
        guard let e = entries[tag.rawValue] else { return nil }
        guard let type = DataType(rawValue: e.type), type == .string || type == .i18nString || type == .stringArray else {
            throw Problem(description: "tag \(tag.rawValue) has type \(e.type), not a string")
        }
        let start = data.startIndex + e.offset
        guard let end = data[start...].firstIndex(of: 0) else {
            throw Problem(description: "tag \(tag.rawValue): string not terminated inside the data")
        }
        return TextLines.clip(String(decoding: data[start..<end], as: UTF8.self))
    }

    /// An INT32 tag's first value; nil when absent.
    func int32(_ tag: Tag) throws -> UInt32? {
        guard let e = entries[tag.rawValue] else { return nil }
        guard e.type == DataType.int32.rawValue else { throw Problem(description: "tag \(tag.rawValue) has type \(e.type), not INT32") }
        guard e.offset % 4 == 0, e.offset + 4 <= data.count else { throw Problem(description: "tag \(tag.rawValue): INT32 outside the data") }
        let at = data.startIndex + e.offset
        return UInt32(data[at]) << 24 | UInt32(data[at + 1]) << 16 | UInt32(data[at + 2]) << 8 | UInt32(data[at + 3])
    }

    /// The installed package this header describes; nil for rpm's `gpg-pubkey` pseudo-packages
    /// (imported signing keys, not software).
    func package(location: String) throws -> InventoryPackage? {
        guard let name = try string(.name), !name.isEmpty else { throw Problem(description: "no NAME") }
        guard let version = try string(.version), !version.isEmpty else { throw Problem(description: "no VERSION") }
        if name == "gpg-pubkey" { return nil }
        let release = try string(.release)
        let epoch = try int32(.epoch)
        let arch = try string(.arch)
        let sourceRPM = try string(.sourceRPM)
        let license = try string(.license), vendor = try string(.vendor)
        var evr = version
        if let release, !release.isEmpty { evr += "-" + release }
        if let epoch { evr = "\(epoch):" + evr }
        let source = sourceRPM.flatMap(Self.sourceName)
        return InventoryPackage(type: .rpm, name: name, version: evr, sourceName: source ?? name,
                                architecture: arch.flatMap { $0.isEmpty ? nil : $0 }, locations: [location],
                                license: license.flatMap { $0.isEmpty ? nil : $0 }, vendor: vendor.flatMap { $0.isEmpty ? nil : $0 },
                                sourceRPM: sourceRPM.flatMap { $0.isEmpty ? nil : $0 })
    }

    /// "openssl-3.0.7-24.el9.src.rpm" → "openssl": the name is what precedes the last two `-`.
    static func sourceName(_ sourceRPM: String) -> String? {
        var s = Substring(sourceRPM)
        guard s.hasSuffix(".rpm") else { return nil }
        s = s.dropLast(4)
        if let dot = s.lastIndex(of: ".") { s = s[..<dot] } // the architecture (src, nosrc)
        guard let d1 = s.lastIndex(of: "-") else { return nil }
        guard let d2 = s[..<d1].lastIndex(of: "-") else { return nil }
        let name = s[..<d2]
        return name.isEmpty ? nil : String(name)
    }
}

/// What one database's queries may still spend (the progress handler's context; used by one thread).
final class StepBudget {
    var callbacks: Int
    let deadline: ContinuousClock.Instant

    init(callbacks: Int, deadline: ContinuousClock.Instant) {
        self.callbacks = callbacks
        self.deadline = deadline
    }

    /// False once the budget or the time is spent: SQLite then interrupts the statement.
    func spend() -> Bool {
        callbacks -= 1
        return callbacks > 0 && ContinuousClock.now < deadline
    }
}
