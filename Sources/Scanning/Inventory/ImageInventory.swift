import Foundation

/// What an image holds: its layers' indexes merged in order, as the runtime would stack them
/// (a later layer's file replaces an earlier one; whiteouts and opaque directories delete what
/// lower layers had), so a package database replaced or deleted in a later layer is right
/// without reading any layer again.
public struct ImageInventory: Sendable, Hashable, Codable {
    public var os: OSRelease?
    /// Packages in path order, purls with the distribution qualifiers of `os`.
    public var packages: [InventoryPackage]
    /// False when some layer's index is partial or a file the inventory relies on had problems.
    public var complete: Bool
    /// Problems of the layers ("layer N: …") and of the files that survived the merge.
    public var problems: [InventoryProblem]

    /// Symbolic links followed at most this many times (as Linux does).
    static var maxSymlinkHops: Int { ScanLimits.maxSymlinkHops }

    public init(layers: [LayerIndex]) {
        var current: [String: IndexedFile] = [:]
        var problems: [InventoryProblem] = []
        var complete = true
        for (k, layer) in layers.enumerated() {
            if !layer.complete { complete = false }
            for p in layer.problems { problems.append(InventoryProblem(path: p.path, reason: "layer \(k + 1): \(p.reason)")) }
            if layer.problemsNotKept > 0 {
                problems.append(InventoryProblem(path: nil, reason: "layer \(k + 1): \(layer.problemsNotKept) more problem(s) not kept"))
            }
            if !current.isEmpty {
                let written = Set(layer.paths), dirs = Set(layer.directories)
                let whiteouts = Set(layer.whiteouts), opaque = Set(layer.opaqueDirectories)
                current = current.filter { path, _ in
                    let ancestors = Self.ancestors(of: path)
                    if opaque.contains("") { return false }
                    if written.contains(path) || dirs.contains(path) || whiteouts.contains(path) { return false }
                    for a in ancestors where whiteouts.contains(a) || opaque.contains(a) || written.contains(a) { return false }
                    return true
                }
            }
            for (path, file) in layer.files { current[path] = file }
        }

        var os: OSRelease?
        for candidate in ["etc/os-release", "usr/lib/os-release"] {
            switch Self.resolve(candidate, in: current) {
            case let .found(file): os = file?.os
            case let .problem(reason):
                problems.append(InventoryProblem(path: candidate, reason: reason)); complete = false
            }
            if os != nil { break }
        }

        var packages: [InventoryPackage] = []
        for path in current.keys.sorted() {
            let file = current[path]!
            if !file.problems.isEmpty { complete = false }
            problems.append(contentsOf: file.problems)
            for var p in file.packages {
                if p.type == .deb || p.type == .apk || p.type == .rpm { p.purl = PackageURL.make(for: p, os: os) }
                packages.append(p)
            }
        }
        self.os = os
        self.packages = packages
        self.complete = complete
        self.problems = problems
    }

    /// The OSV ecosystem of an rpm distribution, by `ID` and then `ID_LIKE` ("Red Hat" when
    /// nothing is known: the rebuilds follow its versions).
    static func rpmEcosystem(_ os: OSRelease?) -> String {
        let names = ["rhel": "Red Hat", "centos": "Red Hat", "rocky": "Rocky Linux", "almalinux": "AlmaLinux", "fedora": "Fedora",
                     "opensuse-leap": "openSUSE", "opensuse-tumbleweed": "openSUSE", "sles": "SUSE", "mageia": "Mageia",
                     "openeuler": "openEuler", "azurelinux": "Azure Linux"]
        for id in [os?.id].compactMap({ $0 }) + (os?.idLike ?? []) {
            if let n = names[id] { return n }
        }
        return "Red Hat"
    }

    /// "a/b/c" → ["a", "a/b"].
    static func ancestors(of path: String) -> [String] {
        var out: [String] = []
        var i = path.startIndex
        while let slash = path[i...].firstIndex(of: "/") {
            out.append(String(path[..<slash]))
            i = path.index(after: slash)
        }
        return out
    }

    enum Resolution { case found(IndexedFile?), problem(String) }

    /// The record at `path`, following symbolic links recorded in the merged index.
    static func resolve(_ path: String, in files: [String: IndexedFile]) -> Resolution {
        var path = path
        for _ in 0...maxSymlinkHops {
            guard let file = files[path] else { return .found(nil) }
            guard let target = file.symlinkTarget else { return .found(file) }
            path = resolveLink(from: path, to: target)
        }
        return .problem("more than \(maxSymlinkHops) symbolic links (a loop?); not followed")
    }

    /// A link's target as a path from the image root; `..` stops at the root, as it does there.
    static func resolveLink(from link: String, to target: String) -> String {
        var parts: [Substring] = target.hasPrefix("/") ? [] : Array(link.split(separator: "/").dropLast())
        for c in target.split(separator: "/") {
            if c == "." { continue }
            if c == ".." { _ = parts.popLast(); continue }
            parts.append(c)
        }
        return parts.joined(separator: "/")
    }

    /// The packages in the form the advisory matcher takes (`AdvisoryIndex.matches(for:)`):
    /// OSV's ecosystem names, the distribution release from `os-release`, Debian and Alpine
    /// source packages, PEP 503 names. Packages without a comparable version (a Go main module
    /// built as `(devel)`) are left out.
    public func installedPackages() -> [InstalledPackage] {
        packages.compactMap { p in
            // Nothing to compare a missing version with.
            if p.version == InventoryPackage.unknownVersion { return nil }
            switch p.type {
            case .deb:
                let ecosystem = os?.id == "ubuntu" ? "Ubuntu" : "Debian"
                let release = os?.id == "ubuntu" ? os?.versionID : (os?.versionCodename ?? os?.versionID)
                return InstalledPackage(ecosystem: ecosystem, name: p.name, version: p.version, sourceName: p.sourceName,
                                        sourceVersion: p.sourceVersion, release: release)
            case .apk:
                let ecosystem = os?.id == "wolfi" ? "Wolfi" : "Alpine"
                var release: String?
                if ecosystem == "Alpine", let v = os?.versionID {
                    release = "v" + v.split(separator: ".").prefix(2).joined(separator: ".")
                }
                return InstalledPackage(ecosystem: ecosystem, name: p.name, version: p.version, sourceName: p.sourceName, release: release)
            case .rpm:
                // OSV's names for the rpm distributions; the release is the major version ("9.3" → "9").
                let release = os?.versionID.map { String($0.split(separator: ".").first ?? "") }
                return InstalledPackage(ecosystem: Self.rpmEcosystem(os), name: p.name, version: p.version, sourceName: p.sourceName,
                                        release: release)
            case .python:
                return InstalledPackage(ecosystem: "PyPI", name: PythonMetadata.normalisedName(p.name), version: p.version)
            case .npm:
                return InstalledPackage(ecosystem: "npm", name: p.name, version: p.version)
            case .javaArchive, .jenkinsPlugin:
                // Maven advisories name "groupId:artifactId"; an archive known only by its file
                // name has no group to match them with.
                guard p.name.contains(":") else { return nil }
                return InstalledPackage(ecosystem: "Maven", name: p.name, version: p.version)
            case .goModule:
                if p.version == "(devel)" { return nil }
                // The toolchain ("go1.21.5") is OSV's "stdlib" at v1.21.5.
                let version = p.name == "stdlib" && p.version.hasPrefix("go") ? "v" + p.version.dropFirst(2) : p.version
                return InstalledPackage(ecosystem: "Go", name: p.name, version: version)
            }
        }
    }
}
