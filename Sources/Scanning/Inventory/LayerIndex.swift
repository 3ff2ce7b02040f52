import Foundation

/// Every bound on what scanning one layer may cost, in one place (the README's scanning section
/// lists them). Layers are untrusted: every size the walker meets is checked against one of
/// these, and going over one ends the walk with a partial index (or, for a single file, a
/// problem on that file) instead of unbounded memory or time.
public struct ScanLimits: Sendable, Hashable {
    /// Decompressed bytes read from one layer (the decompression-bomb bound, absolute).
    public var maxDecompressedBytes: Int = 16 << 30
    /// Decompressed bytes per compressed byte read so far, checked once more than
    /// `compressionRatioFloor` bytes came out (the decompression-bomb bound, relative: gzip of
    /// zeros is about 1000:1, zstd's RLE blocks far more; real layers are under 20:1).
    public var maxCompressionRatio: Int = 250
    /// Decompressed bytes below which the ratio is not checked (small layers of zeros pass).
    public var compressionRatioFloor: Int = 64 << 20
    /// Wall time to index one layer (on push); past it the walk stops and the index is partial.
    public var maxLayerTime: Duration = .seconds(600)
    /// Entries in one layer's tar stream.
    public var maxEntries: Int = 1_000_000
    /// Data of one GNU long-name or PAX header entry.
    public var maxHeaderBytes: Int = 1 << 20
    /// Bytes of one path or link target.
    public var maxPathBytes: Int = 4096
    /// Extension blocks of one old-GNU sparse header.
    public var maxSparseExtensionBlocks: Int = 1024
    /// Largest package database read (`var/lib/dpkg/status`, `lib/apk/db/installed`, and
    /// `rpmdb.sqlite`, which is held whole in memory while SQLite reads it).
    public var maxDatabaseBytes: Int = 64 << 20
    /// Largest small metadata file read (os-release, `status.d/*`, METADATA, package.json).
    public var maxMetadataBytes: Int = 4 << 20
    /// Largest Java archive read, and the most bytes inflated from one archive and all the
    /// archives nested in it together (the zip-bomb bound).
    public var maxArchiveBytes: Int = 64 << 20
    /// Deepest nesting of Java archives (a jar in a war is depth 2).
    public var maxArchiveDepth: Int = 4
    /// Bytes of Go build information kept from one binary.
    public var maxGoBuildInfoBytes: Int = 1 << 20
    /// Problems recorded per layer; more are counted, not kept.
    public var maxProblems: Int = 200
    /// Symbolic links followed from one path when layers are merged (os-release); more is a loop.
    public static let maxSymlinkHops = 40

    public init() {}
}

/// The earlier name of `ScanLimits`.
public typealias LayerLimits = ScanLimits

/// Something the walker or a cataloger could not read, and where.
public struct InventoryProblem: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The file inside the layer (or inside an archive, `app.war!WEB-INF/lib/x.jar`); nil for the layer itself.
    public var path: String?
    public var reason: String
    public init(path: String?, reason: String) {
        self.path = path.map { $0.utf8.count > 512 ? String($0.prefix(512)) + "…" : $0 }
        self.reason = reason
    }
    public var description: String { path.map { "\($0): \(reason)" } ?? reason }
}

/// Package types, spelled as SBOM tools spell them.
public enum PackageType: String, Sendable, Hashable, Codable, CaseIterable {
    case deb, apk, rpm, python, npm
    case javaArchive = "java-archive"
    /// A Jenkins plugin (`.jpi`, `.hpi`, or a Java package of a Jenkins plugin group): Maven
    /// coordinates, as Java archives.
    case jenkinsPlugin = "jenkins-plugin"
    case goModule = "go-module"
}

/// One package found in a layer or an image.
public struct InventoryPackage: Sendable, Hashable, Codable {
    public var type: PackageType
    /// As the ecosystem names it; Maven packages are "groupId:artifactId" (a Java archive known
    /// only by its file name or manifest has no group), Go modules their path.
    public var name: String
    /// `unknownVersion` when the package names none (an npm package.json without a version, a
    /// Java archive whose file name and manifest give none).
    public var version: String

