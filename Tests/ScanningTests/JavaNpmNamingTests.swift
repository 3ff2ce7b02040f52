import Foundation
import Testing
@testable import Scanning

/// Java archives and npm package.json files are named the way Syft names them (the interop test
/// `test_sbom.py` diffs the two inventories on a Debian image); these are the rules one by one.
@Suite struct JavaNpmNamingTests {
    /// File name → (name, version). The right-hand column is what Syft's own pattern gives: it was
    /// produced by running Syft v1.18.1's `nameAndVersionPattern` and `secondaryVersionPattern`
    /// with Go's regexp on these names.
    static let filenames: [(String, String, String)] = [
        ("some-package-4.0.1.jar", "some-package", "4.0.1"),
        ("prefix.thing-4.jar", "prefix.thing", "4"),
        ("my-http2-server-5.jar", "my-http2-server", "5"),
        ("jetpack-build235-rc5.jar", "jetpack", "build235-rc5"),
        ("ironman-r4-2009.jar", "ironman-r4", "2009"),
        ("commons-lang3-3.12.0.jar", "commons-lang3", "3.12.0"),
        ("guice-no-aop-4.2.3.jar", "guice-no-aop", "4.2.3"),
        ("jsr305-0.1~+svn49.jar", "jsr305", "0.1~+svn49"),
        ("log4j-1.2-api-2.17.jar", "log4j", "1.2-api-2.17"),
        ("foo_1.2.jar", "foo", "1.2"),
        ("foo-v1.2.jar", "foo-v1", "2"),
        ("commons-lang3.jar", "commons-lang3", ""),
        ("foo+bar-1.0.jar", "", ""),
        ("1up-2.0.jar", "", ""),
        ("a--1.jar", "a-", "1"),
        ("app-rc12.jar", "app", "rc12"),
        ("app-RC12.jar", "app", "RC12"),
        ("app-r12x.jar", "app-r12x", ""),
        ("app-Build7.jar", "app", "Build7"),
        ("app_build7.jar", "app", "build7"),
        ("app_Build7.jar", "app_Build7", ""),
        ("app.r3.jar", "app", "r3"),
        ("jakarta.activation-api-1.2.jar", "jakarta.activation-api", "1.2"),
        ("org.eclipse.osgi-3.1.jar", "org.eclipse.osgi", "3.1"),
        ("a.-b-1.jar", "a.-b", "1"),
        ("x-.jar", "x-", ""),
        ("x.tar.gz", "x.tar", ""),
        (".jar", "", ""),
        ("noext", "noext", ""),
        ("spring-boot-2.7.0-SNAPSHOT.jar", "spring-boot", "2.7.0-SNAPSHOT"),
        ("name-with_underscores-1.jar", "name-with_underscores", "1"),
        ("a.b.c", "a.b", ""),
        ("Ünicode-1.0.jar", "", ""),
        ("a..b-1.jar", "a..b", "1"),
        ("a-b_c.d-e-1.0-beta.jar", "a-b_c.d-e", "1.0-beta"),
    ]

    @Test func fileNamesSplitAsSyftSplitsThem() {
        for (file, name, version) in Self.filenames {
            let got = JavaArchiveFilename(path: "usr/share/java/" + file)
            #expect(got == JavaArchiveFilename(name: name, version: version), "\(file)")
        }
        // Inside another archive, the inner file's name counts.
        #expect(JavaArchiveFilename(path: "opt/app.war!WEB-INF/lib/snakeyaml-1.33.jar") == JavaArchiveFilename(name: "snakeyaml", version: "1.33"))
        #expect(JavaArchiveFilename(path: "app.jar!inner-2.jar") == JavaArchiveFilename(name: "inner", version: "2"))
    }

    @Test func aDottedIdentifierNameKeepsItsLastPart() {
        func name(_ n: String) -> String { JavaArchiveFilename(name: n, version: "").packageName }
        #expect(name("jakarta.activation-api") == "activation-api")
        #expect(name("prefix.thing") == "thing")
        #expect(name("org.eclipse.osgi") == "org.eclipse.osgi")
        #expect(name("a..b") == "a..b")
        #expect(name("a.-b") == "a.-b")
        #expect(name("a.1b") == "a.1b")
        #expect(name("_x.y") == "y")
        #expect(name("plain") == "plain")
    }

