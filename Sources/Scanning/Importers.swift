import Foundation

/// Something in a feed that could not be imported. Importers skip the broken record, note one
/// of these and go on with the rest; only unreadable input as a whole throws.
public struct ImportProblem: Error, Equatable, Sendable, CustomStringConvertible {
    /// Which record: a file name, zip entry, or "package/CVE" path inside a feed.
    public let location: String
    public let reason: String
    public init(location: String, reason: String) {
        self.location = location.count > 200 ? String(location.prefix(200)) + "…" : location
        self.reason = reason
    }
    public var description: String { "\(location): \(reason)" }
}

public struct ImportResult: Sendable {
    public var advisories: [Advisory] = []
    public var problems: [ImportProblem] = []
    public init() {}
}

public enum ImportLimits {
    /// Largest single OSV record accepted.
    public static let maxRecordBytes = 8 << 20
    /// Largest whole-feed document (Debian tracker JSON, Alpine secdb, zip archive).
    public static let maxFeedBytes = 512 << 20
    /// Most files read from one directory or zip archive.
    public static let maxRecords = 2_000_000
    /// Longest identifier, package name or version string kept from a feed.
    public static let maxFieldLength = 1024
    /// Longest summary or description kept from a feed.
    public static let maxTextLength = 64 << 10
    /// Most bytes inflated from one zip archive, all entries together (the zip-bomb bound).
    public static let maxInflatedBytes = 2 << 30
}

/// Parses JSON, turning every failure (invalid UTF-8, nesting too deep, not JSON) into one
/// error with a short reason.
func parseJSON(_ data: Data, location: String) throws -> Any {
    try checkNesting(data, location: location)
    do {
        return try JSONSerialization.jsonObject(with: data, options: [])
    } catch {
        throw ImportProblem(location: location, reason: "not valid JSON")
    }
}

public enum JSONLimits {
    /// Deepest nesting of arrays and objects accepted. Advisory formats need five or six
    /// levels; free-form fields (`database_specific`) get room to spare, and hostile input
    /// (100,000 brackets) is refused before a recursive parser sees it.
    public static let maxDepth = 64
}

/// Refuses JSON nested deeper than `JSONLimits.maxDepth`, counting brackets outside strings.
func checkNesting(_ data: Data, location: String) throws {
    var depth = 0, inString = false, escaped = false
    for byte in data {
        if inString {
            if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "["), UInt8(ascii: "{"):
            depth += 1
            if depth > JSONLimits.maxDepth { throw ImportProblem(location: location, reason: "nested deeper than \(JSONLimits.maxDepth) levels") }
        case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
        default: break
        }
    }
}

/// Typed access to a JSON object that reports wrong types as import problems.
struct JSONObject {
    let dict: [String: Any]
    let location: String

    init(_ value: Any?, location: String) throws {
        guard let d = value as? [String: Any] else { throw ImportProblem(location: location, reason: "expected a JSON object") }
        dict = d; self.location = location
    }

    func string(_ key: String, limit: Int = ImportLimits.maxFieldLength) throws -> String? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        guard let s = v as? String else { throw ImportProblem(location: location, reason: "\"\(key)\" must be a string") }
        guard s.utf8.count <= limit else { throw ImportProblem(location: location, reason: "\"\(key)\" is too long") }
        return s
    }

    func requiredString(_ key: String) throws -> String {
        guard let s = try string(key), !s.isEmpty else { throw ImportProblem(location: location, reason: "\"\(key)\" is missing") }
        return s
    }

    func strings(_ key: String) throws -> [String] {
        guard let v = dict[key], !(v is NSNull) else { return [] }
        guard let a = v as? [Any] else { throw ImportProblem(location: location, reason: "\"\(key)\" must be an array of strings") }
        return try a.map {
            guard let s = $0 as? String else { throw ImportProblem(location: location, reason: "\"\(key)\" must be an array of strings") }
            guard s.utf8.count <= ImportLimits.maxFieldLength else { throw ImportProblem(location: location, reason: "an entry of \"\(key)\" is too long") }
            return s
        }
    }

    func objects(_ key: String) throws -> [JSONObject] {
        guard let v = dict[key], !(v is NSNull) else { return [] }
        guard let a = v as? [Any] else { throw ImportProblem(location: location, reason: "\"\(key)\" must be an array of objects") }
        return try a.enumerated().map { try JSONObject($0.element, location: "\(location)/\(key)[\($0.offset)]") }
    }

    func object(_ key: String) throws -> JSONObject? {
        guard let v = dict[key], !(v is NSNull) else { return nil }
        return try JSONObject(v, location: "\(location)/\(key)")
    }
}

