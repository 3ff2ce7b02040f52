import BlobStorage
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import OCIModel

/// The single place where failures become HTTP responses: the spec's JSON error envelope.
enum ErrorRenderer {
    struct Envelope: Encodable {
        struct Item: Encodable {
            let code: String
            let message: String
            let detail: [String: String]?
        }
        let errors: [Item]
    }

    static func registryError(for error: any Error) -> RegistryError {
        switch error {
        case let e as RegistryError:
            return e
        case let e as BlobStoreError:
            switch e {
            case .uploadUnknown: return RegistryError(.blobUploadUnknown, "upload unknown to registry")
            case .blobUnknown: return RegistryError(.blobUnknown, "blob unknown to registry")
            default: return RegistryError(.blobUploadInvalid, "upload failed")
            }
        case let e as HTTPError:
            switch e.status.code {
            case 413: return RegistryError(.sizeInvalid, "request body too large", status: 413)
            default: return RegistryError(.unsupported, e.body ?? "request failed", status: e.status.code)
            }
        case is NIOTooManyBytesError:
            return RegistryError(.sizeInvalid, "request body too large", status: 413)
        case let e as HTTPParserError where isClientAbort(e):
            return RegistryError(.unsupported, "client closed the connection before the request ended", status: clientClosedRequest)
        case let e as HTTPParserError:
            return RegistryError(.unsupported, "malformed HTTP request: \(e)", status: 400)
        case let e as ChannelError where isClientAbort(e):
            return RegistryError(.unsupported, "client closed the connection before the request ended", status: clientClosedRequest)
        default:
            return RegistryError(.unsupported, "internal error", status: 500)
        }
    }

    /// The status recorded (never sent: nobody is listening) when the client went away mid-request,
    /// as nginx counts it; not a server error.
    static let clientClosedRequest = 499

    /// The connection ended before the request did: the client's doing, not the server's.
    static func isClientAbort(_ error: any Error) -> Bool {
        switch error {
        case let e as HTTPParserError: e == .invalidEOFState
        case let e as ChannelError: e == .eof || e == .ioOnClosedChannel || e == .inputClosed
        default: false
        }
    }

    static func response(_ error: RegistryError, head: Bool) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        headers[.distributionAPIVersion] = "registry/2.0"
        if head {
            headers[.contentLength] = "0"
            return Response(status: .init(code: error.status), headers: headers, body: .init())
        }
        let envelope = Envelope(errors: [.init(code: error.code.rawValue, message: error.message, detail: error.detail)])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let data = (try? encoder.encode(envelope)) ?? Data("{\"errors\":[]}".utf8)
        return Response(status: .init(code: error.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension HTTPField.Name {
    static let distributionAPIVersion = HTTPField.Name("Docker-Distribution-API-Version")!
    static let dockerContentDigest = HTTPField.Name("Docker-Content-Digest")!
    static let dockerUploadUUID = HTTPField.Name("Docker-Upload-UUID")!
    static let ociSubject = HTTPField.Name("OCI-Subject")!
    static let ociFiltersApplied = HTTPField.Name("OCI-Filters-Applied")!
    static let contentRange = HTTPField.Name("Content-Range")!
    static let range = HTTPField.Name("Range")!
    static let link = HTTPField.Name("Link")!
    static let acceptRanges = HTTPField.Name("Accept-Ranges")!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
}