    /// Syft's spelling, so the two inventories compare.
    public static let unknownVersion = "UNKNOWN"
    /// Debian: `Source:` (or the package itself); Alpine: the origin (`o:`).
    public var sourceName: String?
    /// Debian: the source version from `Source: name (version)`.
    public var sourceVersion: String?
    public var architecture: String?
    /// The files it was found in (a path inside an archive is `archive!entry`).
    public var locations: [String]
    /// rpm: the `LICENSE`, `VENDOR` and `SOURCERPM` of the header (`sourceName` is the source
    /// package's name taken from the last).
    public var license: String?
    public var vendor: String?
    public var sourceRPM: String?
    /// Package URL; distribution qualifiers are added once the image's OS is known.
    public var purl: String

    public init(type: PackageType, name: String, version: String, sourceName: String? = nil, sourceVersion: String? = nil,
                architecture: String? = nil, locations: [String], purl: String? = nil,
                license: String? = nil, vendor: String? = nil, sourceRPM: String? = nil) {
        self.type = type; self.name = name; self.version = version; self.sourceName = sourceName
        self.sourceVersion = sourceVersion; self.architecture = architecture; self.locations = locations
        self.license = license; self.vendor = vendor; self.sourceRPM = sourceRPM
        self.purl = ""
        self.purl = purl ?? PackageURL.make(for: self, os: nil)
    }
}

/// The operating system an image says it is (`os-release`).
public struct OSRelease: Sendable, Hashable, Codable {
    public var id: String
    public var idLike: [String]
    public var versionID: String?
    public var versionCodename: String?
    public var prettyName: String?
    public init(id: String, idLike: [String] = [], versionID: String? = nil, versionCodename: String? = nil, prettyName: String? = nil) {
        self.id = id; self.idLike = idLike; self.versionID = versionID; self.versionCodename = versionCodename; self.prettyName = prettyName
    }
}

/// What one file of interest held.
public struct IndexedFile: Sendable, Hashable, Codable {
    public var packages: [InventoryPackage] = []
    public var os: OSRelease?
    /// The file is a symbolic link to this target (as written in the layer).
    public var symlinkTarget: String?
    public var problems: [InventoryProblem] = []
    public init(packages: [InventoryPackage] = [], os: OSRelease? = nil, symlinkTarget: String? = nil, problems: [InventoryProblem] = []) {
        self.packages = packages; self.os = os; self.symlinkTarget = symlinkTarget; self.problems = problems
    }
}

/// Everything the inventory needs from one layer, read once per layer digest and shared by
/// every image that holds the layer: the files of interest and what they held, plus what the
/// layer does to the layers below it (the paths it writes, its whiteouts and opaque directories),
/// so images are inventoried by merging indexes without reading a layer again.
public struct LayerIndex: Sendable, Hashable, Codable {
    /// Bumped when what is indexed changes, so stored indexes of an older format are rebuilt.
    /// 2: rpm databases (`rpmdb.sqlite`) are read.
    /// 3: names as Syft gives them: every named `package.json`, Java archives by file name and
    ///    manifest, dpkg packages in every on-disk state, PEP 503 Python names, Go main modules
    ///    from the package path and guessed `(devel)` versions.
    /// 4: Jenkins plugins (`.jpi`, `.hpi`, packages of a Jenkins plugin group); Go 1.13 to 1.17
    ///    build information (the pointer format).
    public static let currentFormat = 4