/// Reads a file no larger than `limit`, refusing larger ones before reading them.
func readFile(_ url: URL, limit: Int) throws -> Data {
    let location = url.lastPathComponent
    guard let handle = try? FileHandle(forReadingFrom: url) else { throw ImportProblem(location: location, reason: "cannot be read") }
    defer { try? handle.close() }
    let data = (try? handle.read(upToCount: limit + 1)) ?? nil
    guard let data else { throw ImportProblem(location: location, reason: "cannot be read") }
    if data.count > limit { throw ImportProblem(location: location, reason: "larger than \(limit) bytes") }
    return data
}

// MARK: - OSV

/// Imports OSV records (https://ossf.github.io/osv-schema/): one record, a directory of
/// `*.json` records, or an ecosystem's `all.zip` export.
public enum OSVImporter {
    /// Parses one OSV record.
    public static func record(_ data: Data, location: String = "record") throws -> Advisory {
        guard data.count <= ImportLimits.maxRecordBytes else { throw ImportProblem(location: location, reason: "record too large") }
        let o = try JSONObject(parseJSON(data, location: location), location: location)
        return try record(o)
    }

    static func record(_ o: JSONObject) throws -> Advisory {
        let id = try o.requiredString("id")
        var severities = try o.objects("severity").map(severity)
        if let db = o.dict["database_specific"] as? [String: Any], let word = db["severity"] as? String,
           Severity.Level(word: word) != .unknown {
            severities.append(Severity(type: "database_specific", level: Severity.Level(word: word)))
        }
        let affected = try o.objects("affected").map { a -> AffectedPackage in
            guard let package = try a.object("package") else { throw ImportProblem(location: a.location, reason: "\"package\" is missing") }
            let ecosystem = try package.requiredString("ecosystem")
            let name = try package.requiredString("name")
            let ranges = try a.objects("ranges").map(range)
            let versions = try a.strings("versions")
            let own = try a.objects("severity").map(severity).first
            return AffectedPackage(ecosystem: ecosystem, name: name, release: Ecosystem.release(of: ecosystem),
                                   ranges: ranges, versions: versions, severity: own)
        }
        return Advisory(id: id, aliases: try o.strings("aliases"), summary: try o.string("summary", limit: ImportLimits.maxTextLength), source: .osv,
                        withdrawn: try o.string("withdrawn"), severities: severities, affected: affected)
    }

    static func severity(_ s: JSONObject) throws -> Severity {
        Severity.fromOSV(type: try s.requiredString("type"), score: try s.requiredString("score"))
    }

    static func range(_ r: JSONObject) throws -> AffectedRange {
        let typeName = try r.requiredString("type")
        guard let kind = AffectedRange.Kind(rawValue: typeName) else {
            throw ImportProblem(location: r.location, reason: "unknown range type \"\(typeName.prefix(32))\"")
        }
        let events = try r.objects("events").map { e -> AffectedRange.Event in
            guard e.dict.count == 1, let (key, _) = e.dict.first else {
                throw ImportProblem(location: e.location, reason: "an event has exactly one of introduced, fixed, last_affected, limit")
            }
            let v = try e.requiredString(key)
            switch key {
            case "introduced": return .introduced(v)
            case "fixed": return .fixed(v)
            case "last_affected": return .lastAffected(v)
            case "limit": return .limit(v)
            default: throw ImportProblem(location: e.location, reason: "unknown event \"\(key.prefix(32))\"")
            }
        }
        if !events.contains(where: { if case .introduced = $0 { return true } else { return false } }) {
            throw ImportProblem(location: r.location, reason: "a range needs an \"introduced\" event")
        }
        return AffectedRange(kind: kind, events: events, repository: try r.string("repo"))
    }