    static func manifest(_ text: String) -> JavaManifest { JavaManifest(Array(text.utf8)) }

    @Test func manifestsParseSectionsContinuationsAndCRLF() {
        let m = Self.manifest("""
            Manifest-Version: 1.0\r
            Bundle-Description: a long line that goes on and o\r
             n over the next\r
            no colon here\r
            : empty key\r
            Implementation-Title:   spaced  \r
            \r
            Name: org/example/\r
            Implementation-Version: 4.0\r
            \r
             stray continuation\r
            """)
        #expect(m.main("Bundle-Description") == "a long line that goes on and on over the next")
        #expect(m.main("Implementation-Title") == "spaced")
        #expect(m.main("Implementation-Version") == nil)
        #expect(m.anySection("Implementation-Version") == "4.0")
        #expect(m.sections.count == 2)
        // Hostile input is odd values, never a crash.
        for text in ["", "\n\n\n", " leading continuation", ":::", String(repeating: "K: v\n ", count: 10_000), "\u{0}: \u{FFFF}"] {
            _ = Self.manifest(text).selectName(JavaArchiveFilename(path: "x.jar"))
        }
    }

    /// Hostile manifests and names: each finishes at once (minutes of copying before the bounds).
    @Test func hostileManifestsAndNamesStayLinear() {
        // Millions of continuation lines: blank ones add nothing, others stop at the field bound.
        let x = String(repeating: "x", count: 4089)
        let blank = Self.manifest("Name: \(x)\n" + String(repeating: " \n", count: 2_000_000))
        #expect(blank.main("Name") == x)
        let growing = Self.manifest("Name: a\n" + String(repeating: " bc\n", count: 1_000_000))
        #expect(growing.main("Name")?.utf8.count == TextLines.maxField)
        // Cut at a character, never inside one.
        let wide = Self.manifest("Name: a\n" + String(repeating: " é\n", count: 5000))
        #expect(wide.main("Name").map { $0.utf8.count <= TextLines.maxField && !$0.contains("\u{FFFD}") } == true)
        // A 64 KiB entry name of dash-separated words, and of separators.
        let dashes = String(repeating: "a-", count: 32_768) + "a"
        #expect(JavaArchiveFilename(path: dashes + ".jar") == JavaArchiveFilename(name: dashes, version: ""))
        let rs = String(repeating: "a-r1x", count: 13_000)
        #expect(JavaArchiveFilename(path: rs + ".jar").name == rs)
        let dots = "a" + String(repeating: "._", count: 30_000)
        #expect(JavaArchiveFilename(path: dots + ".jar").version == "")
    }

    @Test func aNameComesFromTheBundlePluginThenTheFileThenTheManifest() {
        let plain = JavaArchiveFilename(path: "guice.jar"), nameless = JavaArchiveFilename(path: "1.jar")
        let bundle = Self.manifest("Created-By: Apache Maven Bundle Plugin 5.1\nBundle-SymbolicName: org.example.osgi.widget\nBundle-Name: Widget\n")
        #expect(bundle.selectName(plain) == "widget")
        // Unless the symbolic name is just the vendor id.
        let vendor = Self.manifest("Created-By: Apache Maven Bundle Plugin\nBundle-SymbolicName: org.example\nImplementation-Vendor-Id: org.example\nBundle-Name: Widget\n")
        #expect(vendor.selectName(plain) == "guice")
        #expect(vendor.selectName(nameless) == "Widget")
        // A symbolic name without the plugin does not name the archive.
        let osgi = Self.manifest("Bundle-SymbolicName: com.google.inject\nBundle-Version: 4.2.3\nImplementation-Title: Guice\n")
        #expect(osgi.selectName(plain) == "guice")
        #expect(osgi.selectName(nameless) == "Guice")
        for (key, expected) in [("Name", "n"), ("Bundle-Name", "b"), ("Short-Name", "s"), ("Extension-Name", "e"), ("Implementation-Title", "i")] {
            // This key and every key after it in the order; written to the file last-first.
            let order = ["Name: n", "Bundle-Name: b", "Short-Name: s", "Extension-Name: e", "Implementation-Title: i"]
            let from = order.drop { !$0.hasPrefix(key + ":") }
            #expect(Self.manifest(from.reversed().joined(separator: "\n")).selectName(nameless) == expected)
        }
        #expect(Self.manifest("Specification-Title: no\nAutomatic-Module-Name: no\n").selectName(nameless) == "")
    }

