import Foundation

/// Which files the catalogers read, chosen by path alone (Go binaries, found by content, are
/// `GoBuildInfoScanner`'s).
enum FileInterest: Equatable {
    case osRelease, dpkgStatus, dpkgStatusD, apkInstalled, rpmDatabase, pythonMetadata, npmPackageJSON, javaArchive

    init?(path: String) {
        switch path {
        case "etc/os-release", "usr/lib/os-release": self = .osRelease; return
        case "var/lib/dpkg/status": self = .dpkgStatus; return
        case "lib/apk/db/installed": self = .apkInstalled; return
        case "var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite": self = .rpmDatabase; return
        default: break
        }
        if path.hasPrefix("var/lib/dpkg/status.d/") {
            let name = path.dropFirst("var/lib/dpkg/status.d/".count)
            guard !name.isEmpty, !name.contains("/"), !name.hasSuffix(".md5sums") else { return nil }
            self = .dpkgStatusD
        } else if path.hasSuffix(".dist-info/METADATA") || path.hasSuffix(".egg-info/PKG-INFO") || path.hasSuffix(".egg-info") {
            self = .pythonMetadata
        } else if path == "package.json" || path.hasSuffix("/package.json") {
            self = .npmPackageJSON
        } else if JavaArchive.isArchiveName(path) {
            self = .javaArchive
        } else {
            return nil
        }
    }

    /// Symbolic links kept in the index (to resolve `etc/os-release -> ../usr/lib/os-release`).
    var keepsSymlinks: Bool { self == .osRelease }

    func cap(_ limits: ScanLimits) -> Int {
        switch self {
        case .dpkgStatus, .apkInstalled, .rpmDatabase: return limits.maxDatabaseBytes
        case .javaArchive: return limits.maxArchiveBytes
        case .osRelease, .dpkgStatusD, .pythonMetadata, .npmPackageJSON: return limits.maxMetadataBytes
        }
    }

    func catalog(path: String, bytes: [UInt8], limits: ScanLimits) -> IndexedFile {
        switch self {
        case .osRelease: return OSReleaseParser.parse(bytes, path: path)
        case .dpkgStatus: return DpkgStatus.parse(bytes, path: path, requireInstalled: true)
        case .dpkgStatusD: return DpkgStatus.parse(bytes, path: path, requireInstalled: false)
        case .apkInstalled: return ApkInstalled.parse(bytes, path: path)
        case .rpmDatabase: return RpmDatabase.catalog(bytes, path: path)
        case .pythonMetadata: return PythonMetadata.parse(bytes, path: path)
        case .npmPackageJSON: return NPMPackage.parse(bytes, path: path)
        case .javaArchive: return JavaArchive.catalog(bytes, path: path, limits: limits)
        }
    }
}

/// Text lines of a file, split on LF (a trailing CR dropped), decoded as UTF-8 with
/// replacement: hostile bytes never stop a parser, they only make odd values.
enum TextLines {
    /// The lines one at a time: a file of many short lines is never held as an array of them.
    static func lines(_ bytes: [UInt8]) -> Lines { Lines(bytes: bytes) }

    struct Lines: Sequence {
        let bytes: [UInt8]
        struct Iterator: IteratorProtocol {
            let bytes: [UInt8]
            var start = 0
            var done = false
            mutating func next() -> Substring? {
                guard !done else { return nil }
                // Split the bytes, not the String: to Swift "\r\n" is one Character, not a line end.
                var end = start
                while end < bytes.count, bytes[end] != 0x0A { end += 1 }
                let lineStart = start
                if end < bytes.count { start = end + 1 } else { done = true }
                let stop = end > lineStart && bytes[end - 1] == 0x0D ? end - 1 : end
                return Substring(String(decoding: bytes[lineStart..<stop], as: UTF8.self))
            }
        }
        func makeIterator() -> Iterator { Iterator(bytes: bytes) }
    }

    static let maxField = 4096
    static func clip(_ s: some StringProtocol) -> String {
        let t = s.trimmingCharacters(in: .whitespaces)
        return t.utf8.count > maxField ? String(t.prefix(maxField)) : t
    }
}

