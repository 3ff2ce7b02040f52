import Foundation
import NIOCore
import Testing
@testable import Scanning

/// Layers written here, in the formats real images use, read back by the walker.
enum SampleLayer {
    static let osRelease = """
        PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
        NAME="Debian GNU/Linux"
        VERSION_ID="12"
        VERSION_CODENAME=bookworm
        ID=debian
        """

    static let dpkgStatus = """
        Package: libc6
        Status: install ok installed
        Priority: optional
        Architecture: amd64
        Source: glibc
        Version: 2.36-9+deb12u4
        Description: GNU C Library: Shared libraries
         Contains the standard libraries that are used by nearly all programs on
         the system.

        Package: openssl
        Status: install ok installed
        Architecture: amd64
        Version: 3.0.11-1~deb12u2
        Description: Secure Sockets Layer toolkit

        Package: oldpkg
        Status: deinstall ok config-files
        Architecture: amd64
        Version: 1.0-1

        Package: gone
        Status: purge ok not-installed
        Version: 2.0-1

        Package: halfway
        Status: install ok unpacked
        Architecture: amd64
        Version: 0.9-1

        Package: libfoo1
        Status: install ok installed
        Architecture: amd64
        Source: foo (1.2-3)
        Version: 1.2-3+b1

        """

    static let metadata = """
        Metadata-Version: 2.1
        Name: Requests_OAuthlib
        Version: 1.3.1
        Summary: OAuthlib authentication support for Requests.

        Long description: Name: not-this
        """

    static let goModInfo = "path\texample.com/cmd/tool\nmod\texample.com/tool\tv1.4.0\th1:abc=\ndep\tgolang.org/x/text\tv0.3.7\th1:def=\ndep\tgithub.com/old/dep\tv1.0.0\th1:x=\n=>\tgithub.com/new/dep\tv1.1.0\th1:y=\nbuild\t-compiler=gc\n"

