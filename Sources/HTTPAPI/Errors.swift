import Access
import BerthAPIContract
import BlobStorage
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import OCIModel
import RegistryCore

/// The single place where failures become HTTP responses, for every route (the hand-routed
/// `/v2/` tree and the router's): the spec's JSON error envelope, or the management API's
/// (`{"error": {"code", "message"}}`) for the management API's own errors.
enum ErrorRenderer {
    /// The one error mapping. `AccessDenied` is the OCI envelope plus its headers (a Bearer
    /// challenge, Retry-After), and so is Access's `AccessRefusal` (`gate` words its challenge);
    /// management and domain errors (`ManagementError`, `AccessError`, `LifecycleError`, a
    /// feature's `ManagementErrorConvertible`) the management envelope; a path no route serves is
    /// 404; everything else goes through `registryError(for:)`. Server errors are logged, a client
    /// that went away is noted at debug level.
    static func response(for error: any Error, request: Request, log: Logger, gate: AuthGate?) -> Response {
        let head = request.method == .head
        switch error {
        case let denied as AccessDenied:
            var response = response(denied.error, head: head)
            response.headers.append(contentsOf: denied.headers)
            return response
        case let refusal as AccessRefusal:
            let denied = gate?.denied(refusal, request) ?? AccessDenied(error: RegistryError(refusal.code, refusal.reason))
            return response(for: denied, request: request, log: log, gate: gate)
        case let e as ManagementError:
            return management(e)
        case let e as any ManagementErrorConvertible:
            return management(e.managementError)
        case let e as AccessError where RegistryResponder.RoutedPath.isToken(request.uri.path):
            // The token service speaks the Docker token-auth protocol: its clients read `errors[]`.
            return response(for: tokenError(e, request: request, gate: gate), request: request, log: log, gate: gate)
        case let e as AccessError:
            return management(RegistryResponder.managementError(e))
        case let e as LifecycleError:
            let (status, code): (HTTPResponse.Status, String) = switch e {
            case .invalid: (.badRequest, "INVALID")
            case .notFound: (.notFound, "NOT_FOUND")
            case .conflict: (.conflict, "CONFLICT")
            }
            return management(ManagementError(status: status, code: code, message: e.description))
        case let e as HTTPError where e.status == .notFound && e.body == nil:
            // the router found no route (or none for the method)
            if RegistryResponder.RoutedPath.isManagement(request.uri.path) {
                return management(ManagementError(status: .notFound, code: "NOT_FOUND", message: "no such management endpoint"))
            }
            return response(RegistryError(.unsupported, "not found", status: 404), head: head)
        default:
            let registryError = registryError(for: error)
            if registryError.status >= 500 {
                log.error("request failed", metadata: ["error": "\(String(reflecting: error))"])
            } else if registryError.status == clientClosedRequest {
                log.debug("client aborted the request", metadata: ["error": "\(error)"])
            }
            var response = response(registryError, head: head)
            if error is HTTPParserError {
                // The rest of the byte stream cannot be framed: answer and close.
                response.headers[.connection] = "close"
            }
            return response
        }
    }

    /// 405 for a path a route serves but not with the request's method, with the methods it takes:
    /// the management envelope under `/api/v1/`, the spec's elsewhere.
    static func methodNotAllowed(request: Request, allow: String) -> Response {
        var response = if RegistryResponder.RoutedPath.isManagement(request.uri.path) {
            management(ManagementError(status: .methodNotAllowed, code: "METHOD_NOT_ALLOWED",
                                       message: "\(request.method.rawValue) is not allowed here; allowed: \(allow)"))
        } else {
            response(RegistryError(.unsupported, "method not allowed", status: 405), head: request.method == .head)
        }
        response.headers[.allow] = allow
        return response
    }

    /// An `AccessError` of the token endpoints in the distribution envelope, with the headers its
    /// client needs (a challenge for failed credentials, Retry-After when rate limited).
    static func tokenError(_ e: AccessError, request: Request, gate: AuthGate?) -> AccessDenied {
        switch e {
        case .invalidCredentials:
            return gate?.challenge(request, scope: nil, message: "authentication failed", insufficientScope: false)
                ?? AccessDenied(error: RegistryError(.unauthorized, "authentication failed"))
        case .rateLimited(let wait):
            var headers = HTTPFields()
            headers[.retryAfter] = String(wait)
            return AccessDenied(error: RegistryError(.tooManyRequests, "too many failed logins; retry in \(wait) s"), headers: headers)
        case .invalid(let m): return AccessDenied(error: RegistryError(.unsupported, m, status: 400))
        case .notFound(let m): return AccessDenied(error: RegistryError(.unsupported, "\(m) not found", status: 404))
        case .conflict(let m): return AccessDenied(error: RegistryError(.denied, m, status: 409))
        }
    }

    /// The management API's error envelope.
    static func management(_ error: ManagementError) -> Response {
        RegistryResponder.jsonBody(ManagementErrorBody(code: error.code, message: error.message), status: error.status)
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
        if error.status == 416, let range = error.detail?["uploadRange"] { headers[.range] = range }
        if head {
            headers[.contentLength] = "0"
            return Response(status: .init(code: error.status), headers: headers, body: .init())
        }
        let envelope = OCIErrorBody(errors: [.init(code: error.code.rawValue, message: error.message, detail: error.detail)])
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
