import Foundation

// Scanning's answers (`/api/v1/scans/…`): a manifest's inventory and its SBOM documents.

/// One package of an inventory.
public struct ScanPackageView: Codable, Sendable, Equatable {
    /// `deb`, `apk`, `rpm`, `python`, `npm`, `java-archive`, `jenkins-plugin`, `go-module`.
    public var type: String
    public var name: String
    public var version: String
    public var purl: String
    public var sourceName: String?
    public var sourceVersion: String?
    public var architecture: String?
    /// Files it was found in (`archive!entry` inside an archive).
    public var locations: [String]
    public init(type: String, name: String, version: String, purl: String, sourceName: String?, sourceVersion: String?,
                architecture: String?, locations: [String]) {
        self.type = type
        self.name = name
        self.version = version
        self.purl = purl
        self.sourceName = sourceName
        self.sourceVersion = sourceVersion
        self.architecture = architecture
        self.locations = locations
    }
}

/// The operating system of an image (`os-release`).
public struct ScanOSView: Codable, Sendable, Equatable {
    public var id: String
    public var versionID: String?
    public var versionCodename: String?
    public var prettyName: String?
    public init(id: String, versionID: String?, versionCodename: String?, prettyName: String?) {
        self.id = id
        self.versionID = versionID
        self.versionCodename = versionCodename
        self.prettyName = prettyName
    }
}

/// An SBOM referrer Berth pushed for the manifest.
public struct ScanSBOMReferrerView: Codable, Sendable, Equatable {
    /// `spdx` or `cyclonedx`.
    public var format: String
    public var artifactType: String
    /// The referrer manifest's digest.
    public var manifest: String
    public init(format: String, artifactType: String, manifest: String) {
        self.format = format
        self.artifactType = artifactType
        self.manifest = manifest
    }
}

/// `GET /api/v1/scans/inventory?repository=R&reference=REF`: what the scanner found in a manifest.
public struct ScanInventoryView: Codable, Sendable, Equatable {
    public var repository: String
    public var manifest: String
    /// `complete`, `partial`, `not-an-image` or `failed`.
    public var status: String
    /// Why it is partial, not an image, or failed.
    public var detail: String?
    /// The Berth version of the catalogers that made it.
    public var catalogerVersion: String
    public var createdAt: Date
    /// The layers it was merged from, in order.
    public var layers: [String]
    public var os: ScanOSView?
    public var packages: [ScanPackageView]
    /// What could not be read (at most 200).
    public var problems: [String]
    /// For an index: its image manifests, each inventoried on its own.
    public var children: [String]?
    public var sboms: [ScanSBOMReferrerView]
    public init(repository: String, manifest: String, status: String, detail: String?, catalogerVersion: String, createdAt: Date,
                layers: [String], os: ScanOSView?, packages: [ScanPackageView], problems: [String], children: [String]?,
                sboms: [ScanSBOMReferrerView]) {
        self.repository = repository
        self.manifest = manifest
        self.status = status
        self.detail = detail
        self.catalogerVersion = catalogerVersion
        self.createdAt = createdAt
        self.layers = layers
        self.os = os
        self.packages = packages
        self.problems = problems
        self.children = children
        self.sboms = sboms
    }
}

/// `GET /api/v1/scans/sbom?repository=R&reference=REF&format=spdx|cyclonedx`: the SBOM document of
/// the referrer Berth pushed, exactly as its layer holds it (JSON text).
public struct ScanSBOMDocumentView: Codable, Sendable, Equatable {
    public var repository: String
    /// The image manifest the SBOM describes.
    public var subject: String
    public var format: String
    /// The referrer manifest's digest.
    public var referrer: String
    public var document: String
    public init(repository: String, subject: String, format: String, referrer: String, document: String) {
        self.repository = repository
        self.subject = subject
        self.format = format
        self.referrer = referrer
        self.document = document
    }
}

