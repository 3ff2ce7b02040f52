/// Repository-name and tag grammar from the OCI distribution-spec:
/// name = `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
/// tag  = `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
public struct RepositoryName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let value: String
    public var description: String { value }
    public static func < (l: RepositoryName, r: RepositoryName) -> Bool { l.value < r.value }

    /// Longest accepted name. The spec lets registries cap names; with the host part a
    /// reference must stay under 255 characters, so names are capped at 255 as well.
    public static let maxLength = 255

    public init(_ raw: String) throws(RegistryError) {
        guard RepositoryName.isValid(raw) else {
            throw RegistryError(.nameInvalid, "invalid repository name: \(raw.prefix(120))")
        }
        value = raw
    }

    public static func isValid(_ raw: String) -> Bool {
        let bytes = Array(raw.utf8)
        guard !bytes.isEmpty, bytes.count <= maxLength else { return false }
        for component in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            guard isValidComponent(component) else { return false }
        }
        return true
    }

    private static func isAlnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) }

    /// component = alnum+ (sep alnum+)*, sep = "." | "_" | "__" | "-"+
    private static func isValidComponent(_ c: ArraySlice<UInt8>) -> Bool {
        guard let first = c.first, let last = c.last, isAlnum(first), isAlnum(last) else { return false }
        var i = c.startIndex
        while i < c.endIndex {
            let b = c[i]
            if isAlnum(b) { i += 1; continue }
            // a separator run
            var j = i
            while j < c.endIndex, !isAlnum(c[j]) { j += 1 }
            let sep = c[i..<j]
            let ok: Bool
            if sep.allSatisfy({ $0 == UInt8(ascii: "-") }) {
                ok = true
            } else if sep.count == 1 {
                ok = sep.first == UInt8(ascii: ".") || sep.first == UInt8(ascii: "_")
            } else if sep.count == 2 {
                ok = sep.allSatisfy { $0 == UInt8(ascii: "_") }
            } else {
                ok = false
            }
            if !ok { return false }
            i = j
        }
        return true
    }
}

public enum Tag {
    public static func isValid(_ raw: some StringProtocol) -> Bool {
        let bytes = raw.utf8
        guard let first = bytes.first, bytes.count <= 128 else { return false }
        func word(_ b: UInt8) -> Bool {
            (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) || b == 0x5f
        }
        guard word(first) else { return false }
        return bytes.allSatisfy { word($0) || $0 == 0x2e || $0 == 0x2d }
    }
}

/// The `<reference>` of a manifest URL: a tag or a digest.
public enum Reference: Hashable, Sendable, CustomStringConvertible {
    case tag(String)
    case digest(Digest)

    public init(parsing raw: String) throws(RegistryError) {
        if raw.contains(":") {
            do {
                self = .digest(try Digest(parsing: raw))
            } catch {
                throw RegistryError(.digestInvalid, "invalid digest reference: \(raw.prefix(120))")
            }
        } else if Tag.isValid(raw) {
            self = .tag(raw)
        } else {
            throw RegistryError(.manifestInvalid, "invalid tag: \(raw.prefix(130))", status: 400)
        }
    }

    public var description: String {
        switch self {
        case .tag(let t): t
        case .digest(let d): d.string
        }
    }
}
