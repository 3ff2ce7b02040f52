import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import OCIModel
import Testing
@testable import HTTPAPI

@Suite struct ManifestTests {
    @Test func pushPullExactBytesByTagAndDigest() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            // unusual whitespace and key order must survive byte for byte
            let config = Array("{}".utf8), layer = Array("L".utf8)
            try await v2.pushBlob("app", config)
            try await v2.pushBlob("app", layer)
            let manifest = Array("""
            {  "schemaVersion" : 2, "mediaType":"application/vnd.oci.image.manifest.v1+json",
               "layers":[{"size":1,"digest":"\(sha256(layer))","mediaType":"application/vnd.oci.image.layer.v1.tar"}],
               "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\(sha256(config))","size":2}   }
            """.utf8)
            let put = try await client.execute(uri: "/v2/app/manifests/v1", method: .put,
                                               headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(put.status == .created)
            #expect(put.headers[.testDigest] == sha256(manifest))
            #expect(put.headers[.location] == "/v2/app/manifests/\(sha256(manifest))")
            for ref in ["v1", sha256(manifest)] {
                let get = try await client.execute(uri: "/v2/app/manifests/\(ref)", method: .get,
                                                   headers: [.accept: MediaType.ociManifest])
                #expect(get.status == .ok)
                #expect(Array(buffer: get.body) == manifest)
                #expect(get.headers[.contentType] == MediaType.ociManifest)
                #expect(get.headers[.testDigest] == sha256(manifest))
                let head = try await client.execute(uri: "/v2/app/manifests/\(ref)", method: .head)
                #expect(head.status == .ok && head.body.readableBytes == 0)
                #expect(head.headers[.contentLength] == String(manifest.count))
            }
            // PUT by digest must match the body
            let wrong = try await client.execute(uri: "/v2/app/manifests/\(sha256([0]))", method: .put,
                                                 headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(wrong.status == .badRequest && errorCode(wrong) == "DIGEST_INVALID")
            let byDigest = try await client.execute(uri: "/v2/app/manifests/\(sha256(manifest))", method: .put,
                                                    headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(byDigest.status == .created)
        }
    }

    @Test func unknownReferencesAreManifestBlobUnknown() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let config = Array("{\"a\":1}".utf8), layer = Array("missing-layer".utf8)
            try await v2.pushBlob("r", config)
            let manifest = v2.imageManifest(config: config, layers: [layer])
            let put = try await client.execute(uri: "/v2/r/manifests/t", method: .put,
                                               headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(put.status == .badRequest && errorCode(put) == "MANIFEST_BLOB_UNKNOWN")
            #expect(try await client.execute(uri: "/v2/r/manifests/t", method: .get).status == .notFound)
            // a blob in another repository does not count
            try await v2.pushBlob("elsewhere", layer)
            let again = try await client.execute(uri: "/v2/r/manifests/t", method: .put,
                                                 headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(errorCode(again) == "MANIFEST_BLOB_UNKNOWN")
            // an index whose child is unknown
            let index = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
             "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(sha256(manifest))","size":\(manifest.count)}]}
            """.utf8)
            let idx = try await client.execute(uri: "/v2/r/manifests/multi", method: .put,
                                               headers: [.contentType: MediaType.ociIndex], body: buf(index))
            #expect(idx.status == .badRequest && errorCode(idx) == "MANIFEST_BLOB_UNKNOWN")
            // a refused push does not make its repository known
            let fresh = try await client.execute(uri: "/v2/fresh/manifests/t", method: .put,
                                                 headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
            #expect(errorCode(fresh) == "MANIFEST_BLOB_UNKNOWN")
            let tags = try await client.execute(uri: "/v2/fresh/tags/list", method: .get)
            #expect(tags.status == .notFound && errorCode(tags) == "NAME_UNKNOWN")
        }
    }

    @Test func indexDockerTypesAndNegotiation() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let a = try await v2.pushImage("multi", tag: "amd64", seed: "a")
            let b = try await v2.pushImage("multi", tag: "arm64", seed: "b")
            let index = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
             {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(a.digest)","size":\(a.bytes.count),"platform":{"architecture":"amd64","os":"linux"}},
             {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(b.digest)","size":\(b.bytes.count),"platform":{"architecture":"arm64","os":"linux"}}]}
            """.utf8)
            let put = try await client.execute(uri: "/v2/multi/manifests/latest", method: .put,
                                               headers: [.contentType: MediaType.ociIndex], body: buf(index))
            #expect(put.status == .created)
            let get = try await client.execute(uri: "/v2/multi/manifests/latest", method: .get,
                                               headers: [.accept: "\(MediaType.ociManifest), \(MediaType.ociIndex)"])
            #expect(get.headers[.contentType] == MediaType.ociIndex && Array(buffer: get.body) == index)
            // a client that only accepts single manifests is told it is not available in that form
            let narrow = try await client.execute(uri: "/v2/multi/manifests/latest", method: .get,
                                                  headers: [.accept: MediaType.dockerManifest])
            #expect(narrow.status == .notFound && errorCode(narrow) == "MANIFEST_UNKNOWN")
            let wildcard = try await client.execute(uri: "/v2/multi/manifests/latest", method: .get, headers: [.accept: "*/*"])
            #expect(wildcard.status == .ok)

            let config = Array("{\"docker\":true}".utf8), layer = Array("dl".utf8)
            try await v2.pushBlob("multi", config)
            try await v2.pushBlob("multi", layer)
            let docker = Array("""
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
             "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"\(sha256(config))","size":\(config.count)},
             "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"\(sha256(layer))","size":2}]}
            """.utf8)
            let dput = try await client.execute(uri: "/v2/multi/manifests/docker", method: .put,
                                                headers: [.contentType: MediaType.dockerManifest], body: buf(docker))
            #expect(dput.status == .created)
            let dget = try await client.execute(uri: "/v2/multi/manifests/docker", method: .get,
                                                headers: [.accept: MediaType.dockerManifest])
            #expect(dget.headers[.contentType] == MediaType.dockerManifest && Array(buffer: dget.body) == docker)
        }
    }

    @Test func invalidManifestsAndLimits() async throws {
        try await makeApp().test(.router) { client in
            for body in ["", "{", "{\"schemaVersion\":2}", "[1,2]"] {
                let r = try await client.execute(uri: "/v2/bad/manifests/t", method: .put,
                                                 headers: [.contentType: MediaType.ociManifest], body: buf(Array(body.utf8)))
                #expect(r.status == .badRequest && errorCode(r) == "MANIFEST_INVALID", "\(body)")
            }
            let huge = Array(repeating: UInt8(ascii: " "), count: ManifestParser.maxSize + 1)
            let big = try await client.execute(uri: "/v2/bad/manifests/t", method: .put,
                                               headers: [.contentType: MediaType.ociManifest], body: buf(huge))
            #expect(big.status == .contentTooLarge && errorCode(big) == "SIZE_INVALID")
            let badTag = try await client.execute(uri: "/v2/bad/manifests/-tag", method: .put,
                                                  headers: [.contentType: MediaType.ociManifest], body: buf(Array("{}".utf8)))
            #expect(badTag.status == .badRequest)
            let unknown = try await client.execute(uri: "/v2/bad/manifests/nothere", method: .get)
            #expect(unknown.status == .notFound && errorCode(unknown) == "MANIFEST_UNKNOWN")
            let unknownDigest = try await client.execute(uri: "/v2/bad/manifests/\(sha256([7]))", method: .head)
            #expect(unknownDigest.status == .notFound && unknownDigest.body.readableBytes == 0)
        }
    }

    @Test func deleteByTagRemovesTagOnlyAndByDigestRemovesManifestAndTags() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let image = try await v2.pushImage("del", tag: "one", seed: "x")
            _ = try await client.execute(uri: "/v2/del/manifests/two", method: .put,
                                         headers: [.contentType: MediaType.ociManifest], body: buf(image.bytes))
            #expect(try await client.execute(uri: "/v2/del/manifests/one", method: .delete).status == .accepted)
            #expect(try await client.execute(uri: "/v2/del/manifests/one", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v2/del/manifests/\(image.digest)", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/v2/del/manifests/two", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/v2/del/manifests/\(image.digest)", method: .delete).status == .accepted)
            #expect(try await client.execute(uri: "/v2/del/manifests/two", method: .get).status == .notFound)
            #expect(try await client.execute(uri: "/v2/del/manifests/\(image.digest)", method: .get).status == .notFound)
            let again = try await client.execute(uri: "/v2/del/manifests/\(image.digest)", method: .delete)
            #expect(again.status == .notFound && errorCode(again) == "MANIFEST_UNKNOWN")
            let tags = try await client.execute(uri: "/v2/del/tags/list", method: .get)
            #expect(try JSONDecoder().decode(ListingTests.TagList.self, from: Data(buffer: tags.body)).tags == [])
        }
    }

    @Test func tagMoveIsSeenImmediately() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let first = try await v2.pushImage("mv", tag: "latest", seed: "1")
            #expect(try await client.execute(uri: "/v2/mv/manifests/latest", method: .get).headers[.testDigest] == first.digest)
            let second = try await v2.pushImage("mv", tag: "latest", seed: "2")
            #expect(try await client.execute(uri: "/v2/mv/manifests/latest", method: .get).headers[.testDigest] == second.digest)
        }
    }
}

