import Foundation

// The advisory database's bodies: `GET /api/v1/scan/db`, `POST /api/v1/scan/db/import` (the
// request body is the feed document itself, not JSON of this contract) and
// `POST /api/v1/scan/db/update`.

/// One feed's state in the advisory database.
public struct AdvisorySourceView: Codable, Sendable, Equatable {
    public var source: String
    /// `osv`, `debian` or `alpine`.
    public var format: String
    /// The database version this source last changed (0: never).
    public var version: Int64
    public var records: Int
    public var importedAt: Date?
    public var checkedAt: Date?
    public var lastError: String?
    public init(source: String, format: String, version: Int64, records: Int, importedAt: Date?, checkedAt: Date?, lastError: String?) {
        self.source = source
        self.format = format
        self.version = version
        self.records = records
        self.importedAt = importedAt
        self.checkedAt = checkedAt
        self.lastError = lastError
    }
}

/// A feed `berth scan db update` downloads (configured with the server's `advisory-feeds`).
public struct AdvisoryFeedView: Codable, Sendable, Equatable {
    public var name: String
    public var format: String
    public var url: String
    public init(name: String, format: String, url: String) {
        self.name = name
        self.format = format
        self.url = url
    }
}

/// `GET /api/v1/scan/db`: the current version, every source, the configured feeds.
public struct AdvisoryDatabaseView: Codable, Sendable, Equatable {
    public var version: Int64
    public var records: Int
    public var sources: [AdvisorySourceView]
    public var feeds: [AdvisoryFeedView]
    /// Seconds between scheduled updates; absent when updates are only run on demand.
    public var updateIntervalSeconds: Int?
    /// The latest import or check of any source.
    public var lastUpdate: Date?
    public init(version: Int64, records: Int, sources: [AdvisorySourceView], feeds: [AdvisoryFeedView], updateIntervalSeconds: Int?,
                lastUpdate: Date?) {
        self.version = version
        self.records = records
        self.sources = sources
        self.feeds = feeds
        self.updateIntervalSeconds = updateIntervalSeconds
        self.lastUpdate = lastUpdate
    }
}

/// What one import changed (`POST /api/v1/scan/db/import`, and each feed of an update).
public struct AdvisoryImportView: Codable, Sendable, Equatable {
    public var source: String
    public var format: String
    /// The database version after the import.
    public var version: Int64
    /// Whether the import made a new version (false: nothing changed).
    public var created: Bool
    public var added: Int
    public var changed: Int
    public var removed: Int
    public var unchanged: Int
    /// Records of the feed that could not be read (left out of the import).
    public var problems: Int
    /// The first few of them, `location: reason`.
    public var problemSamples: [String]
    public init(source: String, format: String, version: Int64, created: Bool, added: Int, changed: Int, removed: Int, unchanged: Int,
                problems: Int, problemSamples: [String]) {
        self.source = source
        self.format = format
        self.version = version
        self.created = created
        self.added = added
        self.changed = changed
        self.removed = removed
        self.unchanged = unchanged
        self.problems = problems
        self.problemSamples = problemSamples
    }
}

/// One feed's outcome in an update.
public struct AdvisoryFeedUpdateView: Codable, Sendable, Equatable {
    public var name: String
    /// `imported`, `unchanged` (the server answered 304 Not Modified) or `failed`.
    public var status: String
    public var result: AdvisoryImportView?
    public var error: String?
    public init(name: String, status: String, result: AdvisoryImportView?, error: String?) {
        self.name = name
        self.status = status
        self.result = result
        self.error = error
    }
}

/// `POST /api/v1/scan/db/update`: each configured feed's outcome and the version after them.
public struct AdvisoryUpdateView: Codable, Sendable, Equatable {
    public var version: Int64
    public var feeds: [AdvisoryFeedUpdateView]
    public init(version: Int64, feeds: [AdvisoryFeedUpdateView]) {
        self.version = version
        self.feeds = feeds
    }
}
