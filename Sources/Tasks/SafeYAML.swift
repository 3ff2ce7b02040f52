import CYaml
import Yams

/// Loads YAML that someone else wrote, refusing what would hurt before Yams composes it.
///
/// Order of checks: the byte cap, UTF-8 validity (with the line of the first bad byte), the
/// reserved characters, then one pass over libyaml's event stream (linear in the text) that
/// counts nodes and depth *as if every alias were expanded* and refuses past the caps. Only a
/// file that passes is composed by Yams; so neither Yams' composer (which hashes mapping keys,
/// aliases included) nor the walkers of this module ever see an exponential tree.
///
/// Go-template markers `{{ … }}` are not YAML: ACR task files write them unquoted, e.g.
/// `- {{.Run.Registry}}/app:{{.Run.ID}}`, which YAML would read as a flow mapping. Before
/// parsing, each `{{` and its closing `}}` on the same line are swapped for two noncharacters
/// (U+FDD0, U+FDD1) each, so YAML sees plain text and lines and columns do not move;
/// `SafeYAML.text(of:)` swaps them back. A file that contains either noncharacter is refused.
enum SafeYAML {
    // Swift refuses noncharacters in literals, so they are built from their values.
    static let open = Unicode.Scalar(0xFDD0 as UInt32)!
    static let close = Unicode.Scalar(0xFDD1 as UInt32)!

