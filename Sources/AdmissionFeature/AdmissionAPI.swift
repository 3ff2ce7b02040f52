import Access
import Admission
import Foundation
import HTTPAPI
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OCIModel
import RegistryCore

/// Kubernetes admission webhooks (`admission.k8s.io/v1` AdmissionReview):
/// `POST /admission/v1/validate` allows a workload only when every image it runs from this
/// registry is one the webhook's credentials may pull, exists, and is admitted by the
/// pull-admission chain that `/v2/` reads use too (locks, quarantine, content trust), asked on
/// behalf of the workload; `POST /admission/v1/mutate` pins each such image's tag to its digest
/// (images the caller may not pull, or the chain refuses, are left as they are).
public struct AdmissionFeature: RegistryFeature {
    public init() {}

    public func addRoutes(to routes: FeatureRoutes) {
        let endpoint = AdmissionEndpoint(gate: routes.server)
        // Any other method is the router's 405 with `Allow: POST`.
        for path in ["admission/v1/validate", "admission/v1/mutate"] {
            routes.root.post(RouterPath(path)) { request, context in
                try await endpoint.admission(request, context, endpoint.gate)
            }
        }
    }
}

/// The admission endpoints' handler: judges through the server's authorization function and the
/// server's pull-admission chain (the one `/v2/` reads ask).
struct AdmissionEndpoint: Sendable {
    typealias Context = BerthRequestContext
    let gate: FeatureServer
    var pullAdmission: PullAdmission { gate.pullAdmission }
    var methodNotAllowed: RegistryError { RegistryError(.unsupported, "method not allowed", status: 405) }

    /// Where the images of a workload's pod spec live, per kind.
    static func podSpecPath(kind: String) -> [String]? {
        switch kind {
        case "Pod": ["spec"]
        case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController": ["spec", "template", "spec"]
        case "CronJob": ["spec", "jobTemplate", "spec", "template", "spec"]
        default: nil
        }
    }

    struct ImageUse {
        let pointer: String     // JSON pointer of the image field
        let image: String
    }

    /// Every container, init container and ephemeral container image of the object.
    static func images(in object: [String: Any], kind: String) -> [ImageUse] {
        guard let path = podSpecPath(kind: kind) else { return [] }
        var node: Any? = object
        for key in path { node = (node as? [String: Any])?[key] }
        guard let spec = node as? [String: Any] else { return [] }
        var out: [ImageUse] = []
        for field in ["initContainers", "containers", "ephemeralContainers"] {
            for (i, container) in ((spec[field] as? [Any]) ?? []).enumerated() {
                if let image = (container as? [String: Any])?["image"] as? String {
                    out.append(ImageUse(pointer: "/" + (path + [field, String(i), "image"]).joined(separator: "/"), image: image))
                }
            }
        }
        return out
    }

    /// `host[:port]/repo[:tag][@digest]` → parts (with the host as the image spells it); nil when
    /// the host is none of `hosts`.
    static func parseImage(_ image: String, hosts: [String]) -> (host: String, repository: String, tag: String?, digest: String?)? {
        guard let slash = image.firstIndex(of: "/") else { return nil }
        let spelled = String(image[..<slash])
        guard hosts.contains(where: { sameHost(spelled, $0) }) else { return nil }
        do {
            let ref = try ImageReference(parsing: image, registryHost: spelled)
            guard ref.host == spelled else { throw RegistryError(.nameInvalid, "no host") }
            return (spelled, ref.repository, ref.tag ?? (ref.digest == nil ? "latest" : nil), ref.digest?.string)
        } catch {
            // Ours but malformed: hand back what follows the host, which no repository name matches,
            // so the caller refuses it rather than letting it pass as someone else's image.
            return (spelled, String(image[image.index(after: slash)...]), nil, nil)
        }
    }

    /// Whether two registry host names name the same registry for a node that pulls: DNS names
    /// compare without regard to case or a trailing dot, and the default HTTPS/HTTP ports are the
    /// same as none (`Registry.Example.com:443` is `registry.example.com`).
    static func sameHost(_ a: String, _ b: String) -> Bool {
        func canonical(_ host: String) -> String {
            var h = host.lowercased()
            for port in [":443", ":80"] where h.hasSuffix(port) { h.removeLast(port.count) }
            while h.hasSuffix(".") { h.removeLast() }
            return h
        }
        return canonical(a) == canonical(b)
    }