    /// Imports a single record file, a directory of records or an `all.zip` export.
    public static func importPath(_ url: URL) throws -> ImportResult {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw ImportProblem(location: url.lastPathComponent, reason: "does not exist")
        }
        var result = ImportResult()
        if isDirectory.boolValue {
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: url.path) } catch {
                throw ImportProblem(location: url.lastPathComponent, reason: "cannot list directory")
            }
            let json = names.filter { $0.hasSuffix(".json") }.sorted()
            if json.count > ImportLimits.maxRecords { throw ImportProblem(location: url.lastPathComponent, reason: "too many records") }
            for name in json {
                do {
                    result.advisories.append(try record(readFile(url.appendingPathComponent(name), limit: ImportLimits.maxRecordBytes), location: name))
                } catch let p as ImportProblem {
                    result.problems.append(ImportProblem(location: name, reason: p.reason))
                }
            }
        } else if url.pathExtension.lowercased() == "zip" {
            result = try importZip(readFile(url, limit: ImportLimits.maxFeedBytes), location: url.lastPathComponent)
        } else {
            result.advisories.append(try record(readFile(url, limit: ImportLimits.maxRecordBytes), location: url.lastPathComponent))
        }
        return result
    }
    /// Imports an `all.zip` export held in memory: every `*.json` entry is a record. Inflated
    /// bytes are bounded per record (`maxRecordBytes`) and for the whole archive
    /// (`maxInflatedBytes`), so a zip bomb ends the import with an error.
    public static func importZip(_ data: Data, location: String = "all.zip") throws -> ImportResult {
        guard data.count <= ImportLimits.maxFeedBytes else { throw ImportProblem(location: location, reason: "feed too large") }
        let archive = try ZipArchive(data)
        let entries = archive.entries.filter { $0.name.hasSuffix(".json") }
        if entries.count > ImportLimits.maxRecords { throw ImportProblem(location: location, reason: "too many records") }
        var result = ImportResult()
        var inflated = 0
        for entry in entries {
            // Counted by the sizes the directory declares (no entry inflates past its own), so the
            // bound holds before any work is done on the entry.
            if entry.size <= ImportLimits.maxRecordBytes {
                guard entry.size <= ImportLimits.maxInflatedBytes - inflated else {
                    throw ImportProblem(location: location, reason: "inflates to more than \(ImportLimits.maxInflatedBytes) bytes")
                }
                inflated += entry.size
            }
            do {
                let data = try archive.contents(of: entry, limit: ImportLimits.maxRecordBytes)
                result.advisories.append(try record(data, location: entry.name))
            } catch let p as ImportProblem {
                result.problems.append(ImportProblem(location: entry.name, reason: p.reason))
            }
        }
        return result
    }
}

// MARK: - Debian security tracker

/// Imports the Debian security tracker's JSON
/// (`https://security-tracker.debian.org/tracker/data/json`):
/// `{source-package: {CVE-id: {"releases": {codename: {"status", "fixed_version", "urgency", "nodsa", …}}}}}`.
///
/// `resolved` with a fixed version affects versions below it (fixed version `0`: never
/// affected); `open` and `undetermined` affect every version. Advisories are per CVE and source
/// package, with one affected entry per release.
public enum DebianTrackerImporter {
    public static func importData(_ data: Data) throws -> ImportResult {
        guard data.count <= ImportLimits.maxFeedBytes else { throw ImportProblem(location: "tracker", reason: "feed too large") }
        return try importParsed(JSONObject(parseJSON(data, location: "tracker"), location: "tracker"))
    }

    static func importParsed(_ top: JSONObject) throws -> ImportResult {
        var result = ImportResult()
        for package in top.dict.keys.sorted() {
            let packageLocation = String(package.prefix(100))
            guard let cves = top.dict[package] as? [String: Any] else {
                result.problems.append(ImportProblem(location: packageLocation, reason: "expected an object of CVEs"))
                continue
            }
            for cve in cves.keys.sorted() {
                let location = "\(packageLocation)/\(cve.prefix(100))"
                do {
                    if let advisory = try advisory(package: package, id: cve, JSONObject(cves[cve], location: location)) {
                        result.advisories.append(advisory)
                    }
                } catch let p as ImportProblem {
                    result.problems.append(p)
                }
            }
        }
        return result
    }

