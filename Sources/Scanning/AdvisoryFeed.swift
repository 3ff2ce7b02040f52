import Foundation

/// The feed formats the advisory database imports.
public enum AdvisoryFeedFormat: String, Sendable, Hashable, CaseIterable, Codable {
    /// OSV: one record (a JSON object) or an `all.zip` export (a zip archive of records).
    case osv
    /// The Debian security tracker's JSON (`/tracker/data/json`).
    case debian
    /// An Alpine secdb file (`main.json`, `community.json`).
    case alpine

    /// The format of a feed document, told from its first bytes and, for JSON, its top-level
    /// shape: a zip archive is OSV; an object with `affected`, `schema_version` or `modified`
    /// next to `id` is an OSV record; one with `packages` and `distroversion` or `reponame` is an
    /// Alpine secdb; any other object whose values are all objects is the Debian tracker.
    public static func detect(_ data: Data) throws -> AdvisoryFeedFormat {
        if AdvisoryFeed.isZip(data) { return .osv }
        let top = try JSONObject(parseJSON(data, location: "feed"), location: "feed")
        return try detect(top)
    }

    static func detect(_ top: JSONObject) throws -> AdvisoryFeedFormat {
        let d = top.dict
        if d["id"] is String, d["affected"] != nil || d["schema_version"] != nil || d["modified"] != nil { return .osv }
        if d["packages"] is [Any], d["distroversion"] != nil || d["reponame"] != nil { return .alpine }
        if !d.isEmpty, d.values.allSatisfy({ $0 is [String: Any] }) { return .debian }
        throw ImportProblem(location: "feed", reason: "not an OSV record, Debian tracker JSON or Alpine secdb: give the format")
    }
}

public enum AdvisoryFeed {
    static func isZip(_ data: Data) -> Bool {
        data.count >= 4 && data.prefix(4).elementsEqual([0x50, 0x4B, 0x03, 0x04] as [UInt8])
            || data.count >= 4 && data.prefix(4).elementsEqual([0x50, 0x4B, 0x05, 0x06] as [UInt8])
    }

    /// Imports one feed document in `format` (detected when nil). Broken records are problems of
    /// the result; a document that cannot be read as the format at all throws `ImportProblem`.
    public static func importData(_ data: Data, format: AdvisoryFeedFormat?) throws -> (format: AdvisoryFeedFormat, result: ImportResult) {
        guard data.count <= ImportLimits.maxFeedBytes else { throw ImportProblem(location: "feed", reason: "feed too large") }
        if isZip(data) {
            guard format == nil || format == .osv else { throw ImportProblem(location: "feed", reason: "a zip archive is an OSV export, not \(format!.rawValue)") }
            return (.osv, try OSVImporter.importZip(data))
        }
        let top = try JSONObject(parseJSON(data, location: "feed"), location: "feed")
        let chosen = try format ?? AdvisoryFeedFormat.detect(top)
        switch chosen {
        case .osv: return (.osv, ImportResult(advisories: [try OSVImporter.record(top)]))
        case .debian: return (.debian, try DebianTrackerImporter.importParsed(top))
        case .alpine: return (.alpine, try AlpineSecdbImporter.importParsed(top))
        }
    }

    /// The advisories a feed's snapshot keeps: withdrawn records are left out (so the store
    /// removes them), and of an id given twice the last one is kept.
    public static func current(_ advisories: [Advisory]) -> [Advisory] {
        var byID: [String: Int] = [:]
        var kept: [Advisory] = []
        for a in advisories where a.withdrawn == nil {
            if let i = byID[a.id] { kept[i] = a } else { byID[a.id] = kept.count; kept.append(a) }
        }
        return kept
    }

    /// The (ecosystem, name) keys an advisory is looked up by (`AdvisoryIndex.lookupKey`).
    public static func lookupKeys(of advisory: Advisory) -> [(ecosystem: String, name: String)] {
        var seen = Set<String>()
        var keys: [(ecosystem: String, name: String)] = []
        for affected in advisory.affected {
            let k = AdvisoryIndex.lookupKey(ecosystem: affected.ecosystem, name: affected.name)
            if seen.insert(k.ecosystem + "\u{0}" + k.name).inserted { keys.append(k) }
        }
        return keys
    }

    /// The stored form of an advisory: JSON with sorted keys, so equal advisories encode to equal
    /// bytes (the store compares their hashes).
    public static func encode(_ advisory: Advisory) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(advisory)
    }

    public static func decode(_ data: Data) throws -> Advisory {
        try JSONDecoder().decode(Advisory.self, from: data)
    }
}

extension ImportResult {
    init(advisories: [Advisory]) {
        self.init()
        self.advisories = advisories
    }
}

// MARK: - stored form

/// An event is stored as OSV writes it: an object with one key.
extension AffectedRange.Event: Codable {
    private enum Key: String, CodingKey { case introduced, fixed, last_affected, limit }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        guard c.allKeys.count == 1, let key = c.allKeys.first else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "an event has one key"))
        }
        let v = try c.decode(String.self, forKey: key)
        switch key {
        case .introduced: self = .introduced(v)
        case .fixed: self = .fixed(v)
        case .last_affected: self = .lastAffected(v)
        case .limit: self = .limit(v)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        switch self {
        case let .introduced(v): try c.encode(v, forKey: .introduced)
        case let .fixed(v): try c.encode(v, forKey: .fixed)
        case let .lastAffected(v): try c.encode(v, forKey: .last_affected)
        case let .limit(v): try c.encode(v, forKey: .limit)
        }
    }
}

// MARK: - zip writer

/// Writes a zip archive of stored (uncompressed) entries, for `berth scan db import DIR`: the
/// directory's records go to the server as one `all.zip`-shaped upload, so they import as one
/// snapshot. Names and sizes must fit the classic (non-zip64) format.
public struct StoredZipWriter {
    private var directory: [UInt8] = []
    private var count = 0
    public private(set) var offset = 0

    public init() {}

    public enum Limit { public static let maxBytes = Int(UInt32.max) - (64 << 20) }

    /// The local header and data of one entry; the caller writes them at `offset`.
    public mutating func entry(name: String, contents: [UInt8]) throws -> [UInt8] {
        let nameBytes = Array(name.utf8)
        guard nameBytes.count < 0xFFFF, count < 0xFFFF,
              offset + 30 + nameBytes.count + contents.count <= Limit.maxBytes else {
            throw ImportProblem(location: name, reason: "too many or too large files for one upload")
        }
        let crc = CRC32.checksum(contents)
        var local: [UInt8] = []
        local += le32(0x0403_4B50) + le16(20) + le16(0x0800) + le16(0) + le16(0) + le16(0x21)
        local += le32(crc) + le32(UInt32(contents.count)) + le32(UInt32(contents.count)) + le16(UInt16(nameBytes.count)) + le16(0)
        local += nameBytes
        directory += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0x0800) + le16(0) + le16(0) + le16(0x21)
        directory += le32(crc) + le32(UInt32(contents.count)) + le32(UInt32(contents.count)) + le16(UInt16(nameBytes.count))
        directory += le16(0) + le16(0) + le16(0) + le16(0) + le32(0) + le32(UInt32(offset)) + nameBytes
        count += 1
        offset += local.count + contents.count
        return local + contents
    }

    /// The central directory and its end record, written after the last entry.
    public func finish() -> [UInt8] {
        directory + le32(0x0605_4B50) + le16(0) + le16(0) + le16(UInt16(count)) + le16(UInt16(count))
            + le32(UInt32(directory.count)) + le32(UInt32(offset)) + le16(0)
    }

    private func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }
}
