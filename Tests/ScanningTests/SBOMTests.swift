import Foundation
import Testing
@testable import Scanning

/// The SBOM writer's own rules (the documents' validity against the SPDX and CycloneDX schemas is
/// checked by the real validators in tests/interop/test_sbom.py).
@Suite struct SBOMTests {
    static let info = SBOMDocumentInfo(created: Date(timeIntervalSince1970: 1_700_000_000),
                                       id: UUID(uuidString: "0F0E0D0C-0B0A-4908-8706-050403020100")!, toolVersion: "1.2.3")
    static let subject = SBOMSubject(name: "example/app:1", digest: "sha256:" + String(repeating: "ab", count: 32), platform: "linux/amd64")

    static func inventory(_ packages: [InventoryPackage], os: OSRelease? = OSRelease(id: "debian", versionID: "12", prettyName: "Debian 12")) -> ImageInventory {
        var inv = ImageInventory(layers: [])
        inv.os = os
        inv.packages = packages
        return inv
    }

    static let packages = [
        InventoryPackage(type: .python, name: "six", version: "1.16.0", locations: ["usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"]),
        InventoryPackage(type: .deb, name: "libc6", version: "2.36-9+deb12u4", sourceName: "glibc", architecture: "amd64",
                         locations: ["var/lib/dpkg/status"]),
        InventoryPackage(type: .npm, name: "@scope/util", version: "2.0.0", locations: ["app/node_modules/@scope/util/package.json"]),
        InventoryPackage(type: .javaArchive, name: "org.example:demo", version: "1.0", locations: ["app.jar!META-INF/maven/org.example/demo/pom.properties"]),
    ]

    static func json(_ data: Data) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func spdxDocumentDescribesTheImageAndContainsEveryPackage() throws {
        let data = try SBOMWriter.document(.spdx, inventory: Self.inventory(Self.packages), subject: Self.subject, info: Self.info)
        let doc = try Self.json(data)
        #expect(doc["spdxVersion"] as? String == "SPDX-2.3")
        #expect(doc["dataLicense"] as? String == "CC0-1.0")
        #expect(doc["SPDXID"] as? String == "SPDXRef-DOCUMENT")
        #expect(doc["documentNamespace"] as? String == "https://spdx.org/spdxdocs/berth-0f0e0d0c-0b0a-4908-8706-050403020100")
        let creation = try #require(doc["creationInfo"] as? [String: Any])
        #expect(creation["created"] as? String == "2023-11-14T22:13:20Z")
        #expect(creation["creators"] as? [String] == ["Tool: berth-1.2.3"])
        let packages = try #require(doc["packages"] as? [[String: Any]])
        // The image, the OS, then the packages ordered by type and name.
        #expect(packages.map { $0["name"] as? String } == ["example/app:1", "debian", "libc6", "org.example:demo", "@scope/util", "six"])
        #expect(packages[0]["SPDXID"] as? String == "SPDXRef-Image")
        #expect(packages[0]["versionInfo"] as? String == Self.subject.digest)
        #expect(packages[0]["primaryPackagePurpose"] as? String == "CONTAINER")
        #expect(packages[1]["primaryPackagePurpose"] as? String == "OPERATING-SYSTEM")
        let libc = try #require(packages.first { $0["name"] as? String == "libc6" })
        #expect(libc["versionInfo"] as? String == "2.36-9+deb12u4")
        let refs = try #require(libc["externalRefs"] as? [[String: String]])
        #expect(refs == [["referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&upstream=glibc"]])
        let relationships = try #require(doc["relationships"] as? [[String: String]])
        #expect(relationships.first == ["spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"])
        let contained = Set(relationships.dropFirst().map { $0["relatedSpdxElement"]! })
        #expect(relationships.dropFirst().allSatisfy { $0["spdxElementId"] == "SPDXRef-Image" && $0["relationshipType"] == "CONTAINS" })
        #expect(contained == Set(packages.dropFirst().map { $0["SPDXID"] as! String }))
    }

    @Test func documentOrderDoesNotDependOnInventoryOrder() throws {
        let a = try SBOMWriter.document(.spdx, inventory: Self.inventory(Self.packages), subject: Self.subject, info: Self.info)
        let b = try SBOMWriter.document(.spdx, inventory: Self.inventory(Self.packages.reversed()), subject: Self.subject, info: Self.info)
        #expect(a == b)
        let c = try SBOMWriter.document(.cyclonedx, inventory: Self.inventory(Self.packages), subject: Self.subject, info: Self.info)
        let d = try SBOMWriter.document(.cyclonedx, inventory: Self.inventory(Self.packages.reversed()), subject: Self.subject, info: Self.info)
        #expect(c == d)
    }