/// One finding: an advisory that affects an installed package of the image.
public struct ScanFindingView: Codable, Sendable, Equatable {
    /// The advisory's id (`CVE-…`, `GHSA-…`, `DSA-…`) and its other names.
    public var id: String
    public var aliases: [String]
    /// The ecosystem and package as the inventory names them; a distribution package's source
    /// package (what distribution advisories name) in `sourcePackage`.
    public var ecosystem: String
    public var package: String
    public var sourcePackage: String?
    public var installedVersion: String
    /// The lowest fixed version above the installed one; absent when there is no fix.
    public var fixedVersion: String?
    /// `Critical`, `High`, `Medium`, `Low`, `None` or `Unknown`.
    public var severity: String
    /// The CVSS base score, when the advisory has a vector.
    public var score: Double?
    /// `fix-available`, `unfixed` or `no-dsa` (Debian: unfixed, no advisory planned for the release).
    public var fixState: String
    /// The OpenVEX statement that decides this finding, when one applies: `suppressed` when its
    /// status is `not_affected` or `fixed` (the finding is then not a blocking one).
    public var vex: ScanVEXView?
    public init(id: String, aliases: [String], ecosystem: String, package: String, sourcePackage: String?, installedVersion: String,
                fixedVersion: String?, severity: String, score: Double?, fixState: String, vex: ScanVEXView? = nil) {
        self.vex = vex
        self.id = id
        self.aliases = aliases
        self.ecosystem = ecosystem
        self.package = package
        self.sourcePackage = sourcePackage
        self.installedVersion = installedVersion
        self.fixedVersion = fixedVersion
        self.severity = severity
        self.score = score
        self.fixState = fixState
    }
}

/// The OpenVEX statement applied to a finding.
public struct ScanVEXView: Codable, Sendable, Equatable {
    /// `not_affected`, `fixed`, `affected` or `under_investigation`.
    public var status: String
    public var suppressed: Bool
    public var justification: String?
    public var impactStatement: String?
    public var actionStatement: String?
    /// The referrer manifest the document came from.
    public var source: String
    public init(status: String, suppressed: Bool, justification: String?, impactStatement: String?, actionStatement: String?, source: String) {
        self.status = status
        self.suppressed = suppressed
        self.justification = justification
        self.impactStatement = impactStatement
        self.actionStatement = actionStatement
        self.source = source
    }
}

/// `GET /api/v1/scans/findings?repository=R&reference=REF[&ignoreUnfixed=true]`: a manifest's findings.
public struct ScanFindingsView: Codable, Sendable, Equatable {
    public var repository: String
    public var manifest: String
    /// The advisory database version the findings were matched against, and the current one.
    public var advisoryVersion: Int64
    public var databaseVersion: Int64
    public var matchedAt: Date
    /// Most severe first, then by id.
    public var findings: [ScanFindingView]
    /// Findings left out by `ignoreUnfixed` (those without a fixed version).
    public var unfixedHidden: Int
    /// Findings (of those shown) that an OpenVEX statement suppresses.
    public var suppressed: Int?
    /// OpenVEX referrers of the image that could not be read, and why (their statements are not applied).
    public var vexProblems: [String]?
    public init(repository: String, manifest: String, advisoryVersion: Int64, databaseVersion: Int64, matchedAt: Date,
                findings: [ScanFindingView], unfixedHidden: Int, suppressed: Int? = nil, vexProblems: [String]? = nil) {
        self.suppressed = suppressed
        self.vexProblems = vexProblems
        self.repository = repository
        self.manifest = manifest
        self.advisoryVersion = advisoryVersion
        self.databaseVersion = databaseVersion
        self.matchedAt = matchedAt
        self.findings = findings
        self.unfixedHidden = unfixedHidden
    }
}

/// One exception of the scan policy: findings of advisory `id` (or an alias) do not fail images of
/// the repositories `repository` matches (all when absent) until `until`.
public struct ScanPolicyExceptionView: Codable, Sendable, Equatable {
    public var id: String
    public var repository: String?
    /// The identity that added it (recorded by the server).
    public var who: String
    public var why: String
    public var until: Date
    public var createdAt: Date
    /// Past `until`: it no longer counts (dropped at the next change).
    public var expired: Bool
    public init(id: String, repository: String?, who: String, why: String, until: Date, createdAt: Date, expired: Bool) {
        self.id = id
        self.repository = repository
        self.who = who
        self.why = why
        self.until = until
        self.createdAt = createdAt
        self.expired = expired
    }
}