    /// Parses one YAML document. `source` names the input in errors.
    static func load(_ bytes: [UInt8], limits: TaskLimits, source: String) throws(TaskFileError) -> Node {
        guard bytes.count <= limits.maxFileBytes else {
            throw TaskFileError(.tooLarge, line: 0,
                                "\(bytes.count) bytes is more than the \(limits.maxFileBytes) bytes a \(source) may have",
                                source: source)
        }
        try validateUTF8(bytes, source: source)
        let protected = protectTemplates(bytes)
        try scanEvents(protected, limits: limits, source: source)
        let text = String(decoding: protected, as: UTF8.self)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw TaskFileError(.syntax, line: line(of: error), "not valid YAML: \(brief(error))", source: source)
        } catch {
            throw TaskFileError(.syntax, line: 1, "not valid YAML", source: source)
        }
        guard let root else {
            throw TaskFileError(.missingKey, line: 1, "the \(source) is empty", source: source)
        }
        return root
    }

    /// The string of a scalar with the template markers put back.
    static func text(of scalar: Node.Scalar) -> String {
        let s = scalar.string
        guard s.unicodeScalars.contains(where: { $0 == open || $0 == close }) else { return s }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            switch u {
            case open: out.append("{")
            case close: out.append("}")
            default: out.append(u)
            }
        }
        return String(out)
    }

    // MARK: - encoding

    static func validateUTF8(_ bytes: [UInt8], source: String) throws(TaskFileError) {
        var line = 1
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        loop: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let u):
                if u == "\n" { line += 1 }
                if u == open || u == close {
                    throw TaskFileError(.invalidEncoding, line: line,
                                        "the noncharacter U+\(String(u.value, radix: 16, uppercase: true)) is reserved and may not appear",
                                        source: source)
                }
            case .emptyInput:
                break loop
            case .error:
                throw TaskFileError(.invalidEncoding, line: line, "not valid UTF-8", source: source)
            }
        }
    }

    /// Swaps `{{` … `}}` (on one line) for U+FDD0 U+FDD0 … U+FDD1 U+FDD1.
    static func protectTemplates(_ bytes: [UInt8]) -> [UInt8] {
        let lbrace = UInt8(ascii: "{"), rbrace = UInt8(ascii: "}"), newline = UInt8(ascii: "\n")
        let openBytes = Array(String(Character(open)).utf8), closeBytes = Array(String(Character(close)).utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        var i = 0
        while i < bytes.count {
            if bytes[i] == lbrace, i + 1 < bytes.count, bytes[i + 1] == lbrace {
                // find the closing braces on this line
                var j = i + 2
                while j + 1 < bytes.count, bytes[j] != newline, !(bytes[j] == rbrace && bytes[j + 1] == rbrace) { j += 1 }
                if j + 1 < bytes.count, bytes[j] == rbrace, bytes[j + 1] == rbrace {
                    out += openBytes + openBytes
                    out += bytes[(i + 2)..<j]
                    out += closeBytes + closeBytes
                    i = j + 2
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        return out
    }

    // MARK: - the event pass

    private struct Frame {
        var anchor: String?
        var size = 1
        var depth = 1
    }

    private struct Scan {
        var frames: [Frame] = []
        var anchors: [String: (size: Int, depth: Int)] = [:]
        var expanded = 0
        var documents = 0
    }

    /// One pass over libyaml's events: syntax errors, documents, depth and expanded node count.
    static func scanEvents(_ bytes: [UInt8], limits: TaskLimits, source: String) throws(TaskFileError) {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw TaskFileError(.syntax, line: 0, "out of memory", source: source)
        }
        defer { yaml_parser_delete(&parser) }
        let failure: TaskFileError? = bytes.withUnsafeBufferPointer { buffer in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var scan = Scan()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "unreadable"
                    let context = parser.context.map { String(cString: $0) + ": " } ?? ""
                    // A reader error (e.g. a control character) has an offset, not a mark.
                    let line = parser.error == YAML_READER_ERROR
                        ? 1 + buffer.prefix(min(Int(parser.problem_offset), buffer.count)).count { $0 == UInt8(ascii: "\n") }
                        : Int(parser.problem_mark.line) + 1
                    return TaskFileError(.syntax, line: line,
                                         "not valid YAML: \(context)\(problem)", source: source)
                }
                defer { yaml_event_delete(&event) }
                let line = Int(event.start_mark.line) + 1
                if let error = step(&scan, event: event, line: line, limits: limits, source: source) { return error }
                if event.type == YAML_STREAM_END_EVENT { return nil }
            }
        }
        if let failure { throw failure }
    }

    private static func anchorName(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        pointer.map { String(cString: $0) }
    }

    /// Accounts one event; returns the refusal, if any.
    private static func step(_ scan: inout Scan, event: yaml_event_t, line: Int,
                             limits: TaskLimits, source: String) -> TaskFileError? {
        // Adds a finished node (its expanded size and depth) to its parent or registers it.
        func add(size: Int, depth: Int, anchor: String?) -> TaskFileError? {
            if let anchor { scan.anchors[anchor] = (size, depth) }
            if var parent = scan.frames.popLast() {
                parent.size += size
                parent.depth = max(parent.depth, depth + 1)
                scan.frames.append(parent)
            }
            return nil
        }
        func count(_ size: Int, depth: Int) -> TaskFileError? {
            scan.expanded += size
            if scan.expanded > limits.maxNodes {
                return TaskFileError(.tooManyNodes, line: line,
                                     "more than \(limits.maxNodes) YAML nodes once aliases are expanded", source: source)
            }
            if scan.frames.count + depth > limits.maxDepth {
                return TaskFileError(.tooDeep, line: line,
                                     "nested more than \(limits.maxDepth) levels deep", source: source)
            }
            return nil
        }
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            scan.documents += 1
            if scan.documents > 1 {
                return TaskFileError(.syntax, line: line, "a \(source) is one YAML document; found a second", source: source)
            }
        case YAML_SCALAR_EVENT:
            if let error = count(1, depth: 0) { return error }
            return add(size: 1, depth: 0, anchor: anchorName(event.data.scalar.anchor))
        case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
            if let error = count(1, depth: 1) { return error }
            let anchor = event.type == YAML_SEQUENCE_START_EVENT
                ? anchorName(event.data.sequence_start.anchor) : anchorName(event.data.mapping_start.anchor)
            scan.frames.append(Frame(anchor: anchor))
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let frame = scan.frames.popLast() else { return nil }
            return add(size: frame.size, depth: frame.depth, anchor: frame.anchor)
        case YAML_ALIAS_EVENT:
            let name = anchorName(event.data.alias.anchor) ?? ""
            guard let target = scan.anchors[name] else {
                return TaskFileError(.syntax, line: line, "alias *\(name) refers to no anchor before it", source: source)
            }
            if let error = count(target.size, depth: target.depth) { return error }
            return add(size: target.size, depth: target.depth, anchor: nil)
        default:
            break
        }
        return nil
    }

    // MARK: - Yams errors

    private static func line(of error: YamlError) -> Int {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        case .duplicatedKeysInMapping(_, let context):
            return context.mark.line
        default:
            return 1
        }
    }

    private static func brief(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        case .duplicatedKeysInMapping(let duplicates, _):
            return "duplicate key \(quoted(duplicates.first ?? ""))"
        default:
            return "unreadable"
        }
    }
}
