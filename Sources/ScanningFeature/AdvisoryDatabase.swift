import Access
import AsyncHTTPClient
import BerthAPIContract
import Foundation
import Logging
import NIOCore
import OCIModel
import RegistryStore
import Scanning

/// A feed `berth scan db update` downloads: `NAME=FORMAT:URL` in the server's `advisory-feeds`.
public struct AdvisoryFeedConfiguration: Sendable, Equatable {
    public var name: String
    public var format: AdvisoryFeedFormat
    public var url: String

    public init(name: String, format: AdvisoryFeedFormat, url: String) {
        self.name = name
        self.format = format
        self.url = url
    }

    /// Parses `NAME=FORMAT:URL` entries separated by spaces, commas or line breaks
    /// (`debian=debian:https://security-tracker.debian.org/tracker/data/json`). Names are unique
    /// source names; URLs are http(s) without credentials.
    public static func parseList(_ text: String) throws(AdvisoryDatabaseError) -> [AdvisoryFeedConfiguration] {
        var feeds: [AdvisoryFeedConfiguration] = []
        for raw in text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\n" || $0 == "\t" }) {
            let entry = String(raw)
            guard let eq = entry.firstIndex(of: "="), let colon = entry[eq...].firstIndex(of: ":") else {
                throw AdvisoryDatabaseError.invalid("advisory feed '\(entry.prefix(80))' is not NAME=FORMAT:URL")
            }
            let name = String(entry[..<eq]), formatName = String(entry[entry.index(after: eq)..<colon])
            let url = String(entry[entry.index(after: colon)...])
            try AdvisoryDatabase.checkSourceName(name)
            guard let format = AdvisoryFeedFormat(rawValue: formatName) else {
                throw AdvisoryDatabaseError.invalid("advisory feed \(name): format must be osv, debian or alpine, not '\(formatName.prefix(20))'")
            }
            guard OutboundPolicy.origin(of: url) != nil, let parsed = URL(string: url), parsed.user == nil, parsed.password == nil else {
                throw AdvisoryDatabaseError.invalid("advisory feed \(name): the URL must be http(s) with a host and no credentials")
            }
            guard !feeds.contains(where: { $0.name == name }) else { throw AdvisoryDatabaseError.invalid("advisory feed \(name) is given twice") }
            feeds.append(AdvisoryFeedConfiguration(name: name, format: format, url: url))
        }
        return feeds
    }
}

public struct AdvisoryDatabaseConfiguration: Sendable {
    public var feeds: [AdvisoryFeedConfiguration] = []
    /// Seconds between scheduled updates of the feeds; nil: only on demand.
    public var updateIntervalSeconds: Int?
    /// Where downloads may go (loopback and private addresses only when the operator allows them).
    public var policy = OutboundPolicy()
    /// Largest feed document accepted, uploaded or downloaded.
    public var maxFeedBytes = 256 << 20
    public var downloadTimeout: TimeAmount = .seconds(600)

    public init(feeds: [AdvisoryFeedConfiguration] = [], updateIntervalSeconds: Int? = nil, policy: OutboundPolicy = OutboundPolicy()) {
        self.feeds = feeds
        self.updateIntervalSeconds = updateIntervalSeconds
        self.policy = policy
    }
}

public enum AdvisoryDatabaseError: Error, Sendable, CustomStringConvertible {
    case invalid(String)
    case busy
    case notFound(String)

    public var description: String {
        switch self {
        case let .invalid(m): m
        case .busy: "an advisory import or update is running; try again when it has finished"
        case let .notFound(m): m
        }
    }
}

/// One import or update at a time on this node: each holds a whole feed in memory.
actor AdvisoryImportGate {
    private var running = false
    func begin() -> Bool {
        if running { return false }
        running = true
        return true
    }
    func end() { running = false }
}

/// The advisory database on the server: imports of uploaded feeds, downloads of the configured
/// feeds (conditional GETs through the outbound policy), and its state for `berth scan db show`.
/// The records live in the metadata store (`AdvisoryStore`), shared by every node.
public final class AdvisoryDatabase: Sendable {
    let store: any AdvisoryStore
    public let configuration: AdvisoryDatabaseConfiguration
    let logger: Logger
    let gate = AdvisoryImportGate()