    @Test func aVersionComesFromTheFileThenTheManifestInOrder() {
        let m = Self.manifest("Bundle-Version: 1.0.0\nSpecification-Version: 2\n\nName: x/\nImplementation-Version: 3\n")
        #expect(m.selectVersion(JavaArchiveFilename(path: "atinject-jsr330-api-1.0.jar")) == "1.0")
        #expect(m.selectVersion(JavaArchiveFilename(path: "atinject.jar")) == "3")
        #expect(Self.manifest("Bundle-Version: 1.0.0\nPlugin-Version: 7\n").selectVersion(JavaArchiveFilename(path: "a.jar")) == "7")
        #expect(Self.manifest("Bundle-Version: 1.0.0\n").selectVersion(JavaArchiveFilename(path: "a.jar")) == "1.0.0")
        #expect(Self.manifest("Created-By: x\n").selectVersion(JavaArchiveFilename(path: "a.jar")) == "")
    }

    static func jar(manifest: String?, poms: [(String, String, String)] = [], pomXML: [String] = [], nested: [(String, [UInt8])] = []) throws -> [UInt8] {
        var z = ZipWriter()
        if let manifest { try z.add("META-INF/MANIFEST.MF", Array(manifest.utf8), deflate: true) }
        for (group, artifact, version) in poms {
            try z.add("META-INF/maven/\(group)/\(artifact)/pom.properties", ZipWriter.pomProperties(group: group, artifact: artifact, version: version))
        }
        for artifact in pomXML { try z.add("META-INF/maven/g/\(artifact)/pom.xml", Array("<project/>".utf8)) }
        for (name, bytes) in nested { try z.add(name, bytes) }
        return z.bytes
    }

    static func catalog(_ path: String, _ bytes: [UInt8]) -> [String] {
        JavaArchive.catalog(bytes, path: path, limits: ScanLimits()).packages.map { "\($0.name)@\($0.version) \($0.locations[0])" }
    }

