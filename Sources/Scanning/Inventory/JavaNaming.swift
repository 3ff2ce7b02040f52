/// How a Java archive without a matching `pom.properties` gets its name and version: from its
/// file name first, then from its manifest. The rules are Syft's (v1.18, `archive_filename.go` and
/// `parse_java_manifest.go`), so that Berth's inventory and Syft's agree on the same image.

/// A Java archive's file name split into name and version. The name is dash-separated words that
/// each start with a letter (`commons-lang3`, `guice-no-aop`); the version starts at the first
/// `-` followed by a digit, `build` and a digit, or `r`/`rc` and only digits (`3.12.0`,
/// `0.1~+svn49`, `r4`). A name with no such version may still end in `_1.2`, `.1.2` or `-1.2`.
/// A file name that does not fit (`1up.jar`, `a+b-1.jar`) has neither.
struct JavaArchiveFilename: Equatable {
    var name: String
    var version: String

    init(name: String, version: String) { self.name = name; self.version = version }

    /// `path` may name an archive inside another (`app.war!WEB-INF/lib/x-1.jar`).
    init(path: String) {
        let base = path.split(whereSeparator: { $0 == "/" || $0 == "!" }).last.map(String.init) ?? path
        // Go's filepath.Ext: from the last dot of the base name.
        let stem = base.lastIndex(of: ".").map { String(base[..<$0]) } ?? base
        let s = Array(stem.unicodeScalars)
        var found: (name: Int, version: Int?)?
        // The shortest name that is followed by the end or by "-VERSION".
        var i = 0
        while i < s.count {
            let c = s[i]
            if i == 0 {
                guard Self.isAlpha(c) else { break }
            } else {
                guard Self.isWord(c) || c == "." || c == "-" else { break }
                if s[i - 1] == "-" && !Self.isAlpha(c) { break }
            }
            i += 1
            if i == s.count { found = (i, nil); break }
            if s[i] == "-", Self.isVersion(s[(i + 1)...], caseInsensitive: true) { found = (i, i + 1); break }
        }
        guard let found else { self.init(name: "", version: ""); return }
        var name = String(String.UnicodeScalarView(s[..<found.name]))
        var version = found.version.map { String(String.UnicodeScalarView(s[$0...])) } ?? ""
        if version.isEmpty {
            // Other conventions: "foo_1.2", "foo.1.2" (the first separator that starts a version;
            // "foo-v1.2", a whole name to the pattern above, splits at its ".": "foo-v1", "2").
            let n = Array(name.unicodeScalars)
            if let p = n.indices.first(where: { ["_", ".", "-"].contains(n[$0]) && Self.isVersion(n[($0 + 1)...], caseInsensitive: false) }) {
                version = String(String.UnicodeScalarView(n[(p + 1)...]))
                name = String(String.UnicodeScalarView(n[..<p]))
            }
        }
        self.init(name: name, version: version)
    }

    /// `\d.*`, `build\d+.*` or `rc?\d+` (to the end). Looks at no more than the digits it needs,
    /// so trying it after every separator of a long name stays linear.
    static func isVersion(_ v: ArraySlice<Unicode.Scalar>, caseInsensitive: Bool) -> Bool {
        guard let first = v.first else { return false }
        if isDigit(first) { return true }
        func lower(_ c: Unicode.Scalar) -> Unicode.Scalar {
            caseInsensitive && ("A"..."Z").contains(c) ? Unicode.Scalar(c.value + 32)! : c
        }
        var i = v.startIndex
        if v.count > 5, zip(v.prefix(5), "build".unicodeScalars).allSatisfy({ lower($0) == $1 }), isDigit(v[i + 5]) { return true }
        guard lower(first) == "r" else { return false }
        i += 1
        if i < v.endIndex, lower(v[i]) == "c" { i += 1 }
        guard i < v.endIndex else { return false }
        while i < v.endIndex { guard isDigit(v[i]) else { return false }; i += 1 }
        return true
    }

    static func isAlpha(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) }
    static func isDigit(_ c: Unicode.Scalar) -> Bool { ("0"..."9").contains(c) }
    static func isWord(_ c: Unicode.Scalar) -> Bool { isAlpha(c) || isDigit(c) || c == "_" }

    /// The name as a package name: a dotted name whose every part starts like a Java identifier
    /// (`jakarta.activation-api`) is a group and an artifact; the artifact is the last part.
    /// `org.eclipse.*` bundles keep their whole name.
    var packageName: String {
        guard name.contains("."), !name.hasPrefix("org.eclipse.") else { return name }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        let identifiers = parts.allSatisfy { p in p.unicodeScalars.first.map { Self.isAlpha($0) || $0 == "_" } ?? false }
        return identifiers ? String(parts.last!) : name
    }
}