    public init(store: any AdvisoryStore, configuration: AdvisoryDatabaseConfiguration, logger: Logger) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
    }

    static func checkSourceName(_ name: String) throws(AdvisoryDatabaseError) {
        guard !name.isEmpty, name.utf8.count <= 128,
              name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39)
                  || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f || $0 == 0x3a || $0 == 0x2f }), name.first != "-" else {
            throw AdvisoryDatabaseError.invalid("a source name is 1-128 characters of letters, digits and . _ - : /")
        }
    }

    private func exclusively<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        guard await gate.begin() else { throw AdvisoryDatabaseError.busy }
        do {
            let value = try await body()
            await gate.end()
            return value
        } catch {
            await gate.end()
            throw error
        }
    }

    /// Imports an uploaded feed document as the complete snapshot of `source` (default: the
    /// format's name).
    public func importUpload(_ data: Data, format: AdvisoryFeedFormat?, source: String?) async throws -> AdvisoryImportView {
        if let source { try Self.checkSourceName(source) }
        return try await exclusively {
            try await importDocument(data, format: format, source: source, validators: nil)
        }
    }

    private func importDocument(_ data: Data, format: AdvisoryFeedFormat?, source: String?,
                                validators: AdvisoryFeedValidators?) async throws -> AdvisoryImportView {
        let parsed: (format: AdvisoryFeedFormat, result: ImportResult)
        do {
            parsed = try AdvisoryFeed.importData(data, format: format)
        } catch let p as ImportProblem {
            throw AdvisoryDatabaseError.invalid("the feed cannot be read: \(p)")
        }
        let name = source ?? parsed.format.rawValue
        let advisories = AdvisoryFeed.current(parsed.result.advisories)
        // A feed of which nothing could be read replaces nothing: its source keeps its records.
        if advisories.isEmpty && !parsed.result.problems.isEmpty {
            throw AdvisoryDatabaseError.invalid("no record of the feed could be read (\(parsed.result.problems.count) problems, "
                                                + "first: \(parsed.result.problems[0]))")
        }
        var records: [StoredAdvisory] = []
        records.reserveCapacity(advisories.count)
        for advisory in advisories {
            let document = try AdvisoryFeed.encode(advisory)
            records.append(StoredAdvisory(source: name, id: advisory.id, contentHash: Digest.compute(document).description,
                                          document: [UInt8](document),
                                          packages: AdvisoryFeed.lookupKeys(of: advisory).map { AdvisoryPackageKey(ecosystem: $0.ecosystem, name: $0.name) }))
        }
        let outcome: AdvisoryImportOutcome
        do {
            outcome = try await store.importAdvisories(source: name, format: parsed.format.rawValue, records: records, validators: validators)
        } catch let e as AdvisoryStoreError {
            throw AdvisoryDatabaseError.invalid(e.message)
        }
        logger.info("advisory import", metadata: [
            "source": "\(name)", "version": "\(outcome.version)", "added": "\(outcome.added)", "changed": "\(outcome.changed)",
            "removed": "\(outcome.removed)", "unchanged": "\(outcome.unchanged)", "problems": "\(parsed.result.problems.count)",
        ])
        return AdvisoryImportView(source: name, format: parsed.format.rawValue, version: outcome.version, created: outcome.created,
                                  added: outcome.added, changed: outcome.changed, removed: outcome.removed, unchanged: outcome.unchanged,
                                  problems: parsed.result.problems.count,
                                  problemSamples: parsed.result.problems.prefix(10).map(\.description))
    }

    /// Downloads the configured feeds (or the one named) and imports those that changed.
    public func update(feed: String? = nil) async throws -> AdvisoryUpdateView {
        let feeds = configuration.feeds.filter { feed == nil || $0.name == feed }
        if let feed, feeds.isEmpty { throw AdvisoryDatabaseError.notFound("no advisory feed is named \(feed.prefix(128))") }
        return try await exclusively {
            let known = Dictionary(try await store.advisorySources().map { ($0.source, $0) }, uniquingKeysWith: { a, _ in a })
            var outcomes: [AdvisoryFeedUpdateView] = []
            for feed in feeds {
                outcomes.append(await updateOne(feed, known: known[feed.name]))
            }
            return AdvisoryUpdateView(version: try await store.currentAdvisoryVersion(), feeds: outcomes)
        }
    }

    private func updateOne(_ feed: AdvisoryFeedConfiguration, known: AdvisorySourceRecord?) async -> AdvisoryFeedUpdateView {
        func failed(_ message: String) async -> AdvisoryFeedUpdateView {
            logger.warning("advisory feed update failed", metadata: ["feed": "\(feed.name)", "error": "\(message)"])
            try? await store.recordAdvisoryCheck(source: feed.name, format: feed.format.rawValue, error: message)
            return AdvisoryFeedUpdateView(name: feed.name, status: "failed", result: nil, error: message)
        }
        var request = HTTPClientRequest(url: feed.url)
        request.headers.add(name: "User-Agent", value: "berth-advisory-update")
        // Validators are used only when the source still has the records they describe.
        if let known, known.version > 0 || known.records > 0 {
            if let etag = known.etag { request.headers.add(name: "If-None-Match", value: etag) }
            if let lastModified = known.lastModified { request.headers.add(name: "If-Modified-Since", value: lastModified) }
        }
        let answer: (status: Int, headers: [(name: String, value: String)], body: ByteBuffer?)
        do {
            answer = try await configuration.policy.exchange(request, timeout: configuration.downloadTimeout,
                                                             bodyLimit: configuration.maxFeedBytes)
        } catch let refused as OutboundRefused {
            return await failed("refused: \(refused.message)")
        } catch {
            return await failed("download failed: \(error)")
        }
        switch answer.status {
        case 304:
            do {
                try await store.recordAdvisoryCheck(source: feed.name, format: feed.format.rawValue, error: nil)
            } catch {
                return await failed("cannot record the check: \(error)")
            }
            return AdvisoryFeedUpdateView(name: feed.name, status: "unchanged", result: nil, error: nil)
        case 200:
            guard let body = answer.body else { return await failed("the feed is larger than \(configuration.maxFeedBytes) bytes") }
            func header(_ name: String) -> String? {
                answer.headers.first { $0.name.lowercased() == name }.map { String($0.value.prefix(256)) }
            }
            let validators = AdvisoryFeedValidators(etag: header("etag"), lastModified: header("last-modified"))
            do {
                let view = try await importDocument(Data(body.readableBytesView), format: feed.format, source: feed.name,
                                                    validators: validators)
                return AdvisoryFeedUpdateView(name: feed.name, status: "imported", result: view, error: nil)
            } catch {
                return await failed("\(error)")
            }
        default:
            return await failed("the feed answered HTTP \(answer.status)")
        }
    }

    /// The database's state.
    public func view() async throws -> AdvisoryDatabaseView {
        let sources = try await store.advisorySources()
        let version = try await store.currentAdvisoryVersion()
        let last = sources.compactMap { [$0.importedAt, $0.checkedAt].compactMap { $0 }.max() }.max()
        return AdvisoryDatabaseView(
            version: version, records: sources.reduce(0) { $0 + $1.records },
            sources: sources.map { AdvisorySourceView(source: $0.source, format: $0.format, version: $0.version, records: $0.records,
                                                      importedAt: $0.importedAt, checkedAt: $0.checkedAt, lastError: $0.lastError) },
            feeds: configuration.feeds.map { AdvisoryFeedView(name: $0.name, format: $0.format.rawValue, url: $0.url) },
            updateIntervalSeconds: configuration.updateIntervalSeconds, lastUpdate: last)
    }

    /// The advisories that may affect `packages`, read from one database version, as the matcher's
    /// index (`AdvisoryIndex.matches(for:)`). Records this build cannot decode are counted, not used.
    public func index(for packages: [InstalledPackage]) async throws -> (version: Int64, index: AdvisoryIndex, undecodable: Int) {
        try await Self.index(store: store, for: packages)
    }

    /// `index(for:)` over any advisory store (the finding matcher needs no feed configuration).
    static func index(store: any AdvisoryStore, for packages: [InstalledPackage]) async throws
        -> (version: Int64, index: AdvisoryIndex, undecodable: Int) {
        let keys = AdvisoryIndex.packageKeys(of: packages).map { AdvisoryPackageKey(ecosystem: $0.ecosystem, name: $0.name) }
        let (version, records) = try await store.advisories(for: keys)
        var advisories: [Advisory] = []
        var undecodable = 0
        for record in records {
            if let advisory = try? AdvisoryFeed.decode(Data(record.document)) { advisories.append(advisory) } else { undecodable += 1 }
        }
        return (version, AdvisoryIndex(advisories), undecodable)
    }

    /// When the next scheduled update is due: an interval after the latest check of a configured feed.
    func nextUpdateDelay(now: Date = Date()) async -> TimeInterval? {
        guard let interval = configuration.updateIntervalSeconds, interval > 0, !configuration.feeds.isEmpty else { return nil }
        let names = Set(configuration.feeds.map(\.name))
        let sources = (try? await store.advisorySources()) ?? []
        let checks = sources.filter { names.contains($0.source) }.map { $0.checkedAt ?? .distantPast }
        guard checks.count == names.count, let oldest = checks.min() else { return 0 }
        return max(0, oldest.addingTimeInterval(TimeInterval(interval)).timeIntervalSince(now))
    }
}