enum OSReleaseParser {
    static func parse(_ bytes: [UInt8], path: String) -> IndexedFile {
        var values: [String: String] = [:]
        var problems = 0
        for line in TextLines.lines(bytes) {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            guard let eq = t.firstIndex(of: "="), eq != t.startIndex else { problems += 1; continue }
            let key = String(t[..<eq])
            values[key] = unquote(t[t.index(after: eq)...])
        }
        var file = IndexedFile()
        if problems > 0 { file.problems.append(InventoryProblem(path: path, reason: "\(problems) malformed line(s) ignored")) }
        guard let id = values["ID"], !id.isEmpty else {
            file.problems.append(InventoryProblem(path: path, reason: "no ID= line"))
            return file
        }
        file.os = OSRelease(id: TextLines.clip(id.lowercased()),
                            idLike: (values["ID_LIKE"] ?? "").split(separator: " ").map { TextLines.clip($0.lowercased()) },
                            versionID: values["VERSION_ID"].map(TextLines.clip),
                            versionCodename: values["VERSION_CODENAME"].flatMap { $0.isEmpty ? nil : TextLines.clip($0) },
                            prettyName: values["PRETTY_NAME"].map(TextLines.clip))
        return file
    }

    /// Shell-style quoting as os-release(5) allows: "…" with backslash escapes, or '…'.
    static func unquote(_ v: Substring) -> String {
        if v.count >= 2, v.first == "\"", v.last == "\"" {
            var out = "", escaped = false
            for c in v.dropFirst().dropLast() {
                if escaped { out.append(c); escaped = false } else if c == "\\" { escaped = true } else { out.append(c) }
            }
            return out
        }
        if v.count >= 2, v.first == "'", v.last == "'" { return String(v.dropFirst().dropLast()) }
        return String(v)
    }
}

/// RFC 822-style stanzas (dpkg status, METADATA headers): "Key: value", continuation lines
/// start with a space or tab, stanzas end at a blank line.
enum Stanzas {
    struct Stanza { var fields: [String: String] = [:]; var line: Int }

    /// Malformed lines, counted: the first one's number and how many (never a list of them).
    struct Malformed {
        var count = 0
        var first: Int?
        mutating func add(_ line: Int) { count += 1; if first == nil { first = line } }
        func problem(path: String) -> InventoryProblem? {
            guard let first else { return nil }
            return InventoryProblem(path: path, reason: "\(count) malformed line(s) ignored (first at line \(first))")
        }
    }

    /// Calls `each` for every stanza as it ends (none is kept), and returns the malformed lines.
    static func parse(_ bytes: [UInt8], stopAtFirstBlank: Bool, each: (Stanza) -> Void) -> Malformed {
        var current: Stanza?
        var lastKey: String?
        var malformed = Malformed()
        for (n, line) in TextLines.lines(bytes).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty {
                if let c = current { each(c); current = nil; lastKey = nil; if stopAtFirstBlank { return malformed } }
                continue
            }
            if line.first == " " || line.first == "\t" {
                // Continuation: only the first line of a field is kept (descriptions are not needed).
                if lastKey == nil { malformed.add(n + 1) }
                continue
            }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                malformed.add(n + 1); continue
            }
            let key = String(line[..<colon]).lowercased()
            if current == nil { current = Stanza(line: n + 1) }
            if current!.fields[key] == nil { current!.fields[key] = TextLines.clip(line[line.index(after: colon)...]) }
            lastKey = key
        }
        if let c = current { each(c) }
        return malformed
    }
}

/// Stanzas or entries skipped for what they lack, counted per reason like malformed lines: a
/// database of millions of broken stanzas gives one problem per reason, not millions.
struct SkippedEntries {
    /// Reasons in the order first seen, with how many and the first one's line.
    var reasons: [(reason: String, count: Int, firstLine: Int)] = []
    mutating func add(_ reason: String, line: Int) {
        if let i = reasons.firstIndex(where: { $0.reason == reason }) { reasons[i].count += 1 } else { reasons.append((reason, 1, line)) }
    }
    func problems(path: String, entry: String, entries: String) -> [InventoryProblem] {
        reasons.map { r in
            InventoryProblem(path: path, reason: r.count == 1 ? "\(entry) at line \(r.firstLine) \(r.reason); skipped"
                             : "\(r.count) \(entries) \(r.reason) skipped (first at line \(r.firstLine))")
        }
    }
}

