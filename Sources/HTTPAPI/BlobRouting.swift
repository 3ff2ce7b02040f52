import Access
import Hummingbird
import OCIModel

/// Where a feature (replication's regional data endpoints, issue 13 item 4) sends blob reads to
/// another region, and judges the signed reads other regions send here. HTTPAPI knows the
/// protocol, never the feature.
///
/// - A `GET /v2/<name>/blobs/<digest>` with credentials is authorized and admitted here as any
///   read; then `redirect` may name another region's data endpoint (an absolute URL that carries
///   its own authorization): the answer is `307` to it. HEAD is always answered here.
/// - A GET whose query `isSigned` is judged by `admitSigned` alone (never by its credentials,
///   which a client may have carried over from the region that signed it): it throws the 401/403
///   to answer. Then this region's quarantine and read lock apply, and `fetchMissing` brings a
///   blob this region lacks: streamed to the client while it arrives, or stored first (nil), the
///   blob then served as stored.
public protocol BlobRouting: Sendable {
    /// Whether the request is a signed data-endpoint read (its query names a signature).
    func isSigned(_ request: Request) -> Bool
    /// Verifies a signed read of `digest` in `repository` from `client` (the address this region
    /// sees, after its trusted proxies); throws `RegistryError` 401/403 when the signature does not
    /// hold for this method, repository, digest, time and, when bound, client.
    func admitSigned(_ request: Request, repository: RepositoryName, digest: Digest, client: IPAddress?) async throws
    /// After `admitSigned` and this region's checks: when the blob is missing here, fetches it from
    /// the region that signed. With `streaming` (a GET of the whole blob) the read may be answered
    /// while the bytes arrive (a `StreamedBlob`); nil: the blob is stored (or was never found) and
    /// is served as stored.
    func fetchMissing(_ request: Request, repository: RepositoryName, digest: Digest, streaming: Bool) async throws -> StreamedBlob?
    /// After authorization and pull admission of a blob GET: the URL to send the client to, nil to
    /// serve it here.
    func redirect(_ request: Request, repository: RepositoryName, digest: Digest, client: IPAddress?) async throws -> String?
    /// This region's own data endpoint (`https://west.data.example`): upload sessions' `Location`
    /// names it, so a push stays on the region that holds the session. nil: relative locations.
    var uploadLocationBase: String? { get }
}
