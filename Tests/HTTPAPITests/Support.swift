import AdmissionFeature
import Backends
import ContentTrustFeature
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import OCIModel
import RegistryCore
@testable import HTTPAPI

func tempDataDir() -> String {
    let path = NSTemporaryDirectory() + "berth-http-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func makeApp(dataDir: String = tempDataDir(), limits: RegistryResponder.Limits = .init()) async throws -> some ApplicationProtocol {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let registry = try Registry.embedded(dataDirectory: dataDir, logger: logger)
    // The distribution API on its own, without access control (tested separately).
    return try await BerthServer.makeApplication(registry: registry, access: nil, features: standardFeatures(registry), host: "127.0.0.1",
                                           port: 0, limits: limits, logger: logger)
}

/// The features `berth serve` composes, but webhooks (tested in WebhooksTests and the interop suite).
func standardFeatures(_ registry: Registry) -> [any RegistryFeature] {
    [ContentTrustFeature(registry: registry), AdmissionFeature()]
}

func sha256(_ bytes: [UInt8]) -> String { Digest.compute(bytes).string }

extension HTTPField.Name {
    static let testDigest = HTTPField.Name("Docker-Content-Digest")!
    static let testRange = HTTPField.Name("Range")!
    static let testContentRange = HTTPField.Name("Content-Range")!
    static let testUploadUUID = HTTPField.Name("Docker-Upload-UUID")!
    static let testSubject = HTTPField.Name("OCI-Subject")!
    static let testFilters = HTTPField.Name("OCI-Filters-Applied")!
    static let testLink = HTTPField.Name("Link")!
    static let testAPIVersion = HTTPField.Name("Docker-Distribution-API-Version")!
}

struct ErrorBody: Decodable {
    struct Item: Decodable { let code: String; let message: String }
    let errors: [Item]
}

func errorCode(_ response: TestResponse) -> String? {
    (try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: response.body)))?.errors.first?.code
}

func buf(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// Small client helpers over the test client, speaking the distribution API.
struct V2 {
    let client: any TestClientProtocol

    @discardableResult
    func pushBlob(_ repo: String, _ bytes: [UInt8]) async throws -> String {
        let d = sha256(bytes)
        let r = try await client.execute(uri: "/v2/\(repo)/blobs/uploads/?digest=\(d)", method: .post,
                                         headers: [.contentLength: String(bytes.count)], body: buf(bytes))
        precondition(r.status == .created, "blob push failed: \(r.status)")
        return d
    }

    func startUpload(_ repo: String) async throws -> String {
        let r = try await client.execute(uri: "/v2/\(repo)/blobs/uploads/", method: .post)
        precondition(r.status == .accepted)
        return r.headers[.location]!
    }

    func imageManifest(config: [UInt8], layers: [[UInt8]], subject: (String, Int)? = nil, artifactType: String? = nil,
                       annotations: [String: String]? = nil) -> [UInt8] {
        var m: [String: Any] = [
            "schemaVersion": 2,
            "mediaType": MediaType.ociManifest,
            "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.count],
            "layers": layers.map { ["mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256($0), "size": $0.count] },
        ]
        if let subject { m["subject"] = ["mediaType": MediaType.ociManifest, "digest": subject.0, "size": subject.1] }
        if let artifactType { m["artifactType"] = artifactType }
        if let annotations { m["annotations"] = annotations }
        return Array(try! JSONSerialization.data(withJSONObject: m, options: [.sortedKeys]))
    }

    /// Pushes config + layers + manifest; returns the manifest bytes and digest.
    @discardableResult
    func pushImage(_ repo: String, tag: String, seed: String, subject: (String, Int)? = nil, artifactType: String? = nil,
                   annotations: [String: String]? = nil) async throws -> (bytes: [UInt8], digest: String) {
        let config = Array("{\"seed\":\"\(seed)\"}".utf8)
        let layer = Array("layer-\(seed)".utf8)
        try await pushBlob(repo, config)
        try await pushBlob(repo, layer)
        let manifest = imageManifest(config: config, layers: [layer], subject: subject, artifactType: artifactType,
                                     annotations: annotations)
        // 429 (a tag that kept moving while the push was planned 8 times: ten pushers racing for
        // one tag) asks the client to retry, and a client does; it is not an acknowledged push.
        var r = try await client.execute(uri: "/v2/\(repo)/manifests/\(tag)", method: .put,
                                         headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
        for _ in 0..<10 where r.status == .tooManyRequests {
            r = try await client.execute(uri: "/v2/\(repo)/manifests/\(tag)", method: .put,
                                         headers: [.contentType: MediaType.ociManifest], body: buf(manifest))
        }
        precondition(r.status == .created, "manifest push failed: \(r.status) \(String(buffer: r.body))")
        return (manifest, sha256(manifest))
    }
}