/// `META-INF/MANIFEST.MF`: `Key: Value` lines, continuation lines starting with a space, sections
/// separated by blank lines; the first section is the main one. Read leniently (a line without a
/// colon is skipped), as Syft reads it.
struct JavaManifest {
    var sections: [[(key: String, value: String)]] = []

    init(_ bytes: [UInt8]) {
        var lastKey = false
        for raw in TextLines.lines(bytes) {
            let line = String(raw)
            if line.isEmpty { lastKey = false; continue }
            if line.hasPrefix(" ") {
                guard lastKey, !sections.isEmpty, !sections[sections.count - 1].isEmpty else { continue }
                let s = sections.count - 1, k = sections[s].count - 1
                // Appended up to the field bound, and only what adds something (a hostile manifest
                // of many continuation lines would otherwise copy the whole value once per line).
                let piece = line.trimmingCharacters(in: .whitespaces)
                let room = TextLines.maxField - sections[s][k].value.utf8.count
                guard !piece.isEmpty, room > 0 else { continue }
                if piece.utf8.count <= room {
                    sections[s][k].value += piece
                } else {
                    // Cut at a character: a cut sequence would read as U+FFFD, past the bound.
                    var cut = String(decoding: piece.utf8.prefix(room), as: UTF8.self)
                    while cut.utf8.count > room { cut.removeLast() }
                    sections[s][k].value += cut
                }
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { continue }
            if !lastKey { sections.append([]) }
            sections[sections.count - 1].append((TextLines.clip(key), TextLines.clip(line[line.index(after: colon)...])))
            lastKey = true
        }
    }

    /// A main-section attribute (the first of that name), nil when absent.
    func main(_ key: String) -> String? { sections.first?.first { $0.key == key }?.value }

    /// The main section's value, else the first per-entry section's.
    func anySection(_ key: String) -> String? {
        for section in sections { if let v = section.first(where: { $0.key == key })?.value, !v.isEmpty { return v } }
        return nil
    }

    /// The archive's name when no pom.properties names it: a Maven Bundle Plugin bundle's symbolic
    /// name (its last part), else the file's name, else the manifest's title attributes.
    func selectName(_ filename: JavaArchiveFilename) -> String {
        if main("Created-By")?.contains("Apache Maven Bundle Plugin") == true, let symbolic = main("Bundle-SymbolicName"), !symbolic.isEmpty,
           main("Implementation-Vendor-Id") != symbolic {
            let last = symbolic.split(separator: ".", omittingEmptySubsequences: false).last.map(String.init) ?? ""
            if !last.isEmpty { return last }
        }
        let fromFile = filename.packageName
        if !fromFile.isEmpty { return fromFile }
        for key in ["Name", "Bundle-Name", "Short-Name", "Extension-Name", "Implementation-Title"] {
            if let v = main(key), !v.isEmpty { return v }
        }
        return ""
    }

    /// The group a Maven package URL would give the archive when no pom.properties describes it
    /// (Syft's `groupIDFromJavaManifest`): among `Group-Id`, `Bundle-SymbolicName`,
    /// `Extension-Name`, the vendor and title attributes and `Bundle-Activator` (main section and
    /// every other), the values that start as a domain does (`com`, `org`, `net`, `io`, `be`),
    /// without OSGi directives or a `#` tail, the first in byte order; else the same over
    /// `Automatic-Module-Name`, `Main-Class` and `Package`; else "".
    var groupID: String {
        for fields in [["Group-Id", "Bundle-SymbolicName", "Extension-Name", "Specification-Vendor", "Implementation-Vendor",
                        "Implementation-Vendor-Id", "Implementation-Title", "Bundle-Activator"],
                       ["Automatic-Module-Name", "Main-Class", "Package"]] {
            var found: [String] = []
            for field in fields {
                for section in sections {
                    guard let value = section.first(where: { $0.key == field })?.value,
                          ["com", "org", "net", "io", "be"].contains(where: { value.hasPrefix($0) }) else { continue }
                    found.append(Self.cleanGroupID(value))
                }
            }
            if let first = found.min(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) { return first }
        }
        return ""
    }

    /// A group without OSGi directives (`org.bar;uses:=…`) or (`cutHash`, as Syft cleans a
    /// manifest's group but not a pom's) a `#` tail, trimmed.
    static func cleanGroupID(_ value: String, cutHash: Bool = true) -> String {
        let head = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let bare = cutHash ? head.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "" : head
        return bare.trimmingCharacters(in: .whitespaces)
    }

    /// The file name's version, else the manifest's (implementation, specification, plugin,
    /// bundle: in that order, each from any section).
    func selectVersion(_ filename: JavaArchiveFilename) -> String {
        if !filename.version.isEmpty { return filename.version }
        for key in ["Implementation-Version", "Specification-Version", "Plugin-Version", "Bundle-Version"] {
            if let v = anySection(key) { return v }
        }
        return ""
    }
}
