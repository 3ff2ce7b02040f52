import Foundation

/// One ecosystem's rules for ordering package versions.
///
/// A scheme parses a version string into a value that compares by that ecosystem's rules.
/// Parsing refuses garbage with a `VersionParseError`; it never traps, and its cost is bounded
/// by `VersionLimits.maxLength` (longer inputs are refused before they are looked at).
public protocol VersionScheme: Sendable {
    associatedtype Version: Comparable & Sendable
    /// A short name used in errors ("dpkg", "apk", …).
    var name: String { get }
    func parse(_ string: String) throws -> Version
}

extension VersionScheme {
    /// Compares two version strings; throws if either does not parse.
    public func compare(_ a: String, _ b: String) throws -> ComparisonResult {
        let x = try parse(a), y = try parse(b)
        return x < y ? .orderedAscending : (y < x ? .orderedDescending : .orderedSame)
    }
}

public enum VersionLimits {
    /// Longest version string any scheme accepts. Real versions are far shorter; the bound keeps
    /// hostile input (100,000-character versions) from costing more than a length check.
    public static let maxLength = 256
}

public struct VersionParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let scheme: String
    /// The input, shortened to 64 characters so errors stay small whatever was passed in.
    public let input: String
    public let reason: String

    public init(scheme: String, input: String, reason: String) {
        self.scheme = scheme
        self.input = input.count > 64 ? String(input.prefix(64)) + "…" : input
        self.reason = reason
    }

    public var description: String { "invalid \(scheme) version \"\(input)\": \(reason)" }
}

/// The bytes of a version string after the checks every scheme shares: not empty, not longer
/// than `VersionLimits.maxLength`, printable ASCII only.
func versionBytes(_ string: String, scheme: String) throws -> [UInt8] {
    let bytes = Array(string.utf8.prefix(VersionLimits.maxLength + 1))
    if bytes.isEmpty { throw VersionParseError(scheme: scheme, input: string, reason: "empty") }
    if bytes.count > VersionLimits.maxLength {
        throw VersionParseError(scheme: scheme, input: string,
                                reason: "longer than \(VersionLimits.maxLength) bytes")
    }
    if let bad = bytes.first(where: { $0 <= 0x20 || $0 >= 0x7F }) {
        throw VersionParseError(scheme: scheme, input: string,
                                reason: String(format: "character 0x%02X not allowed", bad))
    }
    return bytes
}

@inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
@inline(__always) func isAlpha(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
@inline(__always) func isAlnum(_ c: UInt8) -> Bool { isDigit(c) || isAlpha(c) }
@inline(__always) func lower(_ c: UInt8) -> UInt8 { (c >= 0x41 && c <= 0x5A) ? c + 0x20 : c }

/// Compares two runs of decimal digits by value without converting them to integers, so a run
/// of any length compares correctly and nothing overflows. Empty runs count as zero.
func compareDigits<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Int {
    let x = a.drop(while: { $0 == 0x30 }), y = b.drop(while: { $0 == 0x30 })
    if x.count != y.count { return x.count < y.count ? -1 : 1 }
    for (p, q) in zip(x, y) where p != q { return p < q ? -1 : 1 }
    return 0
}

/// Lexicographic byte comparison returning -1, 0 or 1.
func compareBytes<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Int {
    for (p, q) in zip(a, b) where p != q { return p < q ? -1 : 1 }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
}

/// A non-negative decimal number of any length, compared by value (version components are
/// kept this way so that `99999999999999999999999` neither overflows nor traps).
public struct Natural: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Digits without leading zeros ("" is zero).
    let digits: [UInt8]
    init<C: Collection<UInt8>>(_ raw: C) { digits = Array(raw.drop(while: { $0 == 0x30 })) }
    public init(_ value: UInt) { self.init(Array(String(value).utf8)) }
    public static let zero = Natural([UInt8]())
    public var isZero: Bool { digits.isEmpty }
    public var description: String { digits.isEmpty ? "0" : String(decoding: digits, as: UTF8.self) }
    public static func < (a: Natural, b: Natural) -> Bool { compareDigits(a.digits, b.digits) < 0 }
}
