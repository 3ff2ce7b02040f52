import Foundation

/// The image an SBOM describes.
public struct SBOMSubject: Sendable, Hashable {
    /// As the user names it: a reference ("registry.example/app:1.2") or a layout's tag.
    public var name: String
    /// The image manifest's digest, when known.
    public var digest: String?
    /// "os/architecture[/variant]", when known.
    public var platform: String?
    public init(name: String, digest: String? = nil, platform: String? = nil) {
        self.name = name; self.digest = digest; self.platform = platform
    }
}

/// The SBOM formats Berth writes, with the media types their referrers carry.
public enum SBOMFormat: String, Sendable, CaseIterable {
    case spdx, cyclonedx
    public var mediaType: String {
        switch self {
        case .spdx: return "application/spdx+json"
        case .cyclonedx: return "application/vnd.cyclonedx+json"
        }
    }
}

/// SBOM documents (SPDX 2.3 JSON, CycloneDX 1.5 JSON) of an `ImageInventory`. Pure values: the
/// creation time and the document's unique id are inputs (`SBOMDocumentInfo`), packages are
/// ordered by type, name, version, purl and locations, and the JSON is written by `JSONEncoder`
/// with sorted keys, so the same inventory and info give the same bytes.
public enum SBOMWriter {
    public static func document(_ format: SBOMFormat, inventory: ImageInventory, subject: SBOMSubject,
                                info: SBOMDocumentInfo) throws -> Data {
        switch format {
        case .spdx: return try encode(spdx(inventory: inventory, subject: subject, info: info))
        case .cyclonedx: return try encode(cycloneDX(inventory: inventory, subject: subject, info: info))
        }
    }

    static func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(value)
    }

    /// The inventory's packages in document order.
    static func ordered(_ packages: [InventoryPackage]) -> [InventoryPackage] {
        packages.sorted { a, b in
            (a.type.rawValue, a.name, a.version, a.purl, a.locations.joined(separator: "\n"))
                < (b.type.rawValue, b.name, b.version, b.purl, b.locations.joined(separator: "\n"))
        }
    }

    /// `2026-12-01T19:15:15Z` (a value-type style: a formatter made per call was 3% of scan on push).
    static func timestamp(_ date: Date) -> String {
        date.formatted(timestampStyle)
    }

    private static let timestampStyle = Date.ISO8601FormatStyle()   // UTC, no fraction

    static func completenessNote(_ inventory: ImageInventory) -> String? {
        guard !inventory.complete else { return nil }
        return "Partial inventory: \(inventory.problems.count) problem(s) while reading the image; packages may be missing."
    }

    // MARK: SPDX 2.3

    /// SPDX identifiers allow only letters, digits, `.` and `-` after "SPDXRef-".
    public static func spdxID(_ raw: String) -> String {
        var out = "SPDXRef-"
        var lastDash = false
        for b in raw.utf8 {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: ".")
            if ok { out.append(Character(Unicode.Scalar(b))); lastDash = false }
            else if !lastDash { out.append("-"); lastDash = true }
        }
        return out
    }

    static func spdx(inventory: ImageInventory, subject: SBOMSubject, info: SBOMDocumentInfo) -> SPDXDocument {
        var used: Set<String> = ["SPDXRef-DOCUMENT", "SPDXRef-Image"]
        func unique(_ id: String) -> String {
            var candidate = id, n = 1
            while !used.insert(candidate).inserted { n += 1; candidate = "\(id)-\(n)" }
            return candidate
        }
        let imageID = "SPDXRef-Image"
        var packages = [SPDXDocument.Package(
            SPDXID: imageID, name: subject.name, versionInfo: subject.digest,
            primaryPackagePurpose: "CONTAINER", externalRefs: nil,
            comment: subject.platform.map { "platform \($0)" }, sourceInfo: nil)]
        var relationships = [SPDXDocument.Relationship(spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES",
                                                       relatedSpdxElement: imageID)]
        if let os = inventory.os {
            let id = unique(spdxID("OperatingSystem-\(os.id)-\(os.versionID ?? "")"))
            packages.append(SPDXDocument.Package(SPDXID: id, name: os.id, versionInfo: os.versionID,
                                                 primaryPackagePurpose: "OPERATING-SYSTEM", externalRefs: nil,
                                                 comment: os.prettyName, sourceInfo: nil))
            relationships.append(.init(spdxElementId: imageID, relationshipType: "CONTAINS", relatedSpdxElement: id))
        }
        for p in ordered(inventory.packages) {
            let id = unique(spdxID("Package-\(p.type.rawValue)-\(p.name)-\(p.version)"))
            packages.append(SPDXDocument.Package(
                SPDXID: id, name: p.name, versionInfo: p.version, primaryPackagePurpose: "LIBRARY",
                externalRefs: p.purl.isEmpty ? nil : [.init(referenceCategory: "PACKAGE-MANAGER", referenceType: "purl", referenceLocator: p.purl)],
                comment: nil,
                sourceInfo: p.locations.isEmpty ? nil : "found in: " + p.locations.joined(separator: ", ")))
            relationships.append(.init(spdxElementId: imageID, relationshipType: "CONTAINS", relatedSpdxElement: id))
        }
        return SPDXDocument(
            SPDXID: "SPDXRef-DOCUMENT", spdxVersion: "SPDX-2.3", dataLicense: "CC0-1.0", name: subject.name,
            documentNamespace: "https://spdx.org/spdxdocs/berth-\(info.id.uuidString.lowercased())",
            creationInfo: .init(created: timestamp(info.created), creators: ["Tool: berth-\(info.toolVersion)"]),
            comment: completenessNote(inventory), packages: packages, relationships: relationships)
    }

    // MARK: CycloneDX 1.5

    static func cycloneDX(inventory: ImageInventory, subject: SBOMSubject, info: SBOMDocumentInfo) -> CycloneDXDocument {
        var used: Set<String> = ["image"]
        func unique(_ ref: String) -> String {
            var candidate = ref, n = 1
            while !used.insert(candidate).inserted { n += 1; candidate = "\(ref)#\(n)" }
            return candidate
        }
        var components: [CycloneDXDocument.Component] = []
        if let os = inventory.os {
            components.append(.init(bomRef: unique("os:\(os.id)@\(os.versionID ?? "")"), type: "operating-system", name: os.id,
                                    version: os.versionID, description: os.prettyName, purl: nil, properties: nil))
        }
        for p in ordered(inventory.packages) {
            var properties = [CycloneDXDocument.Property(name: "berth:package:type", value: p.type.rawValue)]
            for (i, l) in p.locations.enumerated() { properties.append(.init(name: "berth:location:\(i):path", value: l)) }
            components.append(.init(bomRef: unique(p.purl.isEmpty ? "\(p.type.rawValue):\(p.name)@\(p.version)" : p.purl),
                                    type: "library", name: p.name, version: p.version, description: nil,
                                    purl: p.purl.isEmpty ? nil : p.purl, properties: properties))
        }
        var metaProperties: [CycloneDXDocument.Property] = []
        if let platform = subject.platform { metaProperties.append(.init(name: "berth:image:platform", value: platform)) }
        metaProperties.append(.init(name: "berth:inventory:complete", value: inventory.complete ? "true" : "false"))
        return CycloneDXDocument(
            bomFormat: "CycloneDX", specVersion: "1.5", serialNumber: "urn:uuid:\(info.id.uuidString.lowercased())", version: 1,
            metadata: .init(timestamp: timestamp(info.created),
                            tools: .init(components: [.init(bomRef: nil, type: "application", name: "berth", version: info.toolVersion,
                                                            description: nil, purl: nil, properties: nil)]),
                            component: .init(bomRef: "image", type: "container", name: subject.name, version: subject.digest,
                                             description: completenessNote(inventory), purl: nil, properties: nil),
                            properties: metaProperties),
            components: components)
    }
}

