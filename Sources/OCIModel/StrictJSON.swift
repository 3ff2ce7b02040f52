/// Refuses JSON that different parsers read differently: an object with the same key twice
/// (Foundation keeps the first, Go and Python the last), and nesting deeper than a bound.
///
/// One linear pass over the bytes. It tokenizes only as far as it must: strings (so brackets and
/// quotes inside them are skipped) and the brackets themselves; everything else is left to the
/// decoder that runs afterwards. Keys are compared after decoding their escapes, so `"a"` and
/// `"\u0061"` are the same key, and as Swift strings (the equality the decoders use), so
/// canonically equivalent spellings count as duplicates as well. A lone surrogate escape decodes
/// to U+FFFD, as in Go.
public enum StrictJSON {
    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// `key` appears twice in one object; `path` is the keys leading to that object.
        case duplicateKey(String, path: String)
        case tooDeep(limit: Int)
        case malformed(String)

        public var description: String {
            switch self {
            case .duplicateKey(let key, let path):
                "duplicate key \"\(StrictJSON.printable(key))\" in the object at \(path)"
            case .tooDeep(let limit):
                "JSON nested deeper than \(limit) levels"
            case .malformed(let why):
                "malformed JSON: \(why)"
            }
        }
    }

    /// Deep enough for any manifest, Kubernetes object or API body; bounded so the key stack stays small.
    public static let defaultMaxDepth = 128

    /// Throws when `bytes` has a duplicate key at any depth, nests deeper than `maxDepth`, has
    /// unbalanced brackets or an unterminated string. Otherwise returns; the JSON may still be
    /// invalid in ways the decoder reports.
    public static func checkDuplicateKeys(_ bytes: some Collection<UInt8>, maxDepth: Int = defaultMaxDepth) throws(Failure) {
        let array = Array(bytes)   // no copy when `bytes` is already an array
        try array.withUnsafeBufferPointer { (buffer) throws(Failure) -> Void in try scan(buffer, maxDepth: maxDepth) }
    }

    private struct Frame {
        var isObject: Bool
        var keys: Set<String> = []
        /// In an object: the next string is a key (after `{` or `,`).
        var expectingKey = false
        /// The key whose value this container is, for messages.
        var name: String
    }

    private static func scan(_ b: UnsafeBufferPointer<UInt8>, maxDepth: Int) throws(Failure) {
        var stack: [Frame] = []
        var lastKey: String? = nil
        var i = 0
        let n = b.count
        while i < n {
            switch b[i] {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard stack.count < maxDepth else { throw .tooDeep(limit: maxDepth) }
                let isObject = b[i] == UInt8(ascii: "{")
                let name = stack.last.map { $0.isObject ? (lastKey ?? "?") : "[]" } ?? ""
                stack.append(Frame(isObject: isObject, expectingKey: isObject, name: name))
                lastKey = nil
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard let top = stack.popLast(), top.isObject == (b[i] == UInt8(ascii: "}")) else {
                    throw .malformed("unbalanced \(Character(Unicode.Scalar(b[i]))) at byte \(i)")
                }
                lastKey = nil
                i += 1
            case UInt8(ascii: ","):
                if !stack.isEmpty, stack[stack.count - 1].isObject { stack[stack.count - 1].expectingKey = true }
                i += 1
            case UInt8(ascii: "\""):
                let start = i + 1
                var j = start
                var escaped = false
                while j < n, b[j] != UInt8(ascii: "\"") {
                    if b[j] == UInt8(ascii: "\\") {
                        escaped = true
                        j += 1   // skip the escaped byte (a quote or backslash must not end the string)
                    }
                    j += 1
                }
                guard j < n else { throw .malformed("unterminated string at byte \(i)") }
                if !stack.isEmpty, stack[stack.count - 1].expectingKey {
                    let raw = UnsafeBufferPointer(rebasing: b[start..<j])
                    let key = escaped ? try unescape(raw) : String(decoding: raw, as: UTF8.self)
                    stack[stack.count - 1].expectingKey = false
                    guard stack[stack.count - 1].keys.insert(key).inserted else {
                        throw .duplicateKey(key, path: path(stack))
                    }
                    lastKey = key
                }
                i = j + 1
            default:
                i += 1
            }
        }
        guard stack.isEmpty else { throw .malformed("unclosed \(stack[stack.count - 1].isObject ? "object" : "array")") }
    }

    private static func path(_ stack: [Frame]) -> String {
        let names = stack.dropFirst().map { $0.name == "[]" ? "[]" : "." + printable($0.name) }
        return names.isEmpty ? "the top level" : String(names.joined().prefix(200))
    }

    /// A key for a message: at most 100 characters, control characters escaped.
    static func printable(_ key: String) -> String {
        var out = ""
        for scalar in key.unicodeScalars.prefix(100) {
            out += scalar.value < 0x20 || scalar == "\"" || scalar == "\\" ? scalar.escaped(asASCII: true) : String(scalar)
        }
        return key.unicodeScalars.count > 100 ? out + "…" : out
    }

    /// The content of a JSON string (between the quotes) with its escapes decoded.
    private static func unescape(_ raw: UnsafeBufferPointer<UInt8>) throws(Failure) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(raw.count)
        var pendingHigh: UInt32? = nil
        func appendScalar(_ v: UInt32) {
            let scalar = Unicode.Scalar(v) ?? "\u{FFFD}"
            out.append(contentsOf: Array(String(Character(scalar)).utf8))
        }
        func flushHigh() {
            if pendingHigh != nil { appendScalar(0xFFFD); pendingHigh = nil }
        }
        func hex(_ at: Int) throws(Failure) -> UInt32 {
            guard at + 4 <= raw.count else { throw .malformed("short \\u escape") }
            var v: UInt32 = 0
            for k in at..<at + 4 {
                let c = raw[k]
                let d: UInt32
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
                default: throw .malformed("bad \\u escape")
                }
                v = v << 4 | d
            }
            return v
        }
        var i = 0
        while i < raw.count {
            let c = raw[i]
            guard c == UInt8(ascii: "\\"), i + 1 < raw.count else {
                flushHigh()
                out.append(c)
                i += 1
                continue
            }
            let e = raw[i + 1]
            if e == UInt8(ascii: "u") {
                let v = try hex(i + 2)
                i += 6
                if (0xD800...0xDBFF).contains(v) {
                    flushHigh()
                    pendingHigh = v
                } else if (0xDC00...0xDFFF).contains(v) {
                    if let high = pendingHigh {
                        appendScalar(0x10000 + ((high - 0xD800) << 10) + (v - 0xDC00))
                        pendingHigh = nil
                    } else {
                        appendScalar(0xFFFD)
                    }
                } else {
                    flushHigh()
                    appendScalar(v)
                }
                continue
            }
            flushHigh()
            switch e {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            default: out.append(e)   // \" \\ \/ (anything else the decoder refuses)
            }
            i += 2
        }
        flushHigh()
        return String(decoding: out, as: UTF8.self)
    }
}
