import Foundation

/// Checks an uploaded context (a tar archive, someone else's bytes) before it is unpacked: an
/// uncompressed tar only (a compressed stream could expand far past the upload limit), at most
/// `maxEntries` members and `maxBytes` of contents, names relative and without `..`, symbolic
/// and hard links that stay inside the context, no member under a symbolic link, and no device
/// files, FIFOs, sparse or other special members. Only the 512-byte headers are read.
public struct ContextArchiveLimits: Sendable {
    public var maxEntries: Int
    public var maxBytes: Int64

    public init(maxEntries: Int = 100_000, maxBytes: Int64 = 2 << 30) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }

    private struct Member {
        var name: String
        var type: UInt8
        var link: String
    }

    /// Throws a `TaskRunError` naming the first member that is refused.
    public func check(archive path: String) throws(TaskRunError) {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw TaskRunError("cannot read the uploaded context") }
        defer { try? handle.close() }
        var members: [Member] = []
        var total: Int64 = 0
        var longName: String?
        var longLink: String?
        var pax: [String: String] = [:]
        var sawEnd = false
        while true {
            let header: Data
            do { header = try handle.read(upToCount: 512) ?? Data() } catch { throw TaskRunError("cannot read the uploaded context") }
            if header.isEmpty { break }
            let bytes = [UInt8](header)
            guard bytes.count == 512 else {
                throw TaskRunError(members.isEmpty ? Self.notTar(bytes) : "the uploaded context is not a tar archive (truncated)")
            }
            if bytes.allSatisfy({ $0 == 0 }) { sawEnd = true; break }
            guard Self.checksumMatches(bytes) else {
                throw TaskRunError(members.isEmpty ? Self.notTar(bytes) : "the uploaded context has a damaged tar header after \(members.count) members")
            }
            let type = bytes[156]
            var size = try Self.size(bytes)
            if let s = pax["size"], let v = Int64(s), v >= 0 { size = v }
            let padded = (size + 511) / 512 * 512
            // Members whose contents are metadata for the next one.
            if type == UInt8(ascii: "L") || type == UInt8(ascii: "K") || type == UInt8(ascii: "x") || type == UInt8(ascii: "g") {
                guard size <= 1 << 20 else { throw TaskRunError("the uploaded context has a tar extended header of \(size) bytes") }
                let data: Data
                do { data = try handle.read(upToCount: Int(padded)) ?? Data() } catch { throw TaskRunError("cannot read the uploaded context") }
                guard data.count == Int(padded) else { throw TaskRunError("the uploaded context is not a tar archive (truncated)") }
                let body = [UInt8](data.prefix(Int(size)))
                switch type {
                case UInt8(ascii: "L"): longName = Self.string(body[...])
                case UInt8(ascii: "K"): longLink = Self.string(body[...])
                case UInt8(ascii: "x"): pax.merge(try Self.paxRecords(body), uniquingKeysWith: { $1 })
                default:
                    let global = try Self.paxRecords(body)
                    guard global["path"] == nil, global["linkpath"] == nil, global["size"] == nil else {
                        throw TaskRunError("the uploaded context has a tar global header that sets names or sizes")
                    }
                }
                continue
            }
            var name = Self.string(bytes[0..<100])
            let magic = Self.string(bytes[257..<263])
            if magic.hasPrefix("ustar") {
                let prefix = Self.string(bytes[345..<500])
                if !prefix.isEmpty && magic == "ustar" { name = prefix + "/" + name }
            }
            if let long = longName { name = long }
            if let p = pax["path"] { name = p }
            var link = Self.string(bytes[157..<257])
            if let long = longLink { link = long }
            if let p = pax["linkpath"] { link = p }
            longName = nil; longLink = nil; pax = [:]

            guard members.count < maxEntries else {
                throw TaskRunError("the uploaded context has more than \(maxEntries) members")
            }
            let member = Member(name: try Self.relative(name), type: type, link: link)
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                total += size
                guard total <= maxBytes else {
                    throw TaskRunError("the uploaded context unpacks to more than \(maxBytes) bytes")
                }
            case UInt8(ascii: "5"), UInt8(ascii: "1"), UInt8(ascii: "2"):
                break
            case UInt8(ascii: "3"), UInt8(ascii: "4"):
                throw TaskRunError("the uploaded context has a device file: \(Confined.quote(name))")
            case UInt8(ascii: "6"):
                throw TaskRunError("the uploaded context has a FIFO: \(Confined.quote(name))")
            default:
                throw TaskRunError("the uploaded context has a member of unsupported type \(Confined.quote(String(UnicodeScalar(type)))): \(Confined.quote(name))")
            }
            members.append(member)
            do { try handle.seek(toOffset: handle.offsetInFile + UInt64(padded)) } catch {
                throw TaskRunError("the uploaded context is not a tar archive (truncated)")
            }
        }
        guard sawEnd || !members.isEmpty else { throw TaskRunError("the uploaded context is not a tar archive") }
        // Links are checked against every symbolic link of the archive, whatever their order.
        let symlinks = Set(members.filter { $0.type == UInt8(ascii: "2") }.map(\.name))
        for member in members {
            let parts = member.name.split(separator: "/").map(String.init)
            for end in parts.indices.dropLast() where symlinks.contains(parts[...end].joined(separator: "/")) {
                throw TaskRunError("the uploaded context has a member under a symbolic link: \(Confined.quote(member.name))")
            }
            if member.type == UInt8(ascii: "1") {
                guard let target = try? Self.relative(member.link) else {
                    throw TaskRunError("the uploaded context has a hard link leading out of it: \(Confined.quote(member.name))")
                }
                let targetParts = target.split(separator: "/").map(String.init)
                for end in targetParts.indices.dropLast() where symlinks.contains(targetParts[...end].joined(separator: "/")) {
                    throw TaskRunError("the uploaded context has a hard link through a symbolic link: \(Confined.quote(member.name))")
                }
            } else if member.type == UInt8(ascii: "2") {
                guard Self.staysInside(link: member.link, at: parts, symlinks: symlinks) else {
                    throw TaskRunError("the uploaded context has a symbolic link leading out of it: \(Confined.quote(member.name)) -> \(Confined.quote(member.link))")
                }
            }
        }
    }

    /// A symbolic link's target, from the link's directory, never above the context's root and
    /// never going up (`..`) from under another symbolic link.
    static func staysInside(link: String, at parts: [String], symlinks: Set<String>) -> Bool {
        guard !link.isEmpty, !link.hasPrefix("/") else { return false }
        var stack = Array(parts.dropLast())
        for component in link.split(separator: "/", omittingEmptySubsequences: true).map(String.init) {
            if component == "." { continue }
            if component == ".." {
                guard !stack.isEmpty else { return false }
                for end in stack.indices where symlinks.contains(stack[...end].joined(separator: "/")) { return false }
                stack.removeLast()
            } else {
                stack.append(component)
            }
        }
        return true
    }

    /// A member name made relative (`./` dropped), refused when absolute, empty or with `..`.
    static func relative(_ name: String) throws(TaskRunError) -> String {
        guard !name.hasPrefix("/") else { throw TaskRunError("the uploaded context has an absolute name: \(Confined.quote(name))") }
        let parts = name.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        guard !parts.contains("..") else { throw TaskRunError("the uploaded context has a name with '..': \(Confined.quote(name))") }
        guard !parts.isEmpty else {
            if name.split(separator: "/").allSatisfy({ $0 == "." }) && !name.isEmpty { return "." }
            throw TaskRunError("the uploaded context has a member without a name")
        }
        return parts.joined(separator: "/")
    }

    static func string(_ bytes: ArraySlice<UInt8>) -> String {
        let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
        return String(decoding: bytes[bytes.startIndex..<end], as: UTF8.self)
    }

    static func checksumMatches(_ bytes: [UInt8]) -> Bool {
        let field = string(bytes[148..<156]).trimmingCharacters(in: .whitespaces)
        guard let stored = Int(field, radix: 8) else { return false }
        var sum = 0
        for (i, b) in bytes.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(b) }
        return sum == stored
    }

    static func notTar(_ bytes: [UInt8]) -> String {
        let compressed = bytes.starts(with: [0x1f, 0x8b]) || bytes.starts(with: Array("BZh".utf8))
            || bytes.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a]) || bytes.starts(with: [0x28, 0xb5, 0x2f, 0xfd])
        return compressed ? "the uploaded context is compressed: send an uncompressed tar archive"
                          : "the uploaded context is not a tar archive"
    }

    static func size(_ bytes: [UInt8]) throws(TaskRunError) -> Int64 {
        if bytes[124] & 0x80 != 0 {
            // base-256: larger than any limit here.
            throw TaskRunError("the uploaded context has a member larger than 8 GiB")
        }
        let field = string(bytes[124..<136]).trimmingCharacters(in: .whitespaces)
        if field.isEmpty { return 0 }
        guard let value = Int64(field, radix: 8), value >= 0 else { throw TaskRunError("the uploaded context has a damaged tar header") }
        return value
    }

    /// `LEN KEY=VALUE\n` records of a pax header.
    static func paxRecords(_ body: [UInt8]) throws(TaskRunError) -> [String: String] {
        var records: [String: String] = [:]
        var i = 0
        while i < body.count {
            guard let space = body[i...].firstIndex(of: 0x20), let length = Int(string(body[i..<space])), length > 0,
                  i + length <= body.count, body[i + length - 1] == 0x0a else {
                if body[i...].allSatisfy({ $0 == 0 }) { break }
                throw TaskRunError("the uploaded context has a damaged tar extended header")
            }
            let record = String(decoding: body[(space + 1)..<(i + length - 1)], as: UTF8.self)
            if let eq = record.firstIndex(of: "=") { records[String(record[..<eq])] = String(record[record.index(after: eq)...]) }
            i += length
        }
        return records
    }
}
