import Foundation
import Testing
@testable import OCIModel

let d1 = "sha256:" + String(repeating: "1", count: 64)
let d2 = "sha256:" + String(repeating: "2", count: 64)
let d3 = "sha256:" + String(repeating: "3", count: 64)

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct ManifestParserTests {
    let image = """
    {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
     "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(d1)","size":10},
     "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\(d2)","size":20}],
     "annotations":{"org.opencontainers.image.title":"x"}}
    """

    @Test func parsesImageManifest() throws {
        let m = try ManifestParser.parse(bytes(image), contentType: MediaType.ociManifest)
        #expect(m.kind == .image)
        #expect(m.blobs.map(\.string) == [d1, d2])
        #expect(m.children.isEmpty)
        #expect(m.subject == nil)
        // artifactType falls back to the config media type, as the referrers API wants
        #expect(m.artifactType == "application/vnd.oci.image.config.v1+json")
        #expect(m.annotations == ["org.opencontainers.image.title": "x"])
    }

    @Test func contentTypeParametersAreIgnored() throws {
        let m = try ManifestParser.parse(bytes(image), contentType: "application/vnd.oci.image.manifest.v1+json; charset=utf-8")
        #expect(m.mediaType == MediaType.ociManifest)
    }

    @Test func mediaTypeMustAgreeWithContentType() {
        #expect(throws: RegistryError.self) {
            try ManifestParser.parse(bytes(image), contentType: MediaType.dockerManifest)
        }
    }

    @Test func parsesIndexWithSubjectAndArtifactType() throws {
        let index = """
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","artifactType":"application/x-sbom",
         "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(d1)","size":5,
                       "platform":{"architecture":"amd64","os":"linux"}}],
         "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(d3)","size":7}}
        """
        let m = try ManifestParser.parse(bytes(index), contentType: nil)
        #expect(m.kind == .index)
        #expect(m.children.map(\.string) == [d1])
        #expect(m.subject?.string == d3)
        #expect(m.artifactType == "application/x-sbom")
    }

    /// artifactType is stored and listed by the referrers API as pushed: a string that is not an
    /// RFC 6838 `type/subtype` (empty, no subtype, parameters, spaces, kilobytes long) is refused.
    @Test func artifactTypeMustBeAMediaType() throws {
        func artifact(_ artifactType: String) -> [UInt8] {
            let at = String(data: try! JSONEncoder().encode(artifactType), encoding: .utf8)!
            return bytes("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":\(at),
             "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"\(d1)","size":2},
             "layers":[{"mediaType":"application/vnd.wasm.content.layer.v1+wasm","digest":"\(d2)","size":20}]}
            """)
        }
        for good in ["application/vnd.wasm.config.v0+json", "application/vnd.cncf.helm.config.v1+json",
                     "application/vnd.cncf.notary.signature", "application/spdx+json", "text/x-a!#$&^_.-b"] {
            #expect(try ManifestParser.parse(artifact(good), contentType: nil).artifactType == good)
        }
        for bad in ["", "application", "application/", "/json", "application/json; charset=utf-8", "not a media type",
                    "application/vnd.a/b", "application/\u{e9}t\u{e9}", "-a/b", "a/" + String(repeating: "x", count: 128)] {
            #expect(throws: RegistryError.self, "\(bad)") { try ManifestParser.parse(artifact(bad), contentType: nil) }
        }
        let index = bytes("""
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","artifactType":"",
         "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(d1)","size":5}]}
        """)
        #expect(throws: RegistryError.self) { try ManifestParser.parse(index, contentType: nil) }
    }

    @Test func dockerSchema2AndList() throws {
        let docker = """
        {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
         "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"\(d1)","size":1},
         "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"\(d2)","size":2},
                   {"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"\(d3)","size":3,
                    "urls":["https://example.invalid/layer"]}]}
        """
        let m = try ManifestParser.parse(bytes(docker), contentType: MediaType.dockerManifest)
        // foreign layers with URLs are not required to be in the registry
        #expect(m.blobs.map(\.string) == [d1, d2])
        let list = """
        {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
         "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"\(d1)","size":1,
                       "platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}
        """
        #expect(try ManifestParser.parse(bytes(list), contentType: MediaType.dockerManifestList).kind == .index)
    }

    @Test(arguments: [
        "",                                   // empty
        "not json",
        "{",                                  // truncated
        "[]",                                 // wrong top-level type
        "{\"schemaVersion\":2}",              // no media type, no shape
        "{\"schemaVersion\":1,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"sha256:nothex\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":-1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"\",\"digest\":\"\(d1)\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":1}}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":{}}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[],\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":1}}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v1+prettyjws\",\"fsLayers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"application/x-unknown\",\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":1e400},\"layers\":[]}",
        "{\"schemaVersion\":\"2\",\"config\":{\"mediaType\":\"a/b\",\"digest\":\"\(d1)\",\"size\":1},\"layers\":[]}",
        String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000),   // deep nesting
    ])
    func rejectsInvalidManifests(_ raw: String) {
        #expect(throws: RegistryError.self) { try ManifestParser.parse(bytes(raw), contentType: nil) }
    }

    @Test func invalidBytesAreManifestInvalid() {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let junk = (0..<Int.random(in: 0..<512, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            do {
                _ = try ManifestParser.parse(junk, contentType: MediaType.ociManifest)
                Issue.record("random bytes parsed as a manifest")
            } catch {
                #expect(error.code == .manifestInvalid)
            }
        }
    }

    @Test func normalizesContentType() {
        #expect(ManifestParser.normalizeContentType(" Application/Vnd.OCI.Image.Manifest.v1+json ; charset=utf-8") == MediaType.ociManifest)
    }
}