/// What makes one SBOM document unique: when it was made, its id (the SPDX namespace's and the
/// CycloneDX serial number's UUID) and the version of the tool that made it.
public struct SBOMDocumentInfo: Sendable, Hashable {
    public var created: Date
    public var id: UUID
    public var toolVersion: String
    public init(created: Date = Date(), id: UUID = UUID(), toolVersion: String) {
        self.created = created; self.id = id; self.toolVersion = toolVersion
    }
}

/// SPDX 2.3 JSON, the fields Berth writes.
struct SPDXDocument: Encodable {
    var SPDXID: String
    var spdxVersion: String
    var dataLicense: String
    var name: String
    var documentNamespace: String
    var creationInfo: CreationInfo
    var comment: String?
    var packages: [Package]
    var relationships: [Relationship]

    struct CreationInfo: Encodable { var created: String; var creators: [String] }

    struct Package: Encodable {
        var SPDXID: String
        var name: String
        var versionInfo: String?
        var primaryPackagePurpose: String
        var externalRefs: [ExternalRef]?
        var comment: String?
        var sourceInfo: String?
        var downloadLocation = "NOASSERTION"
        var filesAnalyzed = false
        var licenseConcluded = "NOASSERTION"
        var licenseDeclared = "NOASSERTION"
        var copyrightText = "NOASSERTION"
        var supplier = "NOASSERTION"
    }

    struct ExternalRef: Encodable { var referenceCategory: String; var referenceType: String; var referenceLocator: String }

    struct Relationship: Encodable { var spdxElementId: String; var relationshipType: String; var relatedSpdxElement: String }
}

/// CycloneDX 1.5 JSON, the fields Berth writes.
struct CycloneDXDocument: Encodable {
    var bomFormat: String
    var specVersion: String
    var serialNumber: String
    var version: Int
    var metadata: Metadata
    var components: [Component]

    struct Metadata: Encodable {
        var timestamp: String
        var tools: Tools
        var component: Component
        var properties: [Property]
    }

    struct Tools: Encodable { var components: [Component] }

    struct Component: Encodable {
        var bomRef: String?
        var type: String
        var name: String
        var version: String?
        var description: String?
        var purl: String?
        var properties: [Property]?

        enum CodingKeys: String, CodingKey {
            case bomRef = "bom-ref", type, name, version, description, purl, properties
        }
    }

    struct Property: Encodable { var name: String; var value: String }
}
