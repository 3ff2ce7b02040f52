import Foundation
import NIOCore

/// The entry points the fuzz package (`fuzz/`) and the corpus-replay test drive: each one runs
/// a parser of untrusted bytes exactly as the scanner does, with the scanner's bounds, so a
/// finding of the fuzzer is a finding of the scanner. Not API for anything else (`@_spi`).
@_spi(Fuzzing)
public enum ScanFuzzEntry {
    /// One fuzz target per parser; the raw value names the target and its corpus directory.
    public enum Target: String, Sendable, CaseIterable {
        case layer, osRelease = "os-release", dpkgStatus = "dpkg-status", dpkgStatusD = "dpkg-status-d"
        case apk, rpm, python, npm, java, go, openvex, osv, debian, alpine
    }

    /// The path each cataloger target's bytes are given as (the walker picks the cataloger by path).
    static func path(of target: Target) -> String? {
        switch target {
        case .osRelease: "etc/os-release"
        case .dpkgStatus: "var/lib/dpkg/status"
        case .dpkgStatusD: "var/lib/dpkg/status.d/pkg"
        case .apk: "lib/apk/db/installed"
        case .rpm: "var/lib/rpm/rpmdb.sqlite"
        case .python: "usr/lib/python3/dist-packages/pkg-1.0.dist-info/METADATA"
        case .npm: "usr/lib/node_modules/pkg/package.json"
        case .java: "opt/app/app.jar"
        case .layer, .go, .openvex, .osv, .debian, .alpine: nil
        }
    }

    /// A short summary of what the parser produced (the replay test prints it; content does not
    /// matter to the fuzzer, only that the call returns).
    public struct Outcome: Sendable, CustomStringConvertible {
        /// Packages (and OS records) found, VEX statements or advisories read.
        public var results: Int
        public var problems: Int
        public var error: String?
        public var description: String {
            error.map { "error: \($0)" } ?? "\(results) results, \(problems) problems"
        }
    }

    /// Runs `bytes` through `target`'s parser. Never throws: a rejected input is an `Outcome`
    /// with its error (errors of the byte source cannot happen here).
    public static func run(_ target: Target, _ bytes: [UInt8], limits: ScanLimits = ScanLimits()) async -> Outcome {
        switch target {
        case .layer:
            // The layer streamed as the scanner streams it (ScanInventorier reads 1 MiB ranges;
            // smaller chunks here so a chunk boundary falls inside headers too).
            let chunkSize = max(1, bytes.count / 3 + 1)
            var chunks: [ByteBuffer] = []
            var i = 0
            while i < bytes.count {
                chunks.append(ByteBuffer(bytes: bytes[i..<min(bytes.count, i + chunkSize)]))
                i += chunkSize
            }
            do {
                let index = try await LayerWalker(limits: limits).index(chunks.async, mediaType: nil)
                return Outcome(results: index.files.values.reduce(0) { $0 + $1.packages.count + ($1.os == nil ? 0 : 1) },
                               problems: index.problems.count + index.files.values.reduce(0) { $0 + $1.problems.count })
            } catch {
                return Outcome(results: 0, problems: 0, error: "\(error)")
            }
        case .go:
            // Fed in pieces, as the tar reader hands a binary's data to the scanner.
            let scanner = GoBuildInfoScanner(path: "usr/bin/app", maxBytes: limits.maxGoBuildInfoBytes)
            bytes.withUnsafeBytes { raw in
                var i = 0
                while i < raw.count, !scanner.isDone {
                    let end = min(raw.count, i + 4093)
                    scanner.feed(UnsafeRawBufferPointer(rebasing: raw[i..<end]))
                    i = end
                }
            }
            let file = scanner.result()
            return Outcome(results: file?.packages.count ?? 0, problems: file?.problems.count ?? 0)
        case .openvex:
            do {
                let doc = try OpenVEX.parse(Data(bytes))
                return Outcome(results: doc.statements.count, problems: 0)
            } catch { return Outcome(results: 0, problems: 0, error: "\(error)") }
        case .osv, .debian, .alpine:
            let format: AdvisoryFeedFormat = target == .osv ? .osv : target == .debian ? .debian : .alpine
            do {
                // An OSV target also reads `all.zip` exports (zip bytes are detected as OSV).
                let (_, result) = try AdvisoryFeed.importData(Data(bytes), format: format)
                return Outcome(results: result.advisories.count, problems: result.problems.count)
            } catch { return Outcome(results: 0, problems: 0, error: "\(error)") }
        case .osRelease, .dpkgStatus, .dpkgStatusD, .apk, .rpm, .python, .npm, .java:
            let path = path(of: target)!
            guard let interest = FileInterest(path: path) else { return Outcome(results: 0, problems: 0, error: "no cataloger for \(path)") }
            // The walker's bound: a file over its kind's cap is not read.
            guard bytes.count <= interest.cap(limits) else { return Outcome(results: 0, problems: 1, error: "over the cap") }
            let file = interest.catalog(path: path, bytes: bytes, limits: limits)
            return Outcome(results: file.packages.count + (file.os == nil ? 0 : 1), problems: file.problems.count)
        }
    }
}

/// A finite async sequence over an array, as the walker's byte source.
private struct ArrayAsyncSequence<Element: Sendable>: AsyncSequence, Sendable {
    let elements: [Element]
    struct AsyncIterator: AsyncIteratorProtocol {
        var base: IndexingIterator<[Element]>
        mutating func next() async -> Element? { base.next() }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: elements.makeIterator()) }
}

private extension Array where Element: Sendable {
    var async: ArrayAsyncSequence<Element> { ArrayAsyncSequence(elements: self) }
}
