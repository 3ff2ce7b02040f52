import Foundation
import Testing
@testable import Scanning

/// Layer bytes in, findings out: the inventory's ecosystem names, releases, source packages and
/// versions are what the advisory matcher expects.
@Suite struct InventoryMatchingTests {
    static func osv(_ id: String, _ ecosystem: String, _ name: String, fixed: String) -> Advisory {
        Advisory(id: id, source: .osv, affected: [AffectedPackage(ecosystem: ecosystem, name: name, ranges: [
            AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed(fixed)]),
        ])])
    }

    static let advisories: [Advisory] = [
        // Debian advisories name source packages: libc6 comes from glibc.
        osv("DSA-GLIBC", "Debian:12", "glibc", fixed: "2.36-9+deb12u7"),
        // Fixed in bookworm already: no finding for 3.0.11-1~deb12u2 >= …u1.
        osv("DSA-OPENSSL-OLD", "Debian:12", "openssl", fixed: "3.0.11-1~deb12u1"),
        // Another release's advisory does not apply.
        osv("DSA-OPENSSL-11", "Debian:11", "openssl", fixed: "9.9.9-1"),
        // libfoo1's source version (1.2-3) is what Debian advisories compare.
        osv("DSA-FOO", "Debian:12", "foo", fixed: "1.2-3+deb12u1"),
        osv("PYSEC-RO", "PyPI", "requests-oauthlib", fixed: "1.3.2"),
        Advisory(id: "GHSA-SEMVER", source: .osv, affected: [AffectedPackage(ecosystem: "npm", name: "semver", ranges: [
            AffectedRange(kind: .semver, events: [.introduced("7.0.0"), .fixed("7.5.2")]),
        ])]),
        osv("GHSA-ARBORIST", "npm", "@npmcli/arborist", fixed: "7.3.0"),
        osv("GHSA-SNAKEYAML", "Maven", "org.yaml:snakeyaml", fixed: "2.0"),
        Advisory(id: "GO-TEXT", source: .osv, affected: [AffectedPackage(ecosystem: "Go", name: "golang.org/x/text", ranges: [
            AffectedRange(kind: .semver, events: [.introduced("0"), .fixed("0.3.8")]),
        ])]),
        Advisory(id: "GO-STDLIB", source: .osv, affected: [AffectedPackage(ecosystem: "Go", name: "stdlib", ranges: [
            AffectedRange(kind: .semver, events: [.introduced("1.21.0"), .fixed("1.21.6")]),
        ])]),
        // The replaced module is not in the binary; its replacement is, at a fixed version.
        osv("GO-OLDDEP", "Go", "github.com/old/dep", fixed: "v9.0.0"),
        osv("GO-NEWDEP", "Go", "github.com/new/dep", fixed: "v1.1.0"),
    ]

    @Test func layerBytesInFindingsOut() async throws {
        let layer = try Compress.gzip(try SampleLayer.everything())
        let index = try await LayerWalker().index(Chunks(layer, size: 1000), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip")
        let inventory = ImageInventory(layers: [index])
        #expect(inventory.complete, "\(inventory.problemText)")
        let advisories = AdvisoryIndex(Self.advisories)
        var found: [String] = []
        for package in inventory.installedPackages() {
            let result = advisories.matches(for: package)
            #expect(result.problems.isEmpty, "\(package): \(result.problems)")
            found += result.matches.map { "\($0.advisory.id) \(package.name)@\(package.version)" }
        }
        #expect(found.sorted() == [
            "DSA-FOO libfoo1@1.2-3+b1",
            "DSA-GLIBC libc6@2.36-9+deb12u4",
            "GHSA-ARBORIST @npmcli/arborist@7.2.1",
            "GHSA-SNAKEYAML org.yaml:snakeyaml@1.33",
            "GO-STDLIB stdlib@v1.21.5",
            "GO-TEXT golang.org/x/text@v0.3.7",
            "PYSEC-RO requests-oauthlib@1.3.1",
        ])
    }

    @Test func ubuntuPackagesMatchOSVsUbuntuReleases() async throws {
        var t = TarWriter()
        t.file("etc/os-release", "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\nID=ubuntu\nID_LIKE=debian\n")
        t.file("var/lib/dpkg/status", "Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.2-0ubuntu1.10)\nVersion: 3.0.2-0ubuntu1.10+b1\nArchitecture: amd64\n")
        let inventory = ImageInventory(layers: [try await walk(t.finished)])
        let ssl = try #require(inventory.installedPackages().first)
        #expect(ssl.ecosystem == "Ubuntu" && ssl.release == "22.04" && ssl.sourceName == "openssl")
        func advisory(_ id: String, _ ecosystem: String) -> Advisory {
            Advisory(id: id, source: .osv, affected: [AffectedPackage(ecosystem: ecosystem, name: "openssl", ranges: [
                AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed("3.0.2-0ubuntu1.12")]),
            ])])
        }
        let advisories = AdvisoryIndex([advisory("USN-LTS", "Ubuntu:22.04:LTS"), advisory("USN-PRO-1804", "Ubuntu:Pro:18.04:LTS"),
                                        advisory("USN-2404", "Ubuntu:24.04:LTS")])
        let result = advisories.matches(for: ssl)
        #expect(result.problems.isEmpty)
        #expect(result.matches.map(\.advisory.id) == ["USN-LTS"])
    }

    @Test func alpinePackagesMatchBySourceAndRelease() async throws {
        var t = TarWriter()
        t.file("etc/os-release", "ID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME=\"Alpine Linux v3.18\"\n")
        t.file("lib/apk/db/installed", "C:Q1abc=\nP:libcrypto3\nV:3.1.3-r0\nA:x86_64\no:openssl\nF:lib\nR:libcrypto.so.3\n\nP:busybox\nV:1.36.1-r5\no:busybox\n")
        let inventory = ImageInventory(layers: [try await walk(try Compress.gzip(t.finished))])
        let packages = inventory.installedPackages()
        let crypto = try #require(packages.first { $0.name == "libcrypto3" })
        #expect(crypto.ecosystem == "Alpine" && crypto.release == "v3.18" && crypto.sourceName == "openssl")
        #expect(inventory.packages.first { $0.name == "libcrypto3" }?.purl == "pkg:apk/alpine/libcrypto3@3.1.3-r0?arch=x86_64&distro=alpine-3.18.4")
        let advisories = AdvisoryIndex([
            Advisory(id: "CVE-SSL", source: .alpineSecdb, affected: [AffectedPackage(ecosystem: "Alpine", name: "openssl", release: "v3.18",
                ranges: [AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed("3.1.4-r0")])])]),
            Advisory(id: "CVE-SSL-319", source: .alpineSecdb, affected: [AffectedPackage(ecosystem: "Alpine", name: "openssl", release: "v3.19",
                ranges: [AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed("3.1.9-r0")])])]),
        ])
        #expect(advisories.matches(for: crypto).matches.map(\.advisory.id) == ["CVE-SSL"])
    }
}