enum DpkgStatus {
    /// dpkg's package states whose files are on disk (`dpkg-query(1)`, "Package states").
    static let onDisk: Set<String> = ["installed", "unpacked", "half-configured", "half-installed", "triggers-awaited", "triggers-pending"]

    static func parse(_ bytes: [UInt8], path: String, requireInstalled: Bool) -> IndexedFile {
        var file = IndexedFile()
        var skipped = SkippedEntries()
        let malformed = Stanzas.parse(bytes, stopAtFirstBlank: false) { s in
            if let status = s.fields["status"] {
                // "install ok installed": the last word is the package's state. Its files are on
                // disk in every state but "not-installed" and "config-files" (removed, its
                // configuration kept): an unpacked package that was never configured (a failed
                // postinst) is as present, and as vulnerable, as an installed one (Syft lists both).
                guard let state = status.split(separator: " ").last, Self.onDisk.contains(String(state)) else { return }
            } else if requireInstalled {
                skipped.add("with no Status", line: s.line)
                return
            }
            guard let name = s.fields["package"], !name.isEmpty, let version = s.fields["version"], !version.isEmpty else {
                skipped.add("with no Package or Version", line: s.line)
                return
            }
            var sourceName: String? = name, sourceVersion: String?
            if let source = s.fields["source"], !source.isEmpty {
                // "Source: name" or "Source: name (version)" when the source version differs.
                let parts = source.split(separator: " ", maxSplits: 1)
                sourceName = String(parts[0])
                if parts.count == 2 {
                    let v = parts[1].trimmingCharacters(in: .whitespaces)
                    if v.hasPrefix("("), v.hasSuffix(")"), v.count > 2 { sourceVersion = String(v.dropFirst().dropLast()) }
                }
            }
            file.packages.append(InventoryPackage(type: .deb, name: name, version: version, sourceName: sourceName,
                                                  sourceVersion: sourceVersion, architecture: s.fields["architecture"], locations: [path]))
        }
        if let p = malformed.problem(path: path) { file.problems.append(p) }
        file.problems += skipped.problems(path: path, entry: "stanza", entries: "stanzas")
        return file
    }
}

enum ApkInstalled {
    static func parse(_ bytes: [UInt8], path: String) -> IndexedFile {
        var file = IndexedFile()
        var fields: [Character: String] = [:]
        var startLine = 1
        var malformed = Stanzas.Malformed()
        var skipped = SkippedEntries()
        func flush() {
            defer { fields = [:] }
            guard !fields.isEmpty else { return }
            guard let name = fields["P"], !name.isEmpty, let version = fields["V"], !version.isEmpty else {
                skipped.add("with no P: or V:", line: startLine)
                return
            }
            file.packages.append(InventoryPackage(type: .apk, name: name, version: version, sourceName: fields["o"] ?? name,
                                                  architecture: fields["A"], locations: [path]))
        }
        for (n, line) in TextLines.lines(bytes).enumerated() {
            if line.isEmpty { flush(); startLine = n + 2; continue }
            guard line.count >= 2, line.dropFirst().first == ":", let key = line.first else { malformed.add(n + 1); continue }
            if fields.isEmpty { startLine = n + 1 }
            // Only the package's own fields; the file list (F:, R:, Z:, …) is many lines and not needed.
            if "PVAo".contains(key), fields[key] == nil { fields[key] = TextLines.clip(line.dropFirst(2)) }
        }
        flush()
        if let p = malformed.problem(path: path) { file.problems.append(p) }
        file.problems += skipped.problems(path: path, entry: "entry", entries: "entries")
        return file
    }
}

enum PythonMetadata {
    /// PEP 503: lower case, runs of `-`, `_` and `.` become one `-`.
    static func normalisedName(_ name: String) -> String { AdvisoryIndex.normalisedName(name, ecosystem: "PyPI") }

    static func parse(_ bytes: [UInt8], path: String) -> IndexedFile {
        // Headers end at the first blank line; the description follows and is not read.
        var first: Stanzas.Stanza?
        let malformed = Stanzas.parse(bytes, stopAtFirstBlank: true) { first = first ?? $0 }
        var file = IndexedFile()
        if let p = malformed.problem(path: path) { file.problems.append(p) }
        guard let s = first, let name = s.fields["name"], !name.isEmpty, let version = s.fields["version"], !version.isEmpty else {
            file.problems.append(InventoryProblem(path: path, reason: "no Name or Version header"))
            return file
        }
        // PEP 503's normalised name, as the advisories and Syft name it (METADATA's "PyYAML" is "pyyaml").
        file.packages.append(InventoryPackage(type: .python, name: normalisedName(name), version: version, locations: [path]))
        return file
    }
}