    public var format: Int = LayerIndex.currentFormat
    public var compression: LayerCompression
    /// False when the walk stopped early (a limit, a corrupt stream) or a file of interest could
    /// not be read: the index holds what was read, and `problems` says what was not.
    public var complete: Bool
    public var problems: [InventoryProblem]
    /// Problems beyond `LayerLimits.maxProblems`, counted.
    public var problemsNotKept: Int = 0
    /// Files of interest by normalised path ("var/lib/dpkg/status").
    public var files: [String: IndexedFile]
    /// Every path of a non-directory entry (sorted): a lower layer's file there is replaced.
    public var paths: [String]
    /// Every directory entry (sorted): a lower layer's non-directory there is replaced.
    public var directories: [String]
    /// `.wh.NAME` entries: the path they delete from lower layers (sorted).
    public var whiteouts: [String]
    /// `.wh..wh..opq` entries: directories whose lower-layer contents are hidden (sorted).
    public var opaqueDirectories: [String]
    public var entries: Int
    public var decompressedBytes: Int

    /// Every package of the layer alone (no merge), in path order.
    public var packages: [InventoryPackage] {
        files.keys.sorted().flatMap { files[$0]!.packages }
    }
}

/// Package URLs (purl-spec), percent-encoding what the spec does not allow bare.
public enum PackageURL {
    static func encode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(b)))
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    static func path(_ s: String) -> String {
        s.split(separator: "/", omittingEmptySubsequences: true).map { encode(String($0)) }.joined(separator: "/")
    }

    /// The purl of `p`; `os` adds the distribution qualifier of deb and apk packages.
    public static func make(for p: InventoryPackage, os: OSRelease?) -> String {
        var qualifiers: [(String, String)] = []
        let type: String, namespace: String?, name: String
        var version = p.version
        switch p.type {
        case .deb, .apk:
            type = p.type.rawValue
            namespace = os?.id.lowercased() ?? (p.type == .deb ? "debian" : "alpine")
            name = p.name
            if let a = p.architecture { qualifiers.append(("arch", a)) }
            if let os, let v = os.versionID { qualifiers.append(("distro", "\(os.id.lowercased())-\(v)")) }
            if p.type == .deb, let s = p.sourceName, s != p.name {
                qualifiers.append(("upstream", p.sourceVersion.map { "\(s)@\($0)" } ?? s))
            }
        case .rpm:
            // purl-spec: the version is VERSION-RELEASE, the epoch a qualifier.
            type = "rpm"
            namespace = os?.id.lowercased()
            name = p.name
            if let a = p.architecture { qualifiers.append(("arch", a)) }
            if let os, let v = os.versionID { qualifiers.append(("distro", "\(os.id.lowercased())-\(v)")) }
            if let src = p.sourceRPM { qualifiers.append(("upstream", src)) }
            if let colon = p.version.firstIndex(of: ":") {
                qualifiers.append(("epoch", String(p.version[..<colon])))
                version = String(p.version[p.version.index(after: colon)...])
            }
        case .python:
            type = "pypi"; namespace = nil; name = PythonMetadata.normalisedName(p.name)
        case .npm:
            type = "npm"
            if p.name.hasPrefix("@"), let slash = p.name.firstIndex(of: "/") {
                namespace = String(p.name[..<slash]); name = String(p.name[p.name.index(after: slash)...])
            } else { namespace = nil; name = p.name }
        case .javaArchive, .jenkinsPlugin:
            type = "maven"
            let parts = p.name.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { namespace = String(parts[0]); name = String(parts[1]) } else { namespace = nil; name = p.name }
        case .goModule:
            type = "golang"
            if let slash = p.name.lastIndex(of: "/") {
                namespace = String(p.name[..<slash]); name = String(p.name[p.name.index(after: slash)...])
            } else { namespace = nil; name = p.name }
        }
        var s = "pkg:\(type)/"
        if let namespace { s += path(namespace) + "/" }
        s += encode(name)
        if !version.isEmpty { s += "@" + encode(version) }
        if !qualifiers.isEmpty {
            s += "?" + qualifiers.sorted { $0.0 < $1.0 }.map { "\($0.0)=\(encode($0.1))" }.joined(separator: "&")
        }
        return s
    }
}