    @Test func everyDocumentIsUnique() throws {
        let inv = Self.inventory(Self.packages)
        let one = try Self.json(SBOMWriter.document(.spdx, inventory: inv, subject: Self.subject, info: SBOMDocumentInfo(toolVersion: "x")))
        let two = try Self.json(SBOMWriter.document(.spdx, inventory: inv, subject: Self.subject, info: SBOMDocumentInfo(toolVersion: "x")))
        #expect(one["documentNamespace"] as? String != two["documentNamespace"] as? String)
        let three = try Self.json(SBOMWriter.document(.cyclonedx, inventory: inv, subject: Self.subject, info: SBOMDocumentInfo(toolVersion: "x")))
        let four = try Self.json(SBOMWriter.document(.cyclonedx, inventory: inv, subject: Self.subject, info: SBOMDocumentInfo(toolVersion: "x")))
        let serial = try #require(three["serialNumber"] as? String)
        #expect(serial.hasPrefix("urn:uuid:") && UUID(uuidString: String(serial.dropFirst(9))) != nil)
        #expect(serial != four["serialNumber"] as? String)
    }

    @Test func spdxIdentifiersUseOnlyTheAllowedCharactersAndAreUnique() throws {
        #expect(SBOMWriter.spdxID("Package-npm-@scope/util-2.0.0") == "SPDXRef-Package-npm-scope-util-2.0.0")
        #expect(SBOMWriter.spdxID("a b\u{e9}\"\n:c") == "SPDXRef-a-b-c")
        // Two packages whose ids sanitise alike (and one listed twice) still get distinct ids.
        let twins = [
            InventoryPackage(type: .npm, name: "a/b", version: "1", locations: ["x/node_modules/a/b/package.json"]),
            InventoryPackage(type: .npm, name: "a+b", version: "1", locations: ["y/node_modules/a+b/package.json"]),
            InventoryPackage(type: .npm, name: "a+b", version: "1", locations: ["z/node_modules/a+b/package.json"]),
        ]
        let doc = try Self.json(SBOMWriter.document(.spdx, inventory: Self.inventory(twins, os: nil), subject: Self.subject, info: Self.info))
        let ids = try #require(doc["packages"] as? [[String: Any]]).map { $0["SPDXID"] as! String }
        #expect(ids.count == 4 && Set(ids).count == 4)
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
        #expect(ids.allSatisfy { $0.hasPrefix("SPDXRef-") && $0.dropFirst(8).unicodeScalars.allSatisfy(allowed.contains) })
        let cdx = try Self.json(SBOMWriter.document(.cyclonedx, inventory: Self.inventory(twins, os: nil), subject: Self.subject, info: Self.info))
        let refs = try #require(cdx["components"] as? [[String: Any]]).map { $0["bom-ref"] as! String }
        #expect(refs.count == 3 && Set(refs).count == 3 && !refs.contains("image"))
    }

    @Test func hostileNamesAreEscapedNotInterpreted() throws {
        let name = "evil\",\"injected\":\"1\n\u{0}\\</script>\u{202e}"
        let p = InventoryPackage(type: .python, name: name, version: "1\"}", locations: ["a\"b/METADATA"])
        for format in SBOMFormat.allCases {
            let doc = try Self.json(SBOMWriter.document(format, inventory: Self.inventory([p], os: nil),
                                                        subject: SBOMSubject(name: name), info: Self.info))
            #expect(doc["injected"] == nil)
            let list = try #require((doc["packages"] ?? doc["components"]) as? [[String: Any]])
            #expect(list.contains { $0["name"] as? String == name && ($0["versionInfo"] ?? $0["version"]) as? String == "1\"}" })
        }
    }

    @Test func cycloneDXDocument() throws {
        var inv = Self.inventory(Self.packages)
        inv.complete = false
        let doc = try Self.json(SBOMWriter.document(.cyclonedx, inventory: inv, subject: Self.subject, info: Self.info))
        #expect(doc["bomFormat"] as? String == "CycloneDX")
        #expect(doc["specVersion"] as? String == "1.5")
        #expect(doc["serialNumber"] as? String == "urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100")
        #expect(doc["version"] as? Int == 1)
        let metadata = try #require(doc["metadata"] as? [String: Any])
        #expect(metadata["timestamp"] as? String == "2023-11-14T22:13:20Z")
        let image = try #require(metadata["component"] as? [String: Any])
        #expect(image["type"] as? String == "container" && image["name"] as? String == "example/app:1" && image["version"] as? String == Self.subject.digest)
        let properties = try #require(metadata["properties"] as? [[String: String]])
        #expect(properties.contains(["name": "berth:inventory:complete", "value": "false"]))
        #expect(properties.contains(["name": "berth:image:platform", "value": "linux/amd64"]))
        let components = try #require(doc["components"] as? [[String: Any]])
        #expect(components[0]["type"] as? String == "operating-system" && components[0]["name"] as? String == "debian"
            && components[0]["version"] as? String == "12")
        #expect(components.dropFirst().allSatisfy { $0["type"] as? String == "library" })
        let six = try #require(components.first { $0["name"] as? String == "six" })
        #expect(six["version"] as? String == "1.16.0" && six["purl"] as? String == "pkg:pypi/six@1.16.0" && six["bom-ref"] as? String == "pkg:pypi/six@1.16.0")
        #expect((six["properties"] as? [[String: String]])?.first == ["name": "berth:package:type", "value": "python"])
    }
}
