/// The error codes of the OCI distribution-spec, each with its default HTTP status.
public enum OCIErrorCode: String, Sendable, CaseIterable {
    case blobUnknown = "BLOB_UNKNOWN"
    case blobUploadInvalid = "BLOB_UPLOAD_INVALID"
    case blobUploadUnknown = "BLOB_UPLOAD_UNKNOWN"
    case digestInvalid = "DIGEST_INVALID"
    case manifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
    case manifestInvalid = "MANIFEST_INVALID"
    case manifestUnknown = "MANIFEST_UNKNOWN"
    case nameInvalid = "NAME_INVALID"
    case nameUnknown = "NAME_UNKNOWN"
    case sizeInvalid = "SIZE_INVALID"
    case unauthorized = "UNAUTHORIZED"
    case denied = "DENIED"
    case unsupported = "UNSUPPORTED"
    case tooManyRequests = "TOOMANYREQUESTS"
    /// Not in the spec's table, but used by every registry for an unsatisfiable range / bad chunk order.
    case rangeInvalid = "RANGE_INVALID"

    public var defaultStatus: Int {
        switch self {
        case .blobUnknown, .blobUploadUnknown, .manifestUnknown, .nameUnknown: 404
        case .blobUploadInvalid, .digestInvalid, .manifestBlobUnknown, .manifestInvalid,
             .nameInvalid, .sizeInvalid: 400
        case .unauthorized: 401
        case .denied: 403
        case .unsupported: 415
        case .tooManyRequests: 429
        case .rangeInvalid: 416
        }
    }
}

/// A failure that maps to one OCI error envelope. Domain code throws these; the HTTP layer
/// renders them in one place.
public struct RegistryError: Error, Sendable, CustomStringConvertible {
    public let code: OCIErrorCode
    public let message: String
    public let status: Int
    /// Structured detail, e.g. `["digest": …]` for an unknown blob.
    public let detail: [String: String]?

    public init(_ code: OCIErrorCode, _ message: String, status: Int? = nil, detail: [String: String]? = nil) {
        self.code = code
        self.message = message
        self.status = status ?? code.defaultStatus
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
