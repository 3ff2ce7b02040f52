import Foundation

// MARK: imports (issue 17: a server-side copy from another registry)

/// `POST /api/v1/imports`: copy an image from another registry into this one. The credentials are
/// used for this import only: never stored, never logged, never shown by `GET`.
public struct ImportRequest: Codable, Sendable, Equatable {
    /// `REGISTRY[:PORT]/REPOSITORY:TAG` or `REGISTRY[:PORT]/REPOSITORY@DIGEST`.
    public var source: String
    /// `REPOSITORY:TAG` in this registry.
    public var image: String
    public var username: String?
    public var password: String?
    /// Speak http, not https, to the source (a registry on a private network; still subject to
    /// the outbound policy).
    public var plainHTTP: Bool?
    /// An index is copied whole; without it, its linux/amd64 image only.
    public var allPlatforms: Bool?
    /// Copy the referrers (signatures, SBOMs, attestations) of what is copied.
    public var includeReferrers: Bool?
    /// Move the tag when it already points elsewhere.
    public var force: Bool?

    public init(source: String, image: String, username: String? = nil, password: String? = nil, plainHTTP: Bool? = nil,
                allPlatforms: Bool? = nil, includeReferrers: Bool? = nil, force: Bool? = nil) {
        self.source = source
        self.image = image
        self.username = username
        self.password = password
        self.plainHTTP = plainHTTP
        self.allPlatforms = allPlatforms
        self.includeReferrers = includeReferrers
        self.force = force
    }
}

/// An import job and its progress (`POST /api/v1/imports` answers 202 with it; `GET
/// /api/v1/imports/{id}` follows it).
public struct ImportView: Codable, Sendable, Equatable {
    public var id: String
    public var source: String
    public var image: String
    /// `running`, `succeeded` or `failed`.
    public var state: String
    /// The digest the tag points to once the import succeeded.
    public var digest: String?
    public var manifestsCopied: Int
    /// Blobs the manifests name that this import has looked at so far (copied or already present).
    public var blobsSeen: Int
    public var blobsCopied: Int
    /// Blobs already in the target repository, not fetched again.
    public var blobsSkipped: Int
    public var bytesCopied: Int64
    /// The total size of the blobs named so far that are to be copied (those already in the
    /// target repository are not counted).
    public var bytesTotal: Int64
    public var referrersCopied: Int
    /// Times a blob's copy went on from the bytes already received after the source's connection
    /// dropped (a `Range` request answered 206); absent when none did.
    public var blobResumes: Int?
    /// Times a blob's copy started over because the source answered a `Range` request with the
    /// whole blob (or a range that did not match); absent when none did.
    public var blobRestarts: Int?
    /// Why the import failed, with the OCI error code of the failure.
    public var error: String?
    public var errorCode: String?
    public var createdAt: Date
    public var finishedAt: Date?

    public init(id: String, source: String, image: String, state: String, digest: String? = nil, manifestsCopied: Int = 0,
                blobsSeen: Int = 0, blobsCopied: Int = 0, blobsSkipped: Int = 0, bytesCopied: Int64 = 0, bytesTotal: Int64 = 0,
                referrersCopied: Int = 0, error: String? = nil, errorCode: String? = nil, createdAt: Date, finishedAt: Date? = nil) {
        self.id = id
        self.source = source
        self.image = image
        self.state = state
        self.digest = digest
        self.manifestsCopied = manifestsCopied
        self.blobsSeen = blobsSeen
        self.blobsCopied = blobsCopied
        self.blobsSkipped = blobsSkipped
        self.bytesCopied = bytesCopied
        self.bytesTotal = bytesTotal
        self.referrersCopied = referrersCopied
        self.error = error
        self.errorCode = errorCode
        self.createdAt = createdAt
        self.finishedAt = finishedAt
    }
}
