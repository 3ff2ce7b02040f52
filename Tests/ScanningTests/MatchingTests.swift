import Foundation
import Testing
@testable import Scanning

@Suite struct MatchingTests {
    static func index() throws -> AdvisoryIndex {
        var index = AdvisoryIndex()
        index.add(try OSVImporter.importPath(fixture("osv")).advisories)
        index.add(try OSVImporter.importPath(fixture("osv-all.zip")).advisories)
        index.add(try DebianTrackerImporter.importData(Data(contentsOf: fixture("debian-tracker.json"))).advisories)
        index.add(try AlpineSecdbImporter.importData(Data(contentsOf: fixture("alpine-secdb.json"))).advisories)
        return index
    }

    func ids(_ package: InstalledPackage) throws -> [String] {
        let result = try Self.index().matches(for: package)
        #expect(result.problems.isEmpty, "\(result.problems)")
        return result.matches.map(\.advisory.id).sorted()
    }

    @Test(arguments: [
        // OSV ECOSYSTEM ranges: introduced 0 / fixed 2.0.1, and introduced 3.0 / last_affected 3.1.
        ("0.1", true), ("2.0", true), ("2.0.1rc1", true), ("2.0.1", false), ("2.5", false),
        ("3.0rc1", false), ("3.0", true), ("3.1", true), ("3.1.post1", false), ("3.1.1", false), ("4.0", false),
    ])
    func pypiRanges(_ c: (String, Bool)) throws {
        // "Example.Pkg" is the same PyPI project as the advisory's "example_pkg" (PEP 503).
        let found = try ids(InstalledPackage(ecosystem: "PyPI", name: "Example.Pkg", version: c.0))
        #expect(found == (c.1 ? ["PYSEC-2099-1"] : []), "\(c.0)")
    }

    @Test func pypiMatchCarriesFixAndSeverity() throws {
        let m = try #require(try Self.index().matches(for: InstalledPackage(ecosystem: "PyPI", name: "example-pkg", version: "1.5")).matches.first)
        #expect(m.reason == .inRange && m.fixedVersion == "2.0.1")
        #expect(m.severity?.level == .critical && m.severity?.score == 9.8)
        let listed = try #require(try Self.index().matches(for: InstalledPackage(ecosystem: "PyPI", name: "example-pkg", version: "3.1")).matches.first)
        #expect(listed.reason == .listed && listed.fixedVersion == nil)
    }

    @Test(arguments: [
        // SEMVER range written without "v": 0 – 1.2.4 and 2.0.0 – 2.0.3.
        ("v0.0.0-20191109021931-daa7c04131f5", true), ("v1.2.3", true), ("v1.2.4-0.20191109021931-daa7c04131f5", true),
        ("v1.2.4", false), ("v1.9.0", false), ("v2.0.0+incompatible", true), ("v2.0.2", true), ("v2.0.3", false),
    ])
    func goRanges(_ c: (String, Bool)) throws {
        let found = try ids(InstalledPackage(ecosystem: "Go", name: "example.com/mod", version: c.0))
        #expect(found == (c.1 ? ["GO-2099-0002"] : []), "\(c.0)")
    }

    @Test func goFixedVersionKeepsTheFeedsSpelling() throws {
        let m = try #require(try Self.index().matches(for: InstalledPackage(ecosystem: "Go", name: "example.com/mod", version: "v2.0.1")).matches.first)
        #expect(m.fixedVersion == "2.0.3" && m.severity?.level == .medium)
    }

    @Test func debianMatchesBySourcePackageAndRelease() throws {
        // libc6 is built from glibc; the binary version carries a binNMU suffix.
        let libc = InstalledPackage(ecosystem: "Debian", name: "libc6", version: "2.36-9+deb12u3+b1",
                                    sourceName: "glibc", sourceVersion: "2.36-9+deb12u3", release: "bookworm")
        // CVE-2099-0001 (fixed in +deb12u4), CVE-2099-0002 (undetermined) and DSA-9999-1 (Debian:12).
        #expect(try ids(libc) == ["CVE-2099-0001", "CVE-2099-0002", "DSA-9999-1"])
        var fixed = libc
        fixed.sourceVersion = "2.36-9+deb12u4"
        #expect(try ids(fixed) == ["CVE-2099-0002"])  // unfixed: every version
        // The same version in bullseye: only the open (no-dsa) CVE applies there.
        var bullseye = libc
        bullseye.release = "bullseye"
        let result = try Self.index().matches(for: bullseye)
        #expect(result.matches.map(\.advisory.id) == ["CVE-2099-0001"])
        #expect(result.matches.first?.reason == .unfixed && result.matches.first?.affected.noDSA == true)
        // trixie was never affected (fixed_version 0).
        var trixie = libc
        trixie.release = "trixie"
        #expect(try ids(trixie).isEmpty)
        // Release by number matches Debian:12 and the tracker's codename alike.
        var numbered = libc
        numbered.release = "12"
        #expect(try ids(numbered) == ["CVE-2099-0001", "CVE-2099-0002", "DSA-9999-1"])
        // The binary package name alone does not match source-package advisories.
        #expect(try ids(InstalledPackage(ecosystem: "Debian", name: "libc6", version: "2.36-9", release: "bookworm")).isEmpty)
    }

