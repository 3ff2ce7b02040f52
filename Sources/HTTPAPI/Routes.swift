import OCIModel

/// A request path of the distribution API, parsed from its last components because repository
/// names contain slashes.
enum V2Route: Equatable {
    case base
    case catalog
    case tags(name: String)
    case manifest(name: String, reference: String)
    case blob(name: String, digest: String)
    case uploads(name: String)
    case upload(name: String, id: String)
    case referrers(name: String, digest: String)

    /// nil when the path is not a distribution API path at all.
    static func parse(_ path: Substring) -> V2Route? {
        guard path.hasPrefix("/v2") else { return nil }
        let rest = path.dropFirst(3)
        if rest.isEmpty || rest == "/" { return .base }
        guard rest.first == "/" else { return nil }
        let body = rest.dropFirst()
        if body == "_catalog" { return .catalog }
        var parts = body.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return nil }
        func name(dropping n: Int) -> String { parts.dropLast(n).joined(separator: "/") }
        let last = parts[parts.count - 1]
        let second = parts[parts.count - 2]
        if parts.count >= 3, parts[parts.count - 3] == "blobs", second == "uploads" {
            return last.isEmpty ? .uploads(name: name(dropping: 3)) : .upload(name: name(dropping: 3), id: String(last))
        }
        if second == "blobs", last == "uploads" { return .uploads(name: name(dropping: 2)) }
        if second == "tags", last == "list" { return .tags(name: name(dropping: 2)) }
        if second == "manifests" { return .manifest(name: name(dropping: 2), reference: String(last)) }
        if second == "blobs" { return .blob(name: name(dropping: 2), digest: String(last)) }
        if second == "referrers" { return .referrers(name: name(dropping: 2), digest: String(last)) }
        parts.removeAll()
        return nil
    }
}

/// `Range: bytes=a-b` of a blob GET. Returns nil for no (or an ignorable) header, or the
/// satisfiable range; throws 416 when it cannot be satisfied.
enum ByteRange {
    static func parse(_ header: String?, size: Int64) throws(RegistryError) -> Range<Int64>? {
        guard let header, header.hasPrefix("bytes=") else { return nil }
        let spec = header.dropFirst(6)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let a = spec[spec.startIndex..<dash].trimmingCharacters(in: .whitespaces)
        let b = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        let unsatisfiable = RegistryError(.rangeInvalid, "range not satisfiable for a blob of \(size) bytes", status: 416)
        if a.isEmpty {
            guard let suffix = Int64(b), suffix >= 0 else { return nil }
            guard suffix > 0, size > 0 else { throw unsatisfiable }
            return max(0, size - suffix)..<size
        }
        guard let start = Int64(a), start >= 0 else { return nil }
        guard start < size else { throw unsatisfiable }
        if b.isEmpty { return start..<size }
        guard let end = Int64(b), end >= start else { return nil }
        return start..<min(end + 1, size)
    }
}

/// `Content-Range` of an upload chunk: `start-end` (some clients prefix `bytes ` or add `/total`).
enum ChunkRange {
    static func parse(_ header: String?) throws(RegistryError) -> (start: Int64, end: Int64)? {
        guard var value = header?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if value.hasPrefix("bytes ") { value.removeFirst(6) }
        if let slash = value.firstIndex(of: "/") { value = String(value[..<slash]) }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let start = Int64(parts[0]), let end = Int64(parts[1]), start >= 0, end >= start else {
            throw RegistryError(.rangeInvalid, "invalid Content-Range", status: 416)
        }
        return (start, end)
    }
}