    func admission(_ request: Request, _ context: Context, _ gate: FeatureServer) async throws -> Response {
        guard request.method == .post else { throw methodNotAllowed }
        let caller = try await gate.caller(request, context)
        guard caller != nil else {
            throw gate.challenge(request, scope: nil, message: "the admission webhook needs credentials", insufficientScope: false)
        }
        let body = try await request.body.collect(upTo: 4 << 20)
        do {
            try StrictJSON.checkDuplicateKeys(body.readableBytesView)
        } catch {
            throw RegistryError(.unsupported, "AdmissionReview refused: \(error)", status: 400)
        }
        guard let review = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any],
              let req = review["request"] as? [String: Any], let uid = req["uid"] as? String else {
            throw RegistryError(.unsupported, "expected an admission.k8s.io/v1 AdmissionReview with a request", status: 400)
        }
        let kind = ((req["kind"] as? [String: Any])?["kind"] as? String) ?? ""
        let object = (req["object"] as? [String: Any]) ?? [:]
        // Images name this registry by its service name or by the host the webhook call reached.
        let hosts = [gate.serviceName, gate.requestHost(request)]
        let mutate = request.uri.path.hasSuffix("/mutate")
        let workload = Puller(caller: caller, address: caller?.address ?? gate.address(request, context), forWorkload: true)
        var refusals: [String] = []
        var patch: [[String: String]] = []
        for use in Self.images(in: object, kind: kind) {
            guard let ref = Self.parseImage(use.image, hosts: hosts) else { continue }   // not ours
            let host = ref.host
            do {
                let repo = try RepositoryName(ref.repository)
                // Only images the caller could pull itself are judged, by the one authorization
                // function (roles, scope maps, token claims, network rules). Anything else is "not
                // accessible" whether or not it exists: neither its state nor its digest leaks.
                guard gate.allows(caller, request, context, repository: repo.value, action: [.contentRead, .metadataRead]) else {
                    if !mutate { refusals.append("\(use.image): not accessible") }
                    continue
                }
                let reference: Reference = try ref.digest.map { d throws(RegistryError) in try Reference(parsing: d) } ?? .tag(ref.tag ?? "latest")
                let content = try await pullAdmission.manifest(repo, reference, for: workload)
                if mutate, ref.digest == nil {
                    patch.append(["op": "replace", "path": use.pointer, "value": "\(host)/\(repo.value)@\(content.digest)"])
                }
            } catch let refusal as AccessRefusal {
                if !mutate { refusals.append("\(use.image): \(refusal.reason)") }
            } catch let e as RegistryError {
                if !mutate { refusals.append("\(use.image): \(e.message)") }
            } catch {
                // Validate: anything else (a store that cannot be read, a setting that no longer
                // decodes) refuses this image rather than failing the review, which failurePolicy
                // Ignore would admit. Mutate: the review fails, so failurePolicy decides rather
                // than an unpinned image passing as allowed. Cancellation is never a verdict.
                if mutate || error is CancellationError { throw error }
                Logger(label: "berth.admission").error("admission could not judge an image", metadata: ["image": "\(use.image)", "error": "\(error)"])
                if !mutate { refusals.append("\(use.image): the registry could not judge it") }
            }
        }
        var response: [String: Any] = ["uid": uid, "allowed": refusals.isEmpty]
        if !refusals.isEmpty {
            response["status"] = ["code": 403, "message": "Berth refused: " + refusals.joined(separator: "; ")]
        }
        if mutate, !patch.isEmpty {
            response["patchType"] = "JSONPatch"
            response["patch"] = try JSONSerialization.data(withJSONObject: patch).base64EncodedString()
        }
        let answer: [String: Any] = ["apiVersion": review["apiVersion"] as? String ?? "admission.k8s.io/v1",
                                     "kind": "AdmissionReview", "response": response]
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys]))))
    }
}