    @Test func debianSeverityFromUrgency() throws {
        let m = try Self.index().matches(for: InstalledPackage(ecosystem: "Debian", name: "openssl", version: "3.0.11-1~deb12u1", release: "bookworm"))
        #expect(m.matches.map(\.advisory.id) == ["CVE-2099-0004"])
        #expect(m.matches.first?.severity?.level == .high && m.matches.first?.fixedVersion == "3.0.11-1~deb12u2")
        let fixed = try Self.index().matches(for: InstalledPackage(ecosystem: "Debian", name: "openssl", version: "3.0.11-1~deb12u2", release: "bookworm"))
        #expect(fixed.matches.isEmpty)
    }

    @Test(arguments: [
        ("3.1.1-r0", ["CVE-2099-1000", "CVE-2099-1001", "CVE-2099-1002"]),
        ("3.1.2-r0", ["CVE-2099-1000"]),
        ("3.1.4_rc1-r0", ["CVE-2099-1000"]),
        ("3.1.4-r0", []),
        ("3.1.4-r1", []),
    ])
    func alpine(_ c: (String, [String])) throws {
        let found = try ids(InstalledPackage(ecosystem: "Alpine", name: "libssl3", version: c.0, sourceName: "openssl", release: "3.18"))
        #expect(found == c.1, "\(c.0)")
        // Another Alpine release's secdb does not apply.
        #expect(try ids(InstalledPackage(ecosystem: "Alpine", name: "openssl", version: c.0, release: "v3.19")).isEmpty)
    }

    @Test func mavenAndCratesFromTheZip() throws {
        #expect(try ids(InstalledPackage(ecosystem: "Maven", name: "org.example:lib", version: "1.0-beta")) == ["MAL-2099-2"])
        #expect(try ids(InstalledPackage(ecosystem: "Maven", name: "org.example:lib", version: "1.0")) == ["MAL-2099-2"])
        #expect(try ids(InstalledPackage(ecosystem: "Maven", name: "org.example:lib", version: "0.9")) == [])
        #expect(try ids(InstalledPackage(ecosystem: "Maven", name: "org.example:lib", version: "1.0.1")) == [])
        #expect(try ids(InstalledPackage(ecosystem: "crates.io", name: "example-crate", version: "0.8.0")) == ["RUSTSEC-2099-0001"])
        #expect(try ids(InstalledPackage(ecosystem: "crates.io", name: "example-crate", version: "0.8.1")) == [])
    }

    @Test func withdrawnAndGitOnlyAdvisoriesDoNotMatch() throws {
        #expect(try ids(InstalledPackage(ecosystem: "npm", name: "left-pad", version: "1.0.0")).isEmpty)
        #expect(try ids(InstalledPackage(ecosystem: "npm", name: "git-only", version: "1.0.0")).isEmpty)
    }

    @Test func badVersionsAreProblemsNotMatches() throws {
        let index = try Self.index()
        let bad = index.matches(for: InstalledPackage(ecosystem: "PyPI", name: "example-pkg", version: String(repeating: "1", count: 100_000)))
        #expect(bad.matches.isEmpty && bad.problems.count == 1)
        // An advisory whose range cannot be read is reported against that advisory.
        let broken = Advisory(id: "BROKEN", source: .osv, affected: [AffectedPackage(
            ecosystem: "PyPI", name: "p", ranges: [AffectedRange(kind: .ecosystem, events: [.introduced("0"), .fixed("not a version")])])])
        let result = AdvisoryIndex([broken]).matches(for: InstalledPackage(ecosystem: "PyPI", name: "p", version: "1.0"))
        #expect(result.matches.isEmpty && result.problems.map(\.advisoryID) == ["BROKEN"])
        // Ecosystems without version rules are reported, not guessed.
        let other = Advisory(id: "OTHER", source: .osv, affected: [AffectedPackage(ecosystem: "Hackage", name: "q", ranges: [
            AffectedRange(kind: .ecosystem, events: [.introduced("0")])])])
        #expect(AdvisoryIndex([other]).matches(for: InstalledPackage(ecosystem: "Hackage", name: "q", version: "1")).problems.count == 1)
    }

    @Test(arguments: [
        // introduced / fixed / last_affected / limit walked in version order (semver).
        ([AffectedRange.Event.introduced("1.0.0"), .fixed("1.5.0"), .introduced("2.0.0"), .lastAffected("2.1.0")],
         ["0.9.0": false, "1.0.0": true, "1.4.9": true, "1.5.0": false, "1.9.0": false, "2.0.0": true, "2.1.0": true, "2.1.1": false]),
        // Events in any order in the feed.
        ([.fixed("1.5.0"), .introduced("1.0.0")], ["1.2.0": true, "1.5.0": false, "0.1.0": false]),
        ([.introduced("0")], ["0.0.0": true, "99.0.0": true]),
        ([.introduced("0"), .limit("2.0.0")], ["1.9.9": true, "2.0.0": false]),
    ])
    func osvRangeEvaluation(_ c: ([AffectedRange.Event], [String: Bool])) throws {
        let range = AffectedRange(kind: .semver, events: c.0)
        for (version, expected) in c.1 {
            #expect(try AdvisoryIndex.inRange(version, range, .semver) == expected, "\(version)")
        }
    }
}