@Suite struct ListingTests {
    struct TagList: Decodable { let name: String; let tags: [String] }
    struct Catalog: Decodable { let repositories: [String] }

    @Test func tagsPaginateLexicallyWithLinkHeaders() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let image = try await v2.pushImage("pg", tag: "seed", seed: "s")
            for t in ["b", "a", "d", "c", "e"] {
                _ = try await client.execute(uri: "/v2/pg/manifests/\(t)", method: .put,
                                             headers: [.contentType: MediaType.ociManifest], body: buf(image.bytes))
            }
            let all = try JSONDecoder().decode(TagList.self, from: Data(buffer: try await client.execute(uri: "/v2/pg/tags/list", method: .get).body))
            #expect(all.tags == ["a", "b", "c", "d", "e", "seed"])
            var collected: [String] = []
            var uri: String? = "/v2/pg/tags/list?n=2"
            while let next = uri {
                let r = try await client.execute(uri: next, method: .get)
                collected += try JSONDecoder().decode(TagList.self, from: Data(buffer: r.body)).tags
                uri = r.headers[.testLink].map { String($0.dropFirst().prefix { $0 != ">" }) }
            }
            #expect(collected == all.tags)
            let last = try await client.execute(uri: "/v2/pg/tags/list?n=2&last=c", method: .get)
            #expect(try JSONDecoder().decode(TagList.self, from: Data(buffer: last.body)).tags == ["d", "e"])
            let zero = try await client.execute(uri: "/v2/pg/tags/list?n=0", method: .get)
            #expect(try JSONDecoder().decode(TagList.self, from: Data(buffer: zero.body)).tags == [])
            let unknown = try await client.execute(uri: "/v2/nope/tags/list", method: .get)
            #expect(unknown.status == .notFound && errorCode(unknown) == "NAME_UNKNOWN")
            let badN = try await client.execute(uri: "/v2/pg/tags/list?n=-1", method: .get)
            #expect(badN.status == .badRequest)
        }
    }

    @Test func catalogPaginates() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            for r in ["zeta", "alpha", "mid/inner", "beta"] { try await v2.pushImage(r, tag: "t", seed: r) }
            let first = try await client.execute(uri: "/v2/_catalog?n=2", method: .get)
            #expect(try JSONDecoder().decode(Catalog.self, from: Data(buffer: first.body)).repositories == ["alpha", "beta"])
            #expect(first.headers[.testLink] == "</v2/_catalog?n=2&last=beta>; rel=\"next\"")
            let second = try await client.execute(uri: "/v2/_catalog?n=2&last=beta", method: .get)
            #expect(try JSONDecoder().decode(Catalog.self, from: Data(buffer: second.body)).repositories == ["mid/inner", "zeta"])
            #expect(second.headers[.testLink] == nil)
        }
    }

    @Test func referrersWithFilterAndSubjectHeader() async throws {
        try await makeApp().test(.router) { client in
            let v2 = V2(client: client)
            let subject = try await v2.pushImage("ref", tag: "app", seed: "app")
            let empty = try await client.execute(uri: "/v2/ref/referrers/\(subject.digest)", method: .get)
            #expect(empty.status == .ok && empty.headers[.contentType] == MediaType.ociIndex)
            #expect(String(buffer: empty.body).contains("\"manifests\":[]"))

            let sig = v2.imageManifest(config: Array("{\"seed\":\"sig\"}".utf8), layers: [Array("layer-sig".utf8)],
                                       subject: (subject.digest, subject.bytes.count), artifactType: "application/vnd.example.sig",
                                       annotations: ["org.example.signer": "ci"])
            try await v2.pushBlob("ref", Array("{\"seed\":\"sig\"}".utf8))
            try await v2.pushBlob("ref", Array("layer-sig".utf8))
            let put = try await client.execute(uri: "/v2/ref/manifests/\(sha256(sig))", method: .put,
                                               headers: [.contentType: MediaType.ociManifest], body: buf(sig))
            #expect(put.status == .created && put.headers[.testSubject] == subject.digest)
            let sbom = try await v2.pushImage("ref", tag: "sbom", seed: "sbom", subject: (subject.digest, subject.bytes.count),
                                              artifactType: "application/spdx+json")

            struct Index: Decodable { let mediaType: String; let manifests: [Descriptor] }
            let all = try JSONDecoder().decode(Index.self, from: Data(buffer: try await client.execute(uri: "/v2/ref/referrers/\(subject.digest)", method: .get).body))
            #expect(Set(all.manifests.map(\.digest)) == [sha256(sig), sbom.digest])
            let sigDescriptor = all.manifests.first { $0.digest == sha256(sig) }
            #expect(sigDescriptor?.artifactType == "application/vnd.example.sig")
            #expect(sigDescriptor?.annotations == ["org.example.signer": "ci"])
            #expect(sigDescriptor?.size == Int64(sig.count))

            let filtered = try await client.execute(uri: "/v2/ref/referrers/\(subject.digest)?artifactType=application/spdx%2Bjson", method: .get)
            #expect(filtered.headers[.testFilters] == "artifactType")
            #expect(try JSONDecoder().decode(Index.self, from: Data(buffer: filtered.body)).manifests.map(\.digest) == [sbom.digest])

            let page = try await client.execute(uri: "/v2/ref/referrers/\(subject.digest)?n=1", method: .get)
            #expect(try JSONDecoder().decode(Index.self, from: Data(buffer: page.body)).manifests.count == 1)
            #expect(page.headers[.testLink] != nil)

            let bad = try await client.execute(uri: "/v2/ref/referrers/sha256:nothex", method: .get)
            #expect(bad.status == .badRequest && errorCode(bad) == "DIGEST_INVALID")
        }
    }
}