    @Test func anArchiveIsOnePackageOrOnePerForeignPom() throws {
        let mf = "Manifest-Version: 1.0\n"
        // The pom naming the file describes the archive.
        #expect(Self.catalog("j/guava-31.jar", try Self.jar(manifest: mf, poms: [("com.google.guava", "guava", "31.1-jre")]))
                == ["com.google.guava:guava@31.1-jre j/guava-31.jar!META-INF/maven/com.google.guava/guava/pom.properties"])
        // Known only by its file name and manifest: no group, the archive's own location.
        #expect(Self.catalog("j/aopalliance-1.0.jar", try Self.jar(manifest: mf)) == ["aopalliance@1.0 j/aopalliance-1.0.jar"])
        #expect(Self.catalog("j/guice.jar", try Self.jar(manifest: "Bundle-Version: 4.2.3\n", poms: [("cglib", "cglib", "3.2.12")]))
                == ["guice@4.2.3 j/guice.jar", "cglib:cglib@3.2.12 j/guice.jar!META-INF/maven/cglib/cglib/pom.properties"])
        // A pom whose artifact differs from the file name is a package beside the archive's,
        // and an archive with no version anywhere is UNKNOWN (as Syft spells it).
        #expect(Self.catalog("j/error-prone-annotation.jar", try Self.jar(manifest: mf, poms: [("com.google.errorprone", "error_prone_annotation", "2.18.0")]))
                == ["error-prone-annotation@UNKNOWN j/error-prone-annotation.jar",
                    "com.google.errorprone:error_prone_annotation@2.18.0 j/error-prone-annotation.jar!META-INF/maven/com.google.errorprone/error_prone_annotation/pom.properties"])
        // A prefix match: artifactId starts with the file's name, or the name ends with it.
        #expect(Self.catalog("j/netty-4.1.jar", try Self.jar(manifest: mf, poms: [("io.netty", "netty-all", "4.1.100")])).first?.hasPrefix("io.netty:netty-all@4.1.100 ") == true)
        #expect(Self.catalog("j/my-netty-all.jar", try Self.jar(manifest: mf, poms: [("io.netty", "netty-all", "4.1.100")])) .count == 1)
        // …but an exact match wins over prefix matches.
        let both = try Self.jar(manifest: mf, poms: [("g", "lib", "1"), ("g", "lib-extra", "2")])
        #expect(Self.catalog("j/lib.jar", both) == ["g:lib@1 j/lib.jar!META-INF/maven/g/lib/pom.properties", "g:lib-extra@2 j/lib.jar!META-INF/maven/g/lib-extra/pom.properties"])
        // Among several prefix matches, the first with a pom.xml beside it.
        let two = try Self.jar(manifest: mf, poms: [("g", "core-a", "1"), ("g", "core-b", "2")], pomXML: ["core-a"])
        #expect(Self.catalog("j/core.jar", two).first?.hasPrefix("g:core-a@1 ") == true)
        let noXML = try Self.jar(manifest: mf, poms: [("g", "core-a", "1"), ("g", "core-b", "2")])
        #expect(Self.catalog("j/core.jar", noXML).first?.hasPrefix("g:core-b@2 ") == true)
        // Named by the manifest when the file name says nothing.
        #expect(Self.catalog("j/1.jar", try Self.jar(manifest: "Implementation-Title: tool\nImplementation-Version: 9\n")) == ["tool@9 j/1.jar"])
        #expect(Self.catalog("j/1.jar", try Self.jar(manifest: mf)) == [])
    }

    @Test func theArchivesOwnPomGivesGroupAndVersionTogether() throws {
        // Named by its manifest, two poms of that artifact (a relocated group): both from the first.
        let two = try Self.jar(manifest: "Implementation-Title: lib\n", poms: [("b.group", "lib", "2"), ("a.group", "lib", "1")])
        #expect(Self.catalog("j/1.jar", two) == ["a.group:lib@1 j/1.jar!META-INF/maven/a.group/lib/pom.properties"])
        // Matched by its file name: the matched pom (of two exact matches without a pom.xml, the
        // last by directory, as Syft), the other of that artifact not listed beside it.
        #expect(Self.catalog("j/lib.jar", two) == ["b.group:lib@2 j/lib.jar!META-INF/maven/b.group/lib/pom.properties"])
    }

    @Test func aNestedCopyIsListedOnce() throws {
        let inner = try Self.jar(manifest: "Manifest-Version: 1.0\n", poms: [("g", "dup", "1")])
        let outer = try Self.jar(manifest: "Manifest-Version: 1.0\n", nested: [("lib/dup-1.jar", inner), ("other/dup-1.jar", inner)])
        #expect(Self.catalog("opt/outer.jar", outer) == ["outer@UNKNOWN opt/outer.jar", "g:dup@1 opt/outer.jar!lib/dup-1.jar!META-INF/maven/g/dup/pom.properties"])
    }

    @Test func aRefusedEntryLeavesTheBudgetToTheOthers() throws {
        // A nested archive declared 2 GiB is refused without being inflated: the one after it is read.
        var outer = ZipWriter()
        try outer.add("META-INF/MANIFEST.MF", Array("Manifest-Version: 1.0\n".utf8))
        try outer.add("lib/huge.jar", [UInt8](repeating: 0, count: 1000), deflate: true, declaredSize: 2 << 30)
        try outer.add("lib/small.jar", try ZipWriter.jar(group: "g", artifact: "small", version: "1"))
        var limits = ScanLimits()
        limits.maxArchiveBytes = 1 << 20
        let file = JavaArchive.catalog(outer.bytes, path: "j/outer-1.jar", limits: limits)
        #expect(file.packages.map { "\($0.name)@\($0.version)" } == ["outer@1", "g:small@1"])
    }

    @Test func manyEmptyEntriesCostBudgetAndProblemsAreCapped() throws {
        var z = ZipWriter()
        for k in 0..<5000 { try z.add("META-INF/maven/g/a\(k)/pom.properties", []) }
        let file = JavaArchive.catalog(z.bytes, path: "j/empty.jar", limits: ScanLimits())
        #expect(file.packages.isEmpty)
        #expect(file.problems.count == JavaArchive.maxProblems + 1)
        #expect(file.problems.last?.reason.contains("more problems") == true)
        // Each costs a byte at least: a small budget stops the reading.
        var small = ScanLimits()
        small.maxArchiveBytes = 10
        let spent = JavaArchive.catalog(z.bytes, path: "j/empty.jar", limits: small)
        #expect(spent.problems.count == 11)
        #expect(spent.problems.last?.reason.contains("no bytes left to inflate") == true)
    }

    @Test func withoutAManifestOnlyItsPomsCount() throws {
        // Syft reads nothing from such an archive; a library is no less present for a stripped
        // manifest, so Berth keeps its pom.properties. Weave-Classes (AspectJ woven copies) alike.
        let stripped = try Self.jar(manifest: nil, poms: [("org.example", "stripped", "0.3")])
        #expect(Self.catalog("j/stripped-0.3.jar", stripped) == ["org.example:stripped@0.3 j/stripped-0.3.jar!META-INF/maven/org.example/stripped/pom.properties"])
        let woven = try Self.jar(manifest: "Weave-Classes: true\n", poms: [("g", "other", "1")])
        #expect(Self.catalog("j/woven-2.jar", woven) == ["g:other@1 j/woven-2.jar!META-INF/maven/g/other/pom.properties"])
        #expect(Self.catalog("j/woven-2.jar", try Self.jar(manifest: "Weave-Classes: true\n")) == [])
    }

    @Test func nestedArchivesAreNamedByTheirOwnFileNames() throws {
        let inner = try Self.jar(manifest: "Manifest-Version: 1.0\n")
        let outer = try Self.jar(manifest: "Manifest-Version: 1.0\n", poms: [("org.example", "app", "1.4.2")],
                                 nested: [("BOOT-INF/lib/helper-0.5.jar", inner), ("BOOT-INF/lib/helper-copy-0.5.jar", inner)])
        #expect(Self.catalog("opt/app-1.4.2.jar", outer) == [
            "org.example:app@1.4.2 opt/app-1.4.2.jar!META-INF/maven/org.example/app/pom.properties",
            "helper@0.5 opt/app-1.4.2.jar!BOOT-INF/lib/helper-0.5.jar",
            "helper-copy@0.5 opt/app-1.4.2.jar!BOOT-INF/lib/helper-copy-0.5.jar",
        ])
    }

    /// Syft's `jenkins-plugin` type: a `.hpi`/`.jpi` archive's own package, and any Java package
    /// whose Maven coordinates (its pom's group, else its manifest's, else its name) name a
    /// Jenkins plugin group; the libraries a plugin bundles stay Java archives.
    @Test func jenkinsPluginsAreTypedAsSyftTypesThem() throws {
        func typed(_ path: String, _ bytes: [UInt8]) -> [String] {
            JavaArchive.catalog(bytes, path: path, limits: ScanLimits()).packages.map { "\($0.type.rawValue) \($0.name)@\($0.version)" }
        }
        let mf = "Manifest-Version: 1.0\n"
        let ownJar = try Self.jar(manifest: mf, poms: [("org.jenkins-ci.plugins", "git-client", "4.7.0")])
        let bundled = try Self.jar(manifest: mf, poms: [("org.eclipse.jgit", "org.eclipse.jgit", "6.0.0")])
        let plugin = try Self.jar(manifest: "Group-Id: org.jenkins-ci.plugins\nShort-Name: git-client\nPlugin-Version: 4.7.0\n",
                                  nested: [("WEB-INF/lib/git-client.jar", ownJar), ("WEB-INF/lib/org.eclipse.jgit-6.0.0.jar", bundled)])
        #expect(typed("var/jenkins_home/plugins/git-client.hpi", plugin) == [
            "jenkins-plugin git-client@4.7.0",
            "jenkins-plugin org.jenkins-ci.plugins:git-client@4.7.0",
            "java-archive org.eclipse.jgit:org.eclipse.jgit@6.0.0",
        ])
        // By extension alone, whatever the group.
        #expect(typed("p/credentials-2.6.1.JPI", try Self.jar(manifest: mf)) == ["jenkins-plugin credentials@2.6.1"])
        // A .jar of a plugin group, by its pom or by its manifest's group attributes.
        #expect(typed("l/ionicons-api-56.jar", try Self.jar(manifest: mf, poms: [("io.jenkins.plugins", "ionicons-api", "56")]))
                == ["jenkins-plugin io.jenkins.plugins:ionicons-api@56"])
        #expect(typed("l/tool-1.0.jar", try Self.jar(manifest: "Group-Id: org.jenkins-ci.plugins\n")) == ["jenkins-plugin tool@1.0"])
        #expect(typed("l/tool-1.0.jar", try Self.jar(manifest: "Bundle-SymbolicName: org.jenkins-ci.plugins.tool;singleton:=true\n"))
                == ["jenkins-plugin tool@1.0"])
        #expect(typed("l/core-2.0.jar", try Self.jar(manifest: "Implementation-Vendor-Id: org.jenkins-ci.main\n")) == ["java-archive core@2.0"])
        // A pom without a group whose artifactId is dotted: the artifactId is the group.
        #expect(typed("l/x.jar", try Self.jar(manifest: mf, poms: [("", "io.jenkins.plugins.thing", "1")]))
                == ["java-archive x@UNKNOWN", "jenkins-plugin io.jenkins.plugins.thing@1"])
        // A pom's group decides by Syft's wider list too (a bundled CloudBees plugin), and a pom
        // describing the .hpi itself decides its type over the extension: a plugin of a group
        // outside both lists (org.jenkinsci.plugins) is a Java archive, as Syft has it.
        #expect(typed("l/lib.jar", try Self.jar(manifest: mf, poms: [("com.cloudbees.jenkins.plugins", "analytics", "2")]))
                == ["java-archive lib@UNKNOWN", "jenkins-plugin com.cloudbees.jenkins.plugins:analytics@2"])
        #expect(typed("p/workflow-api.hpi", try Self.jar(manifest: mf, poms: [("org.jenkinsci.plugins", "workflow-api", "1.2")]))
                == ["java-archive org.jenkinsci.plugins:workflow-api@1.2"])
        #expect(typed("p/blue.hpi", try Self.jar(manifest: mf, poms: [("io.jenkins.blueocean", "blue", "1")]))
                == ["java-archive io.jenkins.blueocean:blue@1"])
        #expect(typed("p/x.hpi", try Self.jar(manifest: mf, poms: [("org.example.jenkins.plugins", "x", "1")]))
                == ["jenkins-plugin org.example.jenkins.plugins:x@1"])
        // A pom with an empty group leaves the group to the manifest.
        #expect(typed("l/tool.jar", try Self.jar(manifest: "Group-Id: org.jenkins-ci.plugins\nImplementation-Version: 3\n",
                                                 poms: [("", "tool", "3")])) == ["jenkins-plugin tool@3"])
    }

    @Test func aManifestsGroupIsThePrimaryAttributesFirstInByteOrder() {
        #expect(Self.manifest("Group-Id: org.zzz\nBundle-SymbolicName: com.aaa;singleton:=true\n").groupID == "com.aaa")
        // Values that do not start as a domain does are passed over; a # tail and spaces go.
        #expect(Self.manifest("Implementation-Vendor: Oracle\nMain-Class: io.jenkins.plugins.Main#x \n").groupID == "io.jenkins.plugins.Main")
        #expect(Self.manifest("Implementation-Vendor: Oracle\nMain-Class: io.jenkins.plugins.Main\nGroup-Id: net.x\n").groupID == "net.x")
        // Per-entry sections count too; nothing found is "".
        #expect(Self.manifest("Manifest-Version: 1.0\n\nName: a/\nImplementation-Title: org.example.a\n").groupID == "org.example.a")
        #expect(Self.manifest("Created-By: Maven\n").groupID == "")
    }

    @Test func jenkinsPluginsMatchMavenAdvisories() async throws {
        var t = TarWriter()
        t.file("var/jenkins_home/plugins/script-security.jpi",
               try Self.jar(manifest: "Manifest-Version: 1.0\n", poms: [("org.jenkins-ci.plugins", "script-security", "1172.v35f6a_0b_8207e")]))
        let inventory = ImageInventory(layers: [try await walk(t.finished)])
        #expect(inventory.summary == ["jenkins-plugin:org.jenkins-ci.plugins:script-security@1172.v35f6a_0b_8207e"])
        #expect(inventory.installedPackages().map { "\($0.ecosystem):\($0.name)@\($0.version)" }
                == ["Maven:org.jenkins-ci.plugins:script-security@1172.v35f6a_0b_8207e"])
        #expect(inventory.packages.first?.purl == "pkg:maven/org.jenkins-ci.plugins/script-security@1172.v35f6a_0b_8207e")
    }

    @Test func packagesWithoutAVersionOrAGroupAreListedNotMatched() async throws {
        var t = TarWriter()
        t.file("usr/share/java/aopalliance-1.0.jar", try Self.jar(manifest: "Manifest-Version: 1.0\n"))
        t.file("usr/share/java/unversioned.jar", try Self.jar(manifest: "Manifest-Version: 1.0\n"))
        t.file("usr/share/java/guava.jar", try Self.jar(manifest: "Manifest-Version: 1.0\n", poms: [("com.google.guava", "guava", "31.1-jre")]))
        t.file("srv/app/package.json", #"{"name":"demo-app","private":true}"#)
        t.file("usr/share/nodejs/ms/package.json", #"{"name":"ms","version":"2.1.3"}"#)
        let inventory = ImageInventory(layers: [try await walk(t.finished)])
        #expect(inventory.summary == ["java-archive:aopalliance@1.0", "java-archive:com.google.guava:guava@31.1-jre",
                                      "java-archive:unversioned@UNKNOWN", "npm:demo-app@UNKNOWN", "npm:ms@2.1.3"])
        // Maven advisories name group:artifact, and UNKNOWN compares with nothing.
        #expect(inventory.installedPackages().map { "\($0.ecosystem):\($0.name)@\($0.version)" }.sorted()
                == ["Maven:com.google.guava:guava@31.1-jre", "npm:ms@2.1.3"])
    }

    @Test func everyPackageJSONWithANameIsAPackage() async throws {
        var t = TarWriter()
        t.file("package.json", #"{"name":"root-app","version":"1.0.0"}"#)
        t.file("usr/share/nodejs/@types/node/package.json", #"{"name":"@types/node","version":"18.18.14"}"#)
        t.file("usr/share/nodejs/acorn/dist/package.json", #"{"type":"module"}"#)
        t.file("usr/share/nodejs/empty/package.json", #"{"name":"","version":"1"}"#)
        t.file("usr/share/nodejs/null/package.json", #"{"name":null,"version":"1"}"#)
        t.file("usr/share/nodejs/badversion/package.json", #"{"name":"bv","version":3}"#)
        t.file("usr/share/nodejs/nullversion/package.json", #"{"name":"nv","version":null}"#)
        t.file("usr/share/nodejs/package.json.bak", #"{"name":"not-this","version":"1"}"#)
        let index = try await walk(t.finished)
        #expect(index.summary == ["npm:@types/node@18.18.14", "npm:nv@UNKNOWN", "npm:root-app@1.0.0"])
        #expect(index.files["usr/share/nodejs/badversion/package.json"]?.problems.first?.reason == "name or version is not a string")
        // A package.json that is no package is no problem either.
        for quiet in ["usr/share/nodejs/acorn/dist/package.json", "usr/share/nodejs/empty/package.json", "usr/share/nodejs/null/package.json"] {
            #expect(index.files[quiet]?.problems.isEmpty ?? true, "\(quiet)")
        }
    }
}