    /// One layer with a file for every cataloger.
    static func everything() throws -> [UInt8] {
        var t = TarWriter()
        t.directory("etc/")
        t.symlink("etc/os-release", to: "../usr/lib/os-release")
        t.file("./usr/lib/os-release", osRelease)
        t.file("var/lib/dpkg/status", dpkgStatus)
        t.file("usr/lib/python3/dist-packages/requests_oauthlib-1.3.1.dist-info/METADATA", metadata)
        t.file("usr/lib/node_modules/npm/node_modules/@npmcli/arborist/package.json", #"{"name":"@npmcli/arborist","version":"7.2.1"}"#)
        t.file("usr/lib/node_modules/npm/node_modules/semver/package.json", #"{"name":"semver","version":"7.5.4"}"#)
        // A package.json anywhere is a package when it has a name (Syft reads them so); one that
        // only marks a directory's module kind is not.
        t.file("usr/lib/node_modules/npm/node_modules/semver/lib/package.json", #"{"name":"inner","version":"0.0.1"}"#)
        t.file("usr/lib/node_modules/npm/node_modules/semver/esm/package.json", #"{"type":"module"}"#)
        let inner = try ZipWriter.jar(group: "org.yaml", artifact: "snakeyaml", version: "1.33")
        t.file("opt/app/app.war", try ZipWriter.jar(group: "com.example", artifact: "app", version: "2.0.0", nested: [("WEB-INF/lib/snakeyaml-1.33.jar", inner)]))
        t.file("usr/local/bin/tool", GoBinary.elf(modInfo: goModInfo))
        t.file("usr/bin/not-go", [0x7F, 0x45, 0x4C, 0x46] + [UInt8](repeating: 1, count: 5000))
        t.file("usr/share/doc/readme.txt", String(repeating: "text ", count: 3000))
        return t.finished
    }

    static let expected = [
        "deb:halfway@0.9-1", "deb:libc6@2.36-9+deb12u4", "deb:libfoo1@1.2-3+b1", "deb:openssl@3.0.11-1~deb12u2",
        "go-module:example.com/tool@v1.4.0", "go-module:github.com/new/dep@v1.1.0", "go-module:golang.org/x/text@v0.3.7",
        "go-module:stdlib@go1.21.5",
        "java-archive:com.example:app@2.0.0", "java-archive:org.yaml:snakeyaml@1.33",
        "npm:@npmcli/arborist@7.2.1", "npm:inner@0.0.1", "npm:semver@7.5.4",
        "python:requests-oauthlib@1.3.1",
    ]
}

@Suite struct LayerWalkerTests {
    @Test func plainGzipAndZstdLayersGiveTheSameIndex() async throws {
        let tar = try SampleLayer.everything()
        for (bytes, compression) in [(tar, LayerCompression.none), (try Compress.gzip(tar), .gzip), (Compress.zstdRaw(tar), .zstd)] {
            for chunk in [7, 512, 65_536] {
                let index = try await walk(bytes, chunk: chunk)
                #expect(index.compression == compression)
                #expect(index.complete, "\(index.problemText)")
                #expect(index.problems.isEmpty, "\(index.problemText)")
                #expect(index.summary == SampleLayer.expected, "\(compression) in chunks of \(chunk)")
            }
        }
    }

    @Test func packagesCarryTheirSourceLocationsAndPurls() async throws {
        let inventory = ImageInventory(layers: [try await walk(try SampleLayer.everything())])
        #expect(inventory.complete, "\(inventory.problemText)")
        #expect(inventory.os == OSRelease(id: "debian", versionID: "12", versionCodename: "bookworm", prettyName: "Debian GNU/Linux 12 (bookworm)"))
        func find(_ name: String) throws -> InventoryPackage { try #require(inventory.packages.first { $0.name == name }) }
        let libc = try find("libc6")
        #expect(libc.sourceName == "glibc" && libc.sourceVersion == nil)
        #expect(libc.locations == ["var/lib/dpkg/status"])
        #expect(libc.purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc")
        let foo = try find("libfoo1")
        #expect(foo.sourceName == "foo" && foo.sourceVersion == "1.2-3")
        #expect(try find("requests-oauthlib").purl == "pkg:pypi/requests-oauthlib@1.3.1")
        #expect(try find("@npmcli/arborist").purl == "pkg:npm/%40npmcli/arborist@7.2.1")
        let yaml = try find("org.yaml:snakeyaml")
        #expect(yaml.purl == "pkg:maven/org.yaml/snakeyaml@1.33")
        #expect(yaml.locations == ["opt/app/app.war!WEB-INF/lib/snakeyaml-1.33.jar!META-INF/maven/org.yaml/snakeyaml/pom.properties"])
        #expect(try find("golang.org/x/text").purl == "pkg:golang/golang.org/x/text@v0.3.7")
        #expect(try find("stdlib").locations == ["usr/local/bin/tool"])
    }

    @Test func theMediaTypeAndTheMagicBytesAreBothConsulted() async throws {
        let tar = try SampleLayer.everything()
        let gz = try Compress.gzip(tar)
        let agreed = try await walk(gz, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip")
        #expect(agreed.problems.isEmpty)
        // A layer labelled gzip that is plain tar is read as what it is, and the mismatch recorded.
        let mislabelled = try await walk(tar, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip")
        #expect(mislabelled.compression == LayerCompression.none)
        #expect(mislabelled.summary == SampleLayer.expected)
        #expect(mislabelled.problemText.contains("media type says gzip"))
        #expect(LayerCompression(mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip") == .gzip)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar+zstd") == .zstd)
        #expect(LayerCompression(mediaType: "application/vnd.oci.image.layer.v1.tar") == LayerCompression.none)
    }

    @Test func concatenatedGzipMembersAreOneStream() async throws {
        let tar = try SampleLayer.everything()
        let half = tar.count / 2
        let bytes = try Compress.gzip(Array(tar[..<half])) + Compress.gzip(Array(tar[half...]))
        let index = try await walk(bytes, chunk: 1000)
        #expect(index.complete, "\(index.problemText)")
        #expect(index.summary == SampleLayer.expected)
    }

    @Test func gnuLongNamesAndPaxHeadersNameTheEntries() async throws {
        var t = TarWriter()
        let deep = "usr/lib/node_modules/" + String(repeating: "a", count: 120) + "/node_modules/left-pad/package.json"
        t.longNameFile(deep, #"{"name":"left-pad","version":"1.3.0"}"#)
        // PAX path and size override the header (whose size field says 0 here).
        let metadata = Array("Name: six\nVersion: 1.16.0\n".utf8)
        t.raw(TarWriter.header(name: "PaxHeader", size: TarWriter.pax(["path": "usr/lib/python3/site-packages/six-1.16.0.dist-info/METADATA", "size": "\(metadata.count)"]).count, type: "x"))
        t.data(TarWriter.pax(["path": "usr/lib/python3/site-packages/six-1.16.0.dist-info/METADATA", "size": "\(metadata.count)"]))
        t.raw(TarWriter.header(name: "short", size: 0))
        t.data(metadata)
        // A global PAX header is read past.
        t.raw(TarWriter.header(name: "GlobalHead", size: TarWriter.pax(["comment": "x"]).count, type: "g"))
        t.data(TarWriter.pax(["comment": "x"]))
        // ustar prefix + name.
        t.raw(TarWriter.header(name: "installed", size: 27, prefix: "lib/apk/db"))
        t.data(Array("P:musl\nV:1.2.4-r2\no:musl\n\n\n".utf8))
        let index = try await walk(t.finished, chunk: 100)
        #expect(index.complete, "\(index.problemText)")
        #expect(index.summary == ["apk:musl@1.2.4-r2", "npm:left-pad@1.3.0", "python:six@1.16.0"])
        #expect(index.files[deep] != nil)
    }

    @Test func pathsAreNormalisedAndDotDotEntriesRefused() async throws {
        var t = TarWriter()
        t.file("/var/lib/dpkg/status", "Package: a\nStatus: install ok installed\nVersion: 1\n")
        t.file(".//lib/./apk/db/installed", "P:b\nV:2\n")
        t.file("../../etc/os-release", "ID=evil\n")
        t.file("usr/../../lib/apk/db/installed", "P:hidden\nV:1\n")
        let index = try await walk(t.finished)
        #expect(index.summary == ["apk:b@2", "deb:a@1"])
        #expect(index.files.keys.sorted() == ["lib/apk/db/installed", "var/lib/dpkg/status"])
        #expect(!index.complete)
        #expect(index.problems.count == 2)
        #expect(index.problemText.contains("'..'"))
    }

    @Test func layersMergeWithReplacementsWhiteoutsAndOpaqueDirectories() async throws {
        var base = TarWriter()
        base.file("etc/os-release", "ID=alpine\nVERSION_ID=3.18.4\n")
        base.file("lib/apk/db/installed", "P:musl\nV:1.2.4-r1\no:musl\n\nP:zlib\nV:1.2.13-r1\n")
        base.file("usr/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA", "Name: six\nVersion: 1.16.0\n")
        base.file("usr/lib/python3.11/site-packages/idna-3.4.dist-info/METADATA", "Name: idna\nVersion: 3.4\n")
        base.file("app/node_modules/lodash/package.json", #"{"name":"lodash","version":"4.17.20"}"#)
        base.file("srv/tool", GoBinary.elf(modInfo: "mod\texample.com/t\tv1.0.0\t\n"))
        base.file("srv/old/legacy.jar", try ZipWriter.jar(group: "g", artifact: "legacy", version: "1"))
        var upper = TarWriter()
        // apk upgraded zlib: the database is replaced.
        upper.file("lib/apk/db/installed", "P:musl\nV:1.2.4-r2\n\nP:zlib\nV:1.3-r0\n")
        // pip uninstalled six: a whiteout of its dist-info directory.
        upper.file("usr/lib/python3.11/site-packages/.wh.six-1.16.0.dist-info", "")
        // node_modules rebuilt from scratch: an opaque directory.
        upper.directory("app/node_modules/")
        upper.file("app/node_modules/.wh..wh..opq", "")
        upper.file("app/node_modules/left-pad/package.json", #"{"name":"left-pad","version":"1.3.0"}"#)
        // A Go binary replaced by a shell script, a directory replaced by a file.
        upper.file("srv/tool", "#!/bin/sh\necho hi\n")
        upper.file("srv/old", "now a file")
        let layers = [try await walk(base.finished), try await walk(upper.finished)]
        #expect(layers.allSatisfy { $0.complete })
        let inventory = ImageInventory(layers: layers)
        #expect(inventory.complete, "\(inventory.problemText)")
        #expect(inventory.os?.id == "alpine")
        #expect(inventory.summary == ["apk:musl@1.2.4-r2", "apk:zlib@1.3-r0", "npm:left-pad@1.3.0", "python:idna@3.4"])
        // The lower layer alone still has what it had; order matters.
        #expect(ImageInventory(layers: [layers[1], layers[0]]).summary.contains("python:six@1.16.0"))
        // A whiteout of a whole tree and of the file itself.
        var wipe = TarWriter()
        wipe.file(".wh.lib", "")
        wipe.file("usr/lib/python3.11/site-packages/idna-3.4.dist-info/.wh.METADATA", "")
        let wiped = ImageInventory(layers: layers + [try await walk(wipe.finished)])
        #expect(wiped.summary == ["npm:left-pad@1.3.0"])
    }

    @Test func aHardLinkKeepsWhatItsFileHeld() async throws {
        var t = TarWriter()
        t.file("usr/bin/tool", GoBinary.elf(modInfo: "mod\texample.com/tool\tv1.2.0\t\n"))
        t.hardLink("usr/bin/tool-alias", to: "/usr/bin/tool")
        t.file("opt/a.jar", try ZipWriter.jar(group: "g", artifact: "a", version: "1"))
        t.hardLink("opt/b.jar", to: "opt/a.jar")
        // A hard link to a file of another interest (or of none) holds nothing of its own.
        t.hardLink("var/lib/dpkg/status", to: "opt/a.jar")
        t.hardLink("usr/bin/loop", to: "usr/bin/loop")
        var upper = TarWriter()
        upper.file("usr/bin/.wh.tool", "")
        upper.file("opt/.wh.a.jar", "")
        let layers = [try await walk(t.finished), try await walk(upper.finished)]
        #expect(layers[0].files["var/lib/dpkg/status"] == nil && layers[0].files["usr/bin/loop"] == nil)
        let inventory = ImageInventory(layers: layers)
        #expect(inventory.summary == ["go-module:example.com/tool@v1.2.0", "go-module:stdlib@go1.21.5", "java-archive:g:a@1"])
        #expect(Set(inventory.packages.flatMap(\.locations)) == ["usr/bin/tool-alias", "opt/b.jar!META-INF/maven/g/a/pom.properties"])
    }

    @Test func goBuildInformationIsFoundAcrossChunkBoundaries() async throws {
        // The header split at every offset of a 16-byte window around it, by chunk sizes.
        let modInfo = "mod\texample.com/m\tv0.0.0-20230101000000-abcdef123456\t\ndep\texample.com/local\tv1.0.0\t\n=>\t../local\t\t\n"
        var t = TarWriter()
        t.file("bin/m", GoBinary.elf(modInfo: modInfo, padding: 8192))
        let bytes = t.finished
        for chunk in [1, 3, 13, 14, 15, 16, 17, 500, 4096] {
            let index = try await walk(bytes, chunk: chunk)
            #expect(index.summary == ["go-module:../local@(devel)", "go-module:example.com/m@v0.0.0-20230101000000-abcdef123456",
                                      "go-module:stdlib@go1.21.5"], "chunks of \(chunk)")
        }
        // A module built from a local directory has no version to match: it is not offered to the matcher.
        let inventory = ImageInventory(layers: [try await walk(bytes)])
        #expect(inventory.installedPackages().map(\.name).sorted() == ["example.com/m", "stdlib"])
    }

    @Test func osReleaseFollowsSymlinksAndReportsLoops() async throws {
        var t = TarWriter()
        t.symlink("etc/os-release", to: "../usr/lib/os-release")
        t.file("usr/lib/os-release", "ID=\"debian\"\nVERSION_ID='11'\n")
        let followed = ImageInventory(layers: [try await walk(t.finished)])
        #expect(followed.os?.id == "debian" && followed.os?.versionID == "11")
        // Absolute target, and a loop between the two names.
        var loop = TarWriter()
        loop.symlink("etc/os-release", to: "/usr/lib/os-release")
        loop.symlink("usr/lib/os-release", to: "../../../etc/./os-release")
        let looped = ImageInventory(layers: [try await walk(loop.finished)])
        #expect(looped.os == nil)
        #expect(!looped.complete)
        #expect(looped.problemText.contains("symbolic links"))
    }

    @Test func anIndexIsStoredAsJSONAndReadBackUnchanged() async throws {
        let index = try await walk(try SampleLayer.everything())
        let data = try JSONEncoder().encode(index)
        #expect(try JSONDecoder().decode(LayerIndex.self, from: data) == index)
        #expect(index.format == LayerIndex.currentFormat)
        #expect(index.paths.contains("usr/share/doc/readme.txt"))
        #expect(index.files["usr/share/doc/readme.txt"] == nil)
    }
}