    static func advisory(package: String, id: String, _ o: JSONObject) throws -> Advisory? {
        guard package.utf8.count <= ImportLimits.maxFieldLength, id.utf8.count <= ImportLimits.maxFieldLength else {
            throw ImportProblem(location: o.location, reason: "name too long")
        }
        guard let releases = try o.object("releases") else { throw ImportProblem(location: o.location, reason: "\"releases\" is missing") }
        var affected: [AffectedPackage] = []
        for release in releases.dict.keys.sorted() {
            let r = try JSONObject(releases.dict[release], location: "\(o.location)/\(release.prefix(64))")
            let status = try r.requiredString("status")
            let urgency = try r.string("urgency").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "*")) }
            let severity = urgency.map { Severity(type: "Debian urgency", level: Severity.Level(word: $0)) }
            // The tracker writes the no-DSA decision as a string ("Minor issue", "Ignored").
            let noDSA = !(try r.string("nodsa") ?? "").isEmpty
            let events: [AffectedRange.Event]
            switch status {
            case "resolved":
                let fixed = try r.requiredString("fixed_version")
                if fixed == "0" { continue }  // never affected in this release
                do { try VersionSchemeKind.dpkg.validate(fixed) } catch {
                    throw ImportProblem(location: r.location, reason: "fixed_version: \(error)")
                }
                events = [.introduced("0"), .fixed(fixed)]
            case "open", "undetermined":
                events = [.introduced("0")]
            default:
                throw ImportProblem(location: r.location, reason: "unknown status \"\(status.prefix(32))\"")
            }
            affected.append(AffectedPackage(ecosystem: "Debian", name: package, release: release,
                                            ranges: [AffectedRange(kind: .ecosystem, events: events)],
                                            severity: severity, noDSA: noDSA))
        }
        if affected.isEmpty { return nil }
        let summary = try o.string("description", limit: ImportLimits.maxTextLength)
        return Advisory(id: id, summary: summary, source: .debianSecurityTracker, affected: affected)
    }
}

// MARK: - Alpine secdb

/// Imports an Alpine secdb file (`https://secdb.alpinelinux.org/v3.18/main.json`):
/// `{"distroversion": "v3.18", "packages": [{"pkg": {"name": …, "secfixes": {"1.2.3-r0": ["CVE-…"]}}}]}`.
///
/// Each CVE fixed in a version affects the versions below it; the pseudo-version `0` means the
/// package was never affected. An entry may list several identifiers separated by spaces
/// ("CVE-2020-1 CVE-2020-2"); each becomes an advisory.
public enum AlpineSecdbImporter {
    public static func importData(_ data: Data) throws -> ImportResult {
        guard data.count <= ImportLimits.maxFeedBytes else { throw ImportProblem(location: "secdb", reason: "feed too large") }
        return try importParsed(JSONObject(parseJSON(data, location: "secdb"), location: "secdb"))
    }

    static func importParsed(_ top: JSONObject) throws -> ImportResult {
        let release = try top.string("distroversion")
        var result = ImportResult()
        for package in try top.objects("packages") {
            do {
                guard let pkg = try package.object("pkg") else { throw ImportProblem(location: package.location, reason: "\"pkg\" is missing") }
                let name = try pkg.requiredString("name")
                guard let secfixes = try pkg.object("secfixes") else { continue }
                var fixes: [String: [String]] = [:]  // advisory id → fixed versions
                var order: [String] = []
                for version in secfixes.dict.keys.sorted() {
                    let ids = try secfixes.strings(version)
                    if version == "0" { continue }
                    do { try VersionSchemeKind.apk.validate(version) } catch {
                        result.problems.append(ImportProblem(location: "\(name)/\(version.prefix(64))", reason: "\(error)"))
                        continue
                    }
                    for entry in ids {
                        for id in entry.split(whereSeparator: \.isWhitespace).map(String.init) {
                            if fixes[id] == nil { order.append(id) }
                            fixes[id, default: []].append(version)
                        }
                    }
                }
                for id in order {
                    let ranges = fixes[id]!.map { AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed($0)]) }
                    result.advisories.append(Advisory(id: id, source: .alpineSecdb, affected: [
                        AffectedPackage(ecosystem: "Alpine", name: name, release: release, ranges: ranges),
                    ]))
                }
            } catch let p as ImportProblem {
                result.problems.append(p)
            }
        }
        return result
    }
}
