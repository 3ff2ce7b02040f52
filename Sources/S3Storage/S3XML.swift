/// The small XML subset S3 answers in: a prolog, elements (attributes ignored), text with the five
/// named and numeric character references, comments. Anything else — a DOCTYPE (so no entity
/// expansion of any kind), CDATA, a mismatched or missing end tag, content after the root, more
/// than `maxDepth` levels or `maxBytes` bytes — is refused with `S3XMLError`, never a crash.
/// Written here rather than taken from FoundationXML so the self-contained release binary does not
/// need libxml2.
public struct S3XMLElement: Sendable, Equatable {
    public var name: String
    public var text: String
    public var children: [S3XMLElement]

    public func child(_ name: String) -> S3XMLElement? { children.first { $0.name == name } }
    public func all(_ name: String) -> [S3XMLElement] { children.filter { $0.name == name } }
    /// The text of the first child called `name`.
    public func value(_ name: String) -> String? { child(name)?.text }
}

public struct S3XMLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public let offset: Int
    public var description: String { "malformed XML from the object store at byte \(offset): \(reason)" }
}

public enum S3XML {
    public static let maxBytes = 16 << 20
    public static let maxDepth = 16

    public static func parse(_ input: [UInt8]) throws(S3XMLError) -> S3XMLElement {
        var p = Parser(bytes: input)
        return try p.document()
    }

    /// Escapes text for an element's content.
    public static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        func fail(_ reason: String) -> S3XMLError { S3XMLError(reason: reason, offset: i) }

        func peek(_ s: String) -> Bool {
            let u = Array(s.utf8)
            return i + u.count <= bytes.count && Array(bytes[i..<i + u.count]) == u
        }

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 }
        }

        /// Skips up to and including `end`.
        mutating func skip(past end: String, what: String) throws(S3XMLError) {
            let u = Array(end.utf8)
            while i + u.count <= bytes.count {
                if Array(bytes[i..<i + u.count]) == u { i += u.count; return }
                i += 1
            }
            throw fail("unterminated \(what)")
        }

        /// Comments and processing instructions between elements.
        mutating func skipMisc() throws(S3XMLError) {
            while true {
                skipSpace()
                if peek("<?") { try skip(past: "?>", what: "processing instruction") }
                else if peek("<!--") { try skip(past: "-->", what: "comment") }
                else if peek("<!") { throw fail("DOCTYPE and CDATA are not accepted") }
                else { return }
            }
        }

        mutating func document() throws(S3XMLError) -> S3XMLElement {
            guard bytes.count <= S3XML.maxBytes else { throw fail("document larger than \(S3XML.maxBytes) bytes") }
            try skipMisc()
            guard i < bytes.count else { throw fail("no root element") }
            let root = try element(depth: 1)
            try skipMisc()
            guard i == bytes.count else { throw fail("content after the root element") }
            return root
        }

        mutating func name() throws(S3XMLError) -> String {
            let start = i
            while i < bytes.count {
                let b = bytes[i]
                if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x3E || b == 0x2F || b == 0x3C || b == 0x3D { break }
                i += 1
            }
            guard i > start, i < bytes.count else { throw fail(i >= bytes.count ? "truncated in a tag" : "empty element name") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        mutating func element(depth: Int) throws(S3XMLError) -> S3XMLElement {
            guard depth <= S3XML.maxDepth else { throw fail("elements nested deeper than \(S3XML.maxDepth)") }
            guard peek("<") else { throw fail("expected an element") }
            i += 1
            let tag = try name()
            // Attributes (namespaces) are skipped, quotes respected.
            var quote: UInt8? = nil
            while i < bytes.count {
                let b = bytes[i]
                if let q = quote { if b == q { quote = nil } }
                else if b == 0x22 || b == 0x27 { quote = b }
                else if b == 0x3C { throw fail("'<' inside a tag") }
                else if b == 0x3E || b == 0x2F { break }
                i += 1
            }
            guard i < bytes.count else { throw fail("truncated in tag <\(tag)>") }
            if bytes[i] == 0x2F {
                guard peek("/>") else { throw fail("stray '/' in tag <\(tag)>") }
                i += 2
                return S3XMLElement(name: tag, text: "", children: [])
            }
            i += 1 // '>'
            var node = S3XMLElement(name: tag, text: "", children: [])
            var text: [UInt8] = []
            while true {
                guard i < bytes.count else { throw fail("truncated: <\(tag)> is not closed") }
                let b = bytes[i]
                if b == 0x3C {
                    if peek("</") {
                        i += 2
                        let end = try name()
                        skipSpace()
                        guard end == tag, i < bytes.count, bytes[i] == 0x3E else {
                            throw fail("</\(end)> does not close <\(tag)>")
                        }
                        i += 1
                        node.text = String(decoding: text, as: UTF8.self)
                        return node
                    } else if peek("<!--") {
                        try skip(past: "-->", what: "comment")
                    } else if peek("<?") {
                        try skip(past: "?>", what: "processing instruction")
                    } else if peek("<!") {
                        throw fail("DOCTYPE and CDATA are not accepted")
                    } else {
                        node.children.append(try element(depth: depth + 1))
                    }
                } else if b == 0x26 {
                    text.append(contentsOf: try reference())
                } else {
                    text.append(b)
                    i += 1
                }
            }
        }

        mutating func reference() throws(S3XMLError) -> [UInt8] {
            let start = i
            while i < bytes.count, bytes[i] != 0x3B, i - start < 12 { i += 1 }
            guard i < bytes.count, bytes[i] == 0x3B else { throw fail("unterminated character reference") }
            let body = String(decoding: bytes[(start + 1)..<i], as: UTF8.self)
            i += 1
            switch body {
            case "amp": return Array("&".utf8)
            case "lt": return Array("<".utf8)
            case "gt": return Array(">".utf8)
            case "quot": return Array("\"".utf8)
            case "apos": return Array("'".utf8)
            default:
                var number: UInt32?
                if body.hasPrefix("#x") { number = UInt32(body.dropFirst(2), radix: 16) }
                else if body.hasPrefix("#") { number = UInt32(body.dropFirst(1), radix: 10) }
                guard let n = number, n != 0, let scalar = Unicode.Scalar(n) else { throw fail("unknown reference &\(body);") }
                return Array(String(Character(scalar)).utf8)
            }
        }
    }
}