/// `GET`/`PATCH /api/v1/scan/policy`: the scan policy.
public struct ScanPolicyView: Codable, Sendable, Equatable {
    /// None, Low, Medium, High or Critical: findings of this severity or above fail an image (None: nothing fails).
    public var blockSeverity: String
    public var ignoreUnfixed: Bool
    /// Pulls of images that fail the policy are refused (403 DENIED), and so are they at admission.
    public var blockPulls: Bool
    public var allow: [ScanPolicyExceptionView]
    public init(blockSeverity: String, ignoreUnfixed: Bool, blockPulls: Bool, allow: [ScanPolicyExceptionView]) {
        self.blockSeverity = blockSeverity
        self.ignoreUnfixed = ignoreUnfixed
        self.blockPulls = blockPulls
        self.allow = allow
    }
}

/// An exception to add (`PATCH /api/v1/scan/policy`, `allow`): `why` and `until` (RFC 3339 or a
/// date, at most 366 days ahead) are required; the server records who.
public struct ScanPolicyExceptionRequest: Codable, Sendable, Equatable {
    public var id: String
    public var repository: String?
    public var why: String?
    public var until: String?
    public init(id: String, repository: String? = nil, why: String?, until: String?) {
        self.id = id
        self.repository = repository
        self.why = why
        self.until = until
    }
}

/// `PATCH /api/v1/scan/policy`: fields given replace the stored ones; `allow` adds exceptions
/// (replacing one of the same id and repository); `removeAllow` removes every exception of the ids.
public struct ScanPolicyUpdateRequest: Codable, Sendable, Equatable {
    public var blockSeverity: String?
    public var ignoreUnfixed: Bool?
    public var blockPulls: Bool?
    public var allow: [ScanPolicyExceptionRequest]?
    public var removeAllow: [String]?
    public init(blockSeverity: String? = nil, ignoreUnfixed: Bool? = nil, blockPulls: Bool? = nil,
                allow: [ScanPolicyExceptionRequest]? = nil, removeAllow: [String]? = nil) {
        self.blockSeverity = blockSeverity
        self.ignoreUnfixed = ignoreUnfixed
        self.blockPulls = blockPulls
        self.allow = allow
        self.removeAllow = removeAllow
    }
}

/// One image of `GET /api/v1/scans`: its findings counted by severity.
public struct ScanImageSummaryView: Codable, Sendable, Equatable {
    public var repository: String
    public var manifest: String
    public var tags: [String]
    public var advisoryVersion: Int64
    public var matchedAt: Date
    /// Severity name → number of findings (only severities with findings).
    public var counts: [String: Int]
    public var total: Int
    public init(repository: String, manifest: String, tags: [String], advisoryVersion: Int64, matchedAt: Date, counts: [String: Int],
                total: Int) {
        self.repository = repository
        self.manifest = manifest
        self.tags = tags
        self.advisoryVersion = advisoryVersion
        self.matchedAt = matchedAt
        self.counts = counts
        self.total = total
    }
}

/// `GET /api/v1/scans?severity=High,Critical&repository=payments/*&limit=N`: scanned images of the
/// repositories the caller may read, most findings at the asked severities first.
public struct ScanListView: Codable, Sendable, Equatable {
    public var images: [ScanImageSummaryView]
    /// More images matched than `limit`, or the walk stopped at its bound of repositories.
    public var truncated: Bool
    public init(images: [ScanImageSummaryView], truncated: Bool) {
        self.images = images
        self.truncated = truncated
    }
}

/// `POST /api/v1/scans/vex?repository=R&reference=TAG|DIGEST` (body: an OpenVEX JSON document):
/// the document attached to the image as an `application/openvex+json` referrer.
public struct ScanVEXImportView: Codable, Sendable, Equatable {
    public var repository: String
    /// The image's manifest digest.
    public var subject: String
    /// The referrer manifest that carries the document.
    public var referrer: String
    public var statements: Int
    public init(repository: String, subject: String, referrer: String, statements: Int) {
        self.repository = repository
        self.subject = subject
        self.referrer = referrer
        self.statements = statements
    }
}
