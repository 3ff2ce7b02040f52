import Testing
import OCIModel
@testable import HTTPAPI

@Suite struct RouteParsingTests {
    @Test func routes() {
        #expect(V2Route.parse("/v2/") == .base)
        #expect(V2Route.parse("/v2") == .base)
        #expect(V2Route.parse("/v2/_catalog") == .catalog)
        #expect(V2Route.parse("/v2/a/b/tags/list") == .tags(name: "a/b"))
        #expect(V2Route.parse("/v2/a/manifests/latest") == .manifest(name: "a", reference: "latest"))
        #expect(V2Route.parse("/v2/a/b/c/blobs/sha256:x") == .blob(name: "a/b/c", digest: "sha256:x"))
        #expect(V2Route.parse("/v2/a/blobs/uploads/") == .uploads(name: "a"))
        #expect(V2Route.parse("/v2/a/blobs/uploads") == .uploads(name: "a"))
        #expect(V2Route.parse("/v2/a/blobs/uploads/abc") == .upload(name: "a", id: "abc"))
        #expect(V2Route.parse("/v2/a/referrers/sha256:x") == .referrers(name: "a", digest: "sha256:x"))
        // names may contain the API's own words as components
        #expect(V2Route.parse("/v2/manifests/blobs/manifests/t") == .manifest(name: "manifests/blobs", reference: "t"))
        #expect(V2Route.parse("/v2/tags/list/tags/list") == .tags(name: "tags/list"))
    }

    @Test(arguments: ["/", "/v1/", "/v2x", "/v2/a", "/v2/a/unknown/x", "/v20/a/manifests/t", ""])
    func nonRoutes(_ path: String) {
        #expect(V2Route.parse(path[...]) == nil)
    }

    @Test func byteRanges() throws {
        #expect(try ByteRange.parse(nil, size: 10) == nil)
        #expect(try ByteRange.parse("bytes=0-4", size: 10) == 0..<5)
        #expect(try ByteRange.parse("bytes=5-", size: 10) == 5..<10)
        #expect(try ByteRange.parse("bytes=-3", size: 10) == 7..<10)
        #expect(try ByteRange.parse("bytes=-30", size: 10) == 0..<10)
        #expect(try ByteRange.parse("bytes=8-100", size: 10) == 8..<10)
        // ignorable: not bytes, multiple ranges, malformed
        for ignorable in ["items=0-1", "bytes=0-1,3-4", "bytes=a-b", "bytes=5-2", "bytes=", "bytes=-", "bytes=99999999999999999999-"] {
            #expect(try ByteRange.parse(ignorable, size: 10) == nil, "\(ignorable)")
        }
        #expect(throws: RegistryError.self) { try ByteRange.parse("bytes=10-", size: 10) }
        #expect(throws: RegistryError.self) { try ByteRange.parse("bytes=-0", size: 10) }
        #expect(throws: RegistryError.self) { try ByteRange.parse("bytes=0-", size: 0) }
    }

    @Test func chunkRanges() throws {
        #expect(try ChunkRange.parse(nil) == nil)
        #expect(try ChunkRange.parse("0-99").map { [$0.start, $0.end] } == [0, 99])
        #expect(try ChunkRange.parse("bytes 100-199/1000").map { [$0.start, $0.end] } == [100, 199])
        for bad in ["-1-5", "5-1", "a-b", "1", "1-2-3", "99999999999999999999-1"] {
            #expect(throws: RegistryError.self, "\(bad)") { try ChunkRange.parse(bad) }
        }
    }
}
