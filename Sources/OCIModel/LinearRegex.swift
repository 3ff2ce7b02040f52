/// Regular expressions from users (purge filters and schedules), matched in time linear in the input.
///
/// A Thompson NFA simulated breadth-first (a Pike VM without captures): each input scalar advances
/// every live thread at once, and a thread is added at most once per position, so a match costs at most
/// (input length + 1) × (program size) steps whatever the pattern: `^(a+)+b$` over any string is as fast
/// as `^a+b$`. Backtracking engines (Swift `Regex`, `NSRegularExpression`) take exponential time there.
///
/// The RE2-like subset: literals, `.`, classes `[a-z_]` and `[^…]` (ranges, escapes), `\d \w \s` and
/// their negations `\D \W \S`, anchors `^ $`, groups `( )` and `(?: )`, alternation `|`, quantifiers
/// `* + ?` (a lazy `?` suffix is accepted: it does not change whether a string matches) and bounded
/// `{m}`, `{m,}`, `{m,n}` with n ≤ 256 (the longest name). Anything else (backreferences, lookaround, inline flags,
/// `\b`, possessive quantifiers) is refused when the pattern is parsed, with a message saying what and where.
public struct LinearRegex: Sendable, Hashable, CustomStringConvertible {
    public struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        /// Position in the pattern, in Unicode scalars from 0.
        public let offset: Int
        public var description: String { "\(message) at position \(offset)" }
    }

    /// Largest n in `{m,n}`.
    public static let maxRepeat = 256
    /// Largest compiled program (instructions); bounds both memory and the per-scalar cost.
    public static let maxProgramSize = 10_000
    /// Deepest group nesting.
    public static let maxNesting = 50

    public let pattern: String
    public var description: String { pattern }
    private let program: [Instruction]

    public init(_ pattern: String) throws(SyntaxError) {
        var parser = Parser(scalars: Array(pattern.unicodeScalars))
        let tree = try parser.parseAll()
        var compiler = Compiler()
        try compiler.emit(tree)
        compiler.append(.match)
        self.pattern = pattern
        self.program = compiler.program
    }

    public static func == (l: LinearRegex, r: LinearRegex) -> Bool { l.pattern == r.pattern }
    public func hash(into h: inout Hasher) { h.combine(pattern) }

    /// Whether the pattern matches all of `text` (as if written `^(?:pattern)$`).
    public func matchesWhole(_ text: String) -> Bool { run(Array(text.unicodeScalars), whole: true) }

    /// Whether the pattern matches somewhere in `text`.
    public func matchesSomewhere(_ text: String) -> Bool { run(Array(text.unicodeScalars), whole: false) }

    // MARK: matching

    private func run(_ input: [Unicode.Scalar], whole: Bool) -> Bool {
        let n = input.count
        var current = ThreadList(capacity: program.count)
        var next = ThreadList(capacity: program.count)
        var stack: [Int] = []
        for position in 0...n {
            // A search starts a new thread at every position; a whole match only at the start.
            if position == 0 || !whole {
                add(0, at: position, length: n, to: &current, stack: &stack)
            }
            if current.count == 0 { return false }
            next.clear()
            for k in 0..<current.count {
                let pc = current.dense[k]
                switch program[pc] {
                case .match:
                    if !whole || position == n { return true }
                case .scalars(let set):
                    if position < n, set.contains(input[position]) {
                        add(pc + 1, at: position + 1, length: n, to: &next, stack: &stack)
                    }
                default:
                    break   // epsilon instructions are followed by `add`
                }
            }
            swap(&current, &next)
        }
        return false
    }

    /// Adds `pc` and everything reachable from it without consuming input.
    private func add(_ pc: Int, at position: Int, length: Int, to list: inout ThreadList, stack: inout [Int]) {
        stack.append(pc)
        while let pc = stack.popLast() {
            guard list.insert(pc) else { continue }
            switch program[pc] {
            case .jump(let to):
                stack.append(to)
            case .split(let a, let b):
                stack.append(b)
                stack.append(a)
            case .assertStart:
                if position == 0 { stack.append(pc + 1) }
            case .assertEnd:
                if position == length { stack.append(pc + 1) }
            case .scalars, .match:
                break
            }
        }
    }

    /// A sparse set of program counters: O(1) insert, membership and clear.
    private struct ThreadList {
        var dense: [Int]
        var sparse: [Int]
        var count = 0
        init(capacity: Int) {
            dense = Array(repeating: 0, count: capacity)
            sparse = Array(repeating: 0, count: capacity)
        }
        mutating func insert(_ pc: Int) -> Bool {
            let i = sparse[pc]
            if i < count, dense[i] == pc { return false }
            sparse[pc] = count
            dense[count] = pc
            count += 1
            return true
        }
        mutating func clear() { count = 0 }
    }

    // MARK: program

    fileprivate enum Instruction: Sendable {
        case scalars(ScalarSet)
        case split(Int, Int)
        case jump(Int)
        case assertStart
        case assertEnd
        case match
    }

    fileprivate struct ScalarSet: Sendable {
        var ranges: [ClosedRange<UInt32>]
        var negated = false
        func contains(_ s: Unicode.Scalar) -> Bool {
            let v = s.value
            var inside = false
            for r in ranges where r.contains(v) { inside = true; break }
            return inside != negated
        }
        static let digit = ScalarSet(ranges: [0x30...0x39])
        static let word = ScalarSet(ranges: [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A])
        static let space = ScalarSet(ranges: [0x09...0x0D, 0x20...0x20])
        static let anyButNewline = ScalarSet(ranges: [0x0A...0x0A], negated: true)
        func inverted() -> ScalarSet { ScalarSet(ranges: ranges, negated: !negated) }
    }

    fileprivate indirect enum Node {
        case empty
        case scalars(ScalarSet)
        case start, end
        case concat([Node])
        case alternation([Node])
        case repeating(Node, min: Int, max: Int?)
    }

    // MARK: parsing

    private struct Parser {
        let scalars: [Unicode.Scalar]
        var i = 0
        var depth = 0

        func fail(_ message: String, at offset: Int? = nil) -> SyntaxError {
            SyntaxError(message: message, offset: offset ?? i)
        }
        var peek: Unicode.Scalar? { i < scalars.count ? scalars[i] : nil }

        mutating func parseAll() throws(SyntaxError) -> Node {
            let node = try parseAlternation()
            if i < scalars.count {   // only an unmatched ')' stops the top level early
                throw fail("unmatched )")
            }
            return node
        }

        mutating func parseAlternation() throws(SyntaxError) -> Node {
            var branches = [try parseConcat()]
            while peek == "|" {
                i += 1
                branches.append(try parseConcat())
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func parseConcat() throws(SyntaxError) -> Node {
            var items: [Node] = []
            while let c = peek, c != "|", c != ")" {
                var atom = try parseAtom()
                atom = try parseQuantifiers(atom)
                items.append(atom)
            }
            return items.isEmpty ? .empty : items.count == 1 ? items[0] : .concat(items)
        }

        mutating func parseQuantifiers(_ atom: Node) throws(SyntaxError) -> Node {
            var node = atom
            var quantified = false
            while let c = peek, c == "*" || c == "+" || c == "?" || c == "{" {
                let at = i
                var min = 0, max: Int? = nil
                switch c {
                case "*": i += 1
                case "+": i += 1; min = 1
                case "?": i += 1; max = 1
                default:
                    guard let (m, n) = try parseBraces() else { return node }   // a literal '{'
                    min = m; max = n
                }
                if quantified { throw fail("a quantifier cannot follow another quantifier", at: at) }
                switch atom {
                case .start, .end, .empty: throw fail("nothing to repeat", at: at)
                default: break
                }
                node = .repeating(node, min: min, max: max)
                quantified = true
                if peek == "?" { i += 1 }   // lazy: same set of matching strings
                if peek == "+" { throw fail("possessive quantifiers are not supported") }
            }
            return node
        }

        /// `{m}`, `{m,}`, `{m,n}`; nil (nothing consumed) when the '{' does not start one, as in most engines.
        mutating func parseBraces() throws(SyntaxError) -> (Int, Int?)? {
            let start = i
            i += 1
            func number(_ p: inout Parser) -> Int? {
                var v: Int? = nil
                while let c = p.peek, ("0"..."9").contains(c) {
                    v = min((v ?? 0) * 10 + Int(c.value - 0x30), 1_000_000)
                    p.i += 1
                }
                return v
            }
            guard let m = number(&self) else { i = start; return nil }
            var n: Int? = m
            if peek == "," {
                i += 1
                n = number(&self)
            }
            guard peek == "}" else { i = start; return nil }
            i += 1
            if let n, n < m { throw fail("repeat {\(m),\(n)} has its bounds reversed", at: start) }
            if m > LinearRegex.maxRepeat || (n ?? 0) > LinearRegex.maxRepeat {
                throw fail("repeat count above \(LinearRegex.maxRepeat)", at: start)
            }
            return (m, n)
        }

        mutating func parseAtom() throws(SyntaxError) -> Node {
            let c = scalars[i]
            switch c {
            case "(":
                let open = i
                i += 1
                if peek == "?" {
                    if i + 1 < scalars.count, scalars[i + 1] == ":" {
                        i += 2
                    } else {
                        throw fail("(? groups other than (?: (lookaround, flags, named groups) are not supported", at: open)
                    }
                }
                depth += 1
                guard depth <= LinearRegex.maxNesting else { throw fail("groups nested deeper than \(LinearRegex.maxNesting)") }
                let inner = try parseAlternation()
                depth -= 1
                guard peek == ")" else { throw fail("unmatched (", at: open) }
                i += 1
                return inner
            case ")":
                throw fail("unmatched )")
            case "*", "+", "?":
                throw fail("nothing to repeat")
            case "^":
                i += 1
                return .start
            case "$":
                i += 1
                return .end
            case ".":
                i += 1
                return .scalars(.anyButNewline)
            case "[":
                return .scalars(try parseClass())
            case "\\":
                return .scalars(try parseEscape(inClass: false))
            default:
                i += 1
                return .scalars(ScalarSet(ranges: [c.value...c.value]))
            }
        }

        /// After a backslash: a class shorthand or an escaped literal.
        mutating func parseEscape(inClass: Bool) throws(SyntaxError) -> ScalarSet {
            let at = i
            i += 1
            guard let e = peek else { throw fail("trailing backslash", at: at) }
            i += 1
            func one(_ v: UInt32) -> ScalarSet { ScalarSet(ranges: [v...v]) }
            switch e {
            case "d": return .digit
            case "D": return ScalarSet.digit.inverted()
            case "w": return .word
            case "W": return ScalarSet.word.inverted()
            case "s": return .space
            case "S": return ScalarSet.space.inverted()
            case "t": return one(0x09)
            case "n": return one(0x0A)
            case "r": return one(0x0D)
            case "f": return one(0x0C)
            case "v": return one(0x0B)
            case "1"..."9", "k", "g":
                throw fail("backreferences are not supported", at: at)
            case "b", "B", "A", "z", "Z", "G":
                throw fail("\\\(e) is not supported (use ^ and $)", at: at)
            default:
                // Any escaped punctuation is itself; escaped letters and digits are reserved.
                if e.isASCII, e.properties.isAlphabetic || ("0"..."9").contains(e) {
                    throw fail("unknown escape \\\(e)", at: at)
                }
                return one(e.value)
            }
        }

        mutating func parseClass() throws(SyntaxError) -> ScalarSet {
            let open = i
            i += 1
            var set = ScalarSet(ranges: [])
            if peek == "^" { set.negated = true; i += 1 }
            var first = true
            while true {
                guard let c = peek else { throw fail("unmatched [", at: open) }
                if c == "]" && !first { i += 1; break }
                first = false
                if c == "[", i + 1 < scalars.count, scalars[i + 1] == ":" || scalars[i + 1] == "=" || scalars[i + 1] == "." {
                    throw fail("POSIX classes like [:alpha:] are not supported; use ranges")
                }
                // One element: a shorthand class, or a scalar that may start a range.
                let low: UInt32
                if c == "\\" {
                    let escaped = try parseEscape(inClass: true)
                    guard escaped.ranges.count == 1, !escaped.negated, escaped.ranges[0].count == 1 else {
                        if escaped.negated {
                            throw fail("negated shorthands (\\D \\W \\S) inside [...] are not supported", at: i - 2)
                        }
                        set.ranges += escaped.ranges
                        continue
                    }
                    low = escaped.ranges[0].lowerBound
                } else {
                    low = c.value
                    i += 1
                }
                // A range a-z, unless the '-' is last (then it is a literal).
                if peek == "-", i + 1 < scalars.count, scalars[i + 1] != "]" {
                    let dash = i
                    i += 1
                    let high: UInt32
                    if peek == "\\" {
                        let escaped = try parseEscape(inClass: true)
                        guard escaped.ranges.count == 1, !escaped.negated, escaped.ranges[0].count == 1 else {
                            throw fail("a range cannot end in a class shorthand", at: dash)
                        }
                        high = escaped.ranges[0].lowerBound
                    } else {
                        high = scalars[i].value
                        i += 1
                    }
                    guard low <= high else { throw fail("range out of order in [...]", at: dash) }
                    set.ranges.append(low...high)
                } else {
                    set.ranges.append(low...low)
                }
            }
            return set
        }
    }

    // MARK: compiling

    private struct Compiler {
        var program: [Instruction] = []

        mutating func append(_ instruction: Instruction) { program.append(instruction) }

        mutating func emit(_ node: Node) throws(SyntaxError) {
            guard program.count <= LinearRegex.maxProgramSize else {
                throw SyntaxError(message: "pattern too complex (more than \(LinearRegex.maxProgramSize) steps once repeats are expanded)", offset: 0)
            }
            switch node {
            case .empty:
                break
            case .scalars(let set):
                append(.scalars(set))
            case .start:
                append(.assertStart)
            case .end:
                append(.assertEnd)
            case .concat(let items):
                for item in items { try emit(item) }
            case .alternation(let branches):
                // split L1, next; L1: a; jump end; next: split L2, … ; last branch falls through.
                var exits: [Int] = []
                for (k, branch) in branches.enumerated() {
                    if k < branches.count - 1 {
                        let split = program.count
                        append(.split(split + 1, -1))
                        try emit(branch)
                        exits.append(program.count)
                        append(.jump(-1))
                        program[split] = .split(split + 1, program.count)
                    } else {
                        try emit(branch)
                    }
                }
                for e in exits { program[e] = .jump(program.count) }
            case .repeating(let inner, let min, let max):
                for _ in 0..<min { try emit(inner) }
                if let max {
                    // (x(x(x)?)?)? for the optional copies, each exiting to the end.
                    var exits: [Int] = []
                    for _ in min..<max {
                        exits.append(program.count)
                        append(.split(program.count + 1, -1))
                        try emit(inner)
                    }
                    for e in exits { program[e] = .split(e + 1, program.count) }
                } else {
                    let loop = program.count
                    append(.split(loop + 1, -1))
                    try emit(inner)
                    append(.jump(loop))
                    program[loop] = .split(loop + 1, program.count)
                }
            }
            guard program.count <= LinearRegex.maxProgramSize else {
                throw SyntaxError(message: "pattern too complex (more than \(LinearRegex.maxProgramSize) steps once repeats are expanded)", offset: 0)
            }
        }
    }
}
