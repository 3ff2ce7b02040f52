/// Maven versions with the semantics of Maven's `ComparableVersion`.
///
/// The version is split at `.` and `-` and at every change between digits and letters; a
/// `-` or such a change opens a nested list. Numbers compare by value; qualifiers rank
/// `alpha < beta < milestone < rc < snapshot < "" (release) < sp < any other (alphabetically)`,
/// with aliases `a`, `b`, `m` (when followed by a digit), `cr` (= rc) and `ga`, `final`,
/// `release` (= release). Trailing zeros and release qualifiers are trimmed from every list
/// (`1.0.0 == 1`, `1.0-final == 1`). Case does not matter.
public struct MavenVersionScheme: VersionScheme {
    public init() {}
    public var name: String { "maven" }

    indirect enum Item: Hashable {
        case number(Natural)
        case qualifier(String)
        case list([Item])

        var isNull: Bool {
            switch self {
            case let .number(n): return n.isZero
            case let .qualifier(q): return q.isEmpty
            case let .list(l): return l.isEmpty
            }
        }

        static let qualifiers = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"]
        static let releaseRank = 5

        /// A qualifier's rank as a sortable string: its index for known ones, "7-name" for others.
        static func rank(_ q: String) -> String {
            if let k = qualifiers.firstIndex(of: q) { return String(k) }
            return "\(qualifiers.count)-\(q)"
        }

        /// Compares with an item, or with "nothing" (nil) when the other list has run out.
        func compare(_ other: Item?) -> Int {
            switch self {
            case let .number(n):
                switch other {
                case nil: return n.isZero ? 0 : 1
                case let .number(m)?: return n == m ? 0 : (n < m ? -1 : 1)
                case .qualifier?, .list?: return 1
                }
            case let .qualifier(q):
                switch other {
                case nil: return Self.compareStrings(Self.rank(q), String(Self.releaseRank))
                case .number?: return -1
                case let .qualifier(r)?: return Self.compareStrings(Self.rank(q), Self.rank(r))
                case .list?: return -1
                }
            case let .list(items):
                switch other {
                case nil:
                    guard let first = items.first else { return 0 }
                    return first.compare(nil)
                case .number?: return -1
                case .qualifier?: return 1
                case let .list(others)?:
                    var k = 0
                    while k < items.count || k < others.count {
                        let l: Item? = k < items.count ? items[k] : nil
                        let r: Item? = k < others.count ? others[k] : nil
                        let c: Int
                        if let l { c = l.compare(r) } else if let r { c = -r.compare(nil) } else { c = 0 }
                        if c != 0 { return c }
                        k += 1
                    }
                    return 0
                }
            }
        }

        static func compareStrings(_ a: String, _ b: String) -> Int {
            let x = Array(a.utf8), y = Array(b.utf8)
            return compareBytes(x, y)
        }
    }

    public struct Version: Comparable, Hashable, Sendable, CustomStringConvertible {
        let items: Item
        public let description: String
        public static func == (a: Version, b: Version) -> Bool { a.items.compare(b.items) == 0 }
        public func hash(into h: inout Hasher) {}
        public static func < (a: Version, b: Version) -> Bool { a.items.compare(b.items) < 0 }
    }

    public func parse(_ string: String) throws -> Version {
        let s = try versionBytes(string, scheme: name).map(lower)
        // Lists under construction; the last is the one being filled.
        var stack: [[Item]] = [[]]
        var start = 0
        var inDigits = false

        func item(_ digits: Bool, _ text: ArraySlice<UInt8>, followedByDigit: Bool) -> Item {
            if digits { return .number(Natural(text)) }
            var q = String(decoding: text, as: UTF8.self)
            if followedByDigit && q.count == 1 {
                switch q { case "a": q = "alpha"; case "b": q = "beta"; case "m": q = "milestone"; default: break }
            }
            switch q {
            case "ga", "final", "release": q = ""
            case "cr": q = "rc"
            default: break
            }
            return .qualifier(q)
        }
        func openList() { stack.append([]) }

        for (i, c) in s.enumerated() {
            if c == UInt8(ascii: ".") {
                stack[stack.count - 1].append(i == start ? .number(.zero) : item(inDigits, s[start..<i], followedByDigit: false))
                start = i + 1
            } else if c == UInt8(ascii: "-") {
                stack[stack.count - 1].append(i == start ? .number(.zero) : item(inDigits, s[start..<i], followedByDigit: false))
                start = i + 1
                openList()
            } else if isDigit(c) {
                if !inDigits && i > start {
                    stack[stack.count - 1].append(item(false, s[start..<i], followedByDigit: true))
                    start = i
                    openList()
                }
                inDigits = true
            } else {
                if inDigits && i > start {
                    stack[stack.count - 1].append(item(true, s[start..<i], followedByDigit: false))
                    start = i
                    openList()
                }
                inDigits = false
            }
        }
        if s.count > start { stack[stack.count - 1].append(item(inDigits, s[start...], followedByDigit: false)) }
        // Close the lists from the innermost out, trimming each as it closes.
        while stack.count > 1 {
            let inner = Self.normalised(stack.removeLast())
            stack[stack.count - 1].append(.list(inner))
        }
        return Version(items: .list(Self.normalised(stack[0])), description: string)
    }

    /// Removes trailing null items (0, release qualifiers, empty lists), looking past nested
    /// lists but stopping at the first other item that is not null.
    static func normalised(_ items: [Item]) -> [Item] {
        var items = items
        var k = items.count - 1
        while k >= 0 {
            if items[k].isNull {
                items.remove(at: k)
            } else if case .list = items[k] {
                // keep looking further left
            } else {
                break
            }
            k -= 1
        }
        return items
    }
}
