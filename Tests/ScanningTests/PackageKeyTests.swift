import Foundation
import Testing
@testable import Scanning

/// One normalisation for both sides of the re-match: the key an inventory is indexed by
/// (`AdvisoryIndex.packageKeys(of:)`) is the key the advisory naming the package is stored under
/// (`AdvisoryFeed.lookupKeys(of:)`), whatever spelling each side starts from.
@Suite struct PackageKeyTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var installed: InstalledPackage
        var advisoryEcosystem: String
        var advisoryName: String
        var meets: Bool
        var testDescription: String { "\(installed.ecosystem)/\(installed.name) vs \(advisoryEcosystem)/\(advisoryName)" }
    }

    static let rows: [Row] = [
        // Distribution advisories name the source package, with a release in the ecosystem.
        Row(installed: InstalledPackage(ecosystem: "Debian", name: "libssl3", version: "3.0.11-1~deb12u2", sourceName: "openssl", release: "bookworm"),
            advisoryEcosystem: "Debian:12", advisoryName: "openssl", meets: true),
        Row(installed: InstalledPackage(ecosystem: "Debian", name: "bash", version: "5.2.15-2+b2", release: "bookworm"),
            advisoryEcosystem: "Debian", advisoryName: "bash", meets: true),
        // The binary name is not what a Debian advisory names.
        Row(installed: InstalledPackage(ecosystem: "Debian", name: "libssl3", version: "3.0.11-1", sourceName: "openssl"),
            advisoryEcosystem: "Debian:12", advisoryName: "libssl3", meets: false),
        Row(installed: InstalledPackage(ecosystem: "Alpine", name: "libcrypto3", version: "3.1.4-r0", sourceName: "openssl", release: "v3.18"),
            advisoryEcosystem: "Alpine:v3.18", advisoryName: "openssl", meets: true),
        Row(installed: InstalledPackage(ecosystem: "Ubuntu", name: "bash", version: "5.1-6ubuntu1"),
            advisoryEcosystem: "Ubuntu:22.04:LTS", advisoryName: "bash", meets: true),
        // Ecosystems stay apart.
        Row(installed: InstalledPackage(ecosystem: "Ubuntu", name: "bash", version: "5.1-6ubuntu1"),
            advisoryEcosystem: "Debian:12", advisoryName: "bash", meets: false),
        // PEP 503: case, runs of `-`, `_` and `.` are one `-`.
        Row(installed: InstalledPackage(ecosystem: "PyPI", name: "Requests_OAuthlib", version: "1.3.1"),
            advisoryEcosystem: "PyPI", advisoryName: "requests-oauthlib", meets: true),
        Row(installed: InstalledPackage(ecosystem: "PyPI", name: "zope.interface", version: "5.0"),
            advisoryEcosystem: "PyPI", advisoryName: "Zope_Interface", meets: true),
        // Other ecosystems compare names exactly (npm scopes, Maven coordinates, Go module paths).
        Row(installed: InstalledPackage(ecosystem: "npm", name: "@npmcli/arborist", version: "7.2.1"),
            advisoryEcosystem: "npm", advisoryName: "@npmcli/arborist", meets: true),
        Row(installed: InstalledPackage(ecosystem: "npm", name: "Semver", version: "7.0.0"),
            advisoryEcosystem: "npm", advisoryName: "semver", meets: false),
        Row(installed: InstalledPackage(ecosystem: "Maven", name: "org.yaml:snakeyaml", version: "1.33"),
            advisoryEcosystem: "Maven", advisoryName: "org.yaml:snakeyaml", meets: true),
        Row(installed: InstalledPackage(ecosystem: "Go", name: "golang.org/x/text", version: "v0.3.7"),
            advisoryEcosystem: "Go", advisoryName: "golang.org/x/text", meets: true),
    ]

    @Test(arguments: rows) func inventoryAndAdvisoryKeysMeet(_ row: Row) {
        let inventoryKeys = AdvisoryIndex.packageKeys(of: [row.installed]).map { "\($0.ecosystem)\u{0}\($0.name)" }
        let advisory = Advisory(id: "X", source: .osv, affected: [AffectedPackage(
            ecosystem: row.advisoryEcosystem, name: row.advisoryName,
            ranges: [AffectedRange(kind: .ecosystem, events: [.introduced("0")])])])
        let advisoryKeys = AdvisoryFeed.lookupKeys(of: advisory).map { "\($0.ecosystem)\u{0}\($0.name)" }
        #expect(advisoryKeys.count == 1)
        #expect(Set(inventoryKeys).isDisjoint(with: advisoryKeys) == !row.meets)
        // And where the keys meet, the matcher finds the advisory: the key is the one it looks up by.
        let found = AdvisoryIndex([advisory]).matches(for: row.installed).matches.map(\.advisory.id)
        #expect(found == (row.meets ? ["X"] : []))
    }

    @Test func keysAreDistinctAndSorted() {
        let keys = AdvisoryIndex.packageKeys(of: [
            InstalledPackage(ecosystem: "Debian", name: "libssl3", version: "1", sourceName: "openssl"),
            InstalledPackage(ecosystem: "Debian", name: "openssl", version: "1", sourceName: "openssl"),
            InstalledPackage(ecosystem: "PyPI", name: "A_B", version: "1"),
            InstalledPackage(ecosystem: "PyPI", name: "a-b", version: "2"),
        ])
        #expect(keys.map { "\($0.ecosystem)/\($0.name)" } == ["debian/openssl", "pypi/a-b"])
    }
}