/// Every `package.json` with a name is a package, wherever it is: under `node_modules`, in
/// Debian's `/usr/share/nodejs`, or an application's own (Syft reads them all the same way).
/// One without a name (`{"type": "module"}` marking a directory's module kind) is no package.
enum NPMPackage {
    static func parse(_ bytes: [UInt8], path: String) -> IndexedFile {
        var file = IndexedFile()
        let data = Data(bytes)
        do { try checkNesting(data, location: path) } catch {
            file.problems.append(InventoryProblem(path: path, reason: "nested too deeply"))
            return file
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            file.problems.append(InventoryProblem(path: path, reason: "not a JSON object"))
            return file
        }
        guard let nameValue = object["name"], !(nameValue is NSNull) else { return file }
        guard let name = nameValue as? String, object["version"].map({ $0 is String || $0 is NSNull }) ?? true else {
            file.problems.append(InventoryProblem(path: path, reason: "name or version is not a string"))
            return file
        }
        guard !name.isEmpty else { return file }
        let version = (object["version"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? InventoryPackage.unknownVersion
        file.packages.append(InventoryPackage(type: .npm, name: TextLines.clip(name), version: TextLines.clip(version), locations: [path]))
        return file
    }
}

/// Java archives, named the way Syft names them so the two inventories agree:
/// - the archive itself is a package when it has a `META-INF/MANIFEST.MF`: named by the
///   `pom.properties` that matches its file name, else by its file name or its manifest;
/// - every other `pom.properties` in it is a package of its own (a shaded or bundled library);
/// - archives inside it are read the same way, to `maxArchiveDepth`.
/// Unlike Syft, the `pom.properties` of an archive without a manifest still count: a library
/// is no less present for a stripped manifest.
enum JavaArchive {
    static func isArchiveName(_ path: String) -> Bool {
        let lower = path.lowercased()
        return [".jar", ".war", ".ear", ".par", ".sar", ".nar", ".kar", ".lpkg", ".jpi", ".hpi"].contains { lower.hasSuffix($0) }
    }

    /// Syft's package type for a Java package: a Jenkins plugin when its Maven package URL
    /// (`group/name@version`, the group falling back to the name) names a Jenkins plugin group,
    /// whatever its file; else `archive`, the type its pom gives (`pomType`) or, without one, its
    /// own file's extension (`.jpi` and `.hpi` are Jenkins plugins, every other archive a Java
    /// archive).
    static func packageType(archive: PackageType, group: String, name: String, version: String) -> PackageType {
        let purl = "\(group.isEmpty ? name : group)/\(name)@\(version)"
        return purl.contains("io.jenkins.plugins") || purl.contains("org.jenkins-ci.plugins") ? .jenkinsPlugin : archive
    }

    /// The type a `pom.properties` gives its package (Syft's `PkgTypeIndicated`): a Jenkins plugin
    /// when its groupId starts with a Jenkins plugin group or holds `.jenkins.plugin`. A pom
    /// describing the archive itself decides its type over the file's extension.
    static func pomType(_ group: String) -> PackageType {
        let plugins = ["io.jenkins.plugins", "org.jenkins.plugins", "org.jenkins-ci.plugins", "io.jenkins-ci.plugins",
                       "com.cloudbees.jenkins.plugins"]
        return plugins.contains(where: { group.hasPrefix($0) }) || group.contains(".jenkins.plugin") ? .jenkinsPlugin : .javaArchive
    }

    /// The type an archive's file name gives its own package.
    static func archiveType(_ location: String) -> PackageType {
        let file = location.split(separator: "!").last.flatMap { $0.split(separator: "/").last } ?? ""
        let lower = file.lowercased()
        return lower.hasSuffix(".jpi") || lower.hasSuffix(".hpi") ? .jenkinsPlugin : .javaArchive
    }

    static func catalog(_ bytes: [UInt8], path: String, limits: ScanLimits) -> IndexedFile {
        var file = IndexedFile()
        var budget = limits.maxArchiveBytes
        var seen = Set<String>()
        walk(bytes, location: path, depth: 1, limits: limits, budget: &budget, file: &file, seen: &seen)
        return file
    }

    struct Pom {
        var group: String, artifact: String, version: String
        var directory: String, location: String
        var packageName: String { group.isEmpty ? artifact : "\(group):\(artifact)" }
        /// The group its package URL has (Syft's `groupIDFromPomProperties`): the stated one, else
        /// an artifactId with a dot in it (a group put in the wrong field); without OSGi
        /// directives, trimmed.
        var purlGroup: String {
            if !group.isEmpty { return JavaManifest.cleanGroupID(group, cutHash: false) }
            return artifact.contains(".") ? JavaManifest.cleanGroupID(artifact, cutHash: false) : ""
        }
    }

    /// Reads one archive's manifest and `pom.properties` and recurses into the archives it holds,
    /// while the inflated bytes stay within `budget` (shared by the whole nest) and the depth
    /// within the limit.
    static func walk(_ data: [UInt8], location: String, depth: Int, limits: ScanLimits, budget: inout Int,
                     file: inout IndexedFile, seen: inout Set<String>) {
        let archive: ZipArchive
        do { archive = try ZipArchive(bytes: data) } catch {
            note(&file, location, "not a readable zip archive: \(reason(error))")
            return
        }
        var manifest: JavaManifest?
        var poms: [String: Pom] = [:]
        var pomXMLDirectories = Set<String>()
        var nested: [ZipArchive.Entry] = []
        for entry in archive.entries where !entry.name.hasSuffix("/") {
            guard budget > 0 else {
                note(&file, location, "no bytes left to inflate from this archive; the rest of it not read")
                break
            }
            let name = entry.name
            if name == "META-INF/MANIFEST.MF" {
                guard manifest == nil,
                      let bytes = read(archive, entry, location: location, limit: min(limits.maxMetadataBytes, budget), budget: &budget, file: &file)
                else { continue }
                manifest = JavaManifest(bytes)
            } else if name.hasSuffix("pom.properties") {
                guard let bytes = read(archive, entry, location: location, limit: min(limits.maxMetadataBytes, budget), budget: &budget, file: &file) else { continue }
                let props = properties(bytes)
                guard let artifact = props["artifactId"], let version = props["version"], !artifact.isEmpty, !version.isEmpty else {
                    note(&file, "\(location)!\(name)", "lacks artifactId or version")
                    continue
                }
                let directory = parentDirectory(name)
                poms[directory] = Pom(group: props["groupId"] ?? "", artifact: artifact, version: version,
                                      directory: directory, location: "\(location)!\(name)")
            } else if name.hasSuffix("pom.xml") {
                pomXMLDirectories.insert(parentDirectory(name))
            } else if isArchiveName(name) {
                nested.append(entry)
            }
        }

        let sortedPoms = poms.values.sorted { $0.directory < $1.directory }
        // The archive's own package: named by the pom.properties matching its file name
        // (`matchingPom`), else by the file name or the manifest, when the first pom.properties
        // naming that artifact gives group and version together (never a pair no pom states).
        var own: (name: String, version: String, pom: Pom?)?
        if let manifest, manifest.main("Weave-Classes") == nil {
            let filename = JavaArchiveFilename(path: location)
            if let matched = matchingPom(sortedPoms, filename: filename.name, pomXMLDirectories: pomXMLDirectories) {
                own = (matched.artifact, matched.version, matched)
            } else {
                let name = manifest.selectName(filename)
                let described = name.isEmpty ? nil : sortedPoms.first { $0.artifact == name }
                own = (name, described?.version ?? manifest.selectVersion(filename), described)
            }
        }
        if let own, !own.name.isEmpty {
            let version = own.version.isEmpty ? InventoryPackage.unknownVersion : own.version
            // The pom's group, else the manifest's (Syft's order, without its pom.xml and its list of
            // well-known artifacts).
            let pomGroup = own.pom?.purlGroup ?? ""
            let type = packageType(archive: own.pom.map { pomType($0.group) } ?? archiveType(location),
                                   group: pomGroup.isEmpty ? manifest?.groupID ?? "" : pomGroup, name: own.name, version: version)
            add(type, name: own.pom?.packageName ?? own.name, version: version, location: own.pom?.location ?? location,
                file: &file, seen: &seen)
        }
        // Every other pom.properties is a package of its own (a library shaded or bundled in).
        let ownName = own?.name ?? ""
        for pom in sortedPoms where ownName.isEmpty || pom.artifact != ownName {
            add(packageType(archive: pomType(pom.group), group: pom.purlGroup, name: pom.artifact, version: pom.version),
                name: pom.packageName, version: pom.version, location: pom.location, file: &file, seen: &seen)
        }

        for entry in nested {
            guard budget > 0 else {
                note(&file, location, "no bytes left to inflate from this archive; the rest of it not read")
                break
            }
            guard depth < limits.maxArchiveDepth else {
                note(&file, "\(location)!\(entry.name)", "archives nested deeper than \(limits.maxArchiveDepth); not read")
                continue
            }
            guard let bytes = read(archive, entry, location: location, limit: budget, budget: &budget, file: &file) else { continue }
            walk(bytes, location: "\(location)!\(entry.name)", depth: depth + 1, limits: limits, budget: &budget, file: &file, seen: &seen)
        }
    }

    /// Problems kept per archive (with everything nested in it); past that, one line says more were found.
    static let maxProblems = 100

    static func note(_ file: inout IndexedFile, _ path: String, _ reason: String) {
        if file.problems.count < maxProblems {
            file.problems.append(InventoryProblem(path: path, reason: reason))
        } else if file.problems.count == maxProblems {
            file.problems.append(InventoryProblem(path: path, reason: "more problems in this archive, not listed"))
        }
    }

    static func add(_ type: PackageType, name: String, version: String, location: String, file: inout IndexedFile, seen: inout Set<String>) {
        let name = TextLines.clip(name), version = TextLines.clip(version)
        guard seen.insert("\(type.rawValue) \(name)@\(version)").inserted else { return }
        file.packages.append(InventoryPackage(type: type, name: name, version: version, locations: [location]))
    }

    /// The `pom.properties` describing the archive itself: its artifactId is the file's name, or
    /// (when no artifactId is exactly that) starts with it or ends it. Among several, the first
    /// (by directory) with a pom.xml beside it, else the last.
    static func matchingPom(_ poms: [Pom], filename: String, pomXMLDirectories: Set<String>) -> Pom? {
        guard !filename.isEmpty else { return nil }
        let exact = poms.contains { $0.artifact == filename }
        var chosen: Pom?
        for pom in poms {
            let matches = exact ? pom.artifact == filename : pom.artifact.hasPrefix(filename) || filename.hasSuffix(pom.artifact)
            guard matches else { continue }
            chosen = pom
            if pomXMLDirectories.contains(pom.directory) { break }
        }
        return chosen
    }

    static func parentDirectory(_ name: String) -> String {
        guard let slash = name.lastIndex(of: "/") else { return "." }
        return String(name[..<slash])
    }

    static func read(_ archive: ZipArchive, _ entry: ZipArchive.Entry, location: String, limit: Int, budget: inout Int,
                     file: inout IndexedFile) -> [UInt8]? {
        // Every entry costs something, read or not (a million empty entries in one directory
        // are no free lunch): what it inflates to, at least one byte; a refused one, its declared
        // size when inflating it was tried (a failure can come late), else one byte.
        defer { budget -= entry.size <= limit ? max(1, entry.size) : 1 }
        do {
            return try archive.bytes(of: entry, limit: limit)
        } catch {
            let why = entry.size <= limit ? reason(error)
                : limit < budget ? "\(entry.size) bytes, over the \(limit)-byte limit for this kind of file; not read"
                : "larger than the \(limit) bytes left to inflate from this archive; not read"
            note(&file, "\(location)!\(entry.name)", why)
            return nil
        }
    }

    static func reason(_ error: any Error) -> String { (error as? ImportProblem)?.reason ?? "\(error)" }

    /// Java properties, as Maven writes pom.properties: `key=value`, `#` comments.
    static func properties(_ data: [UInt8]) -> [String: String] {
        var out: [String: String] = [:]
        for line in TextLines.lines(data) {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") || t.hasPrefix("!") { continue }
            guard let sep = t.firstIndex(where: { $0 == "=" || $0 == ":" }) else { continue }
            out[TextLines.clip(t[..<sep])] = TextLines.clip(t[t.index(after: sep)...])
        }
        return out
    }
}
