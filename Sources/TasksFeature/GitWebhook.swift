import BerthAPIContract
import Crypto
import Foundation
import HTTPTypes
import TaskRunner

/// A push webhook of a git server (issue 16 item 4), checked before anything in it is believed.
/// Three styles are accepted, each with the task's own secret:
/// - GitHub (and Gitea, Forgejo, Gogs, which send it too): `X-Hub-Signature-256: sha256=<hex>`,
///   HMAC-SHA256 of the body;
/// - Gitea: `X-Gitea-Signature: <hex>` (the same HMAC, without the prefix);
/// - GitLab: `X-Gitlab-Token: <secret>`, the secret itself (GitLab signs nothing).
/// Every one of these headers present must verify (a server sending two gets both checked), and a
/// request with none is refused. Comparisons are constant time.
enum GitWebhook {
    /// Largest body read: a push of many commits is tens of KiB; GitHub's own cap is 25 MB, but
    /// a build trigger needs only the ref and the commit.
    static let maxBodyBytes = 1 << 20

    enum Refusal: Error, Equatable {
        /// No signature header at all (401).
        case unsigned
        /// A signature header that does not verify, or is malformed (403).
        case badSignature
    }

    static let githubSignature = HTTPField.Name("X-Hub-Signature-256")!
    static let giteaSignature = HTTPField.Name("X-Gitea-Signature")!
    static let gitlabToken = HTTPField.Name("X-Gitlab-Token")!
    static let eventHeaders = ["X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event", "X-Gitlab-Event"].map { HTTPField.Name($0)! }

    /// Checks the request's signature headers against `secret`; the providers that verified.
    static func verify(_ headers: HTTPFields, body: [UInt8], secret: String) throws(Refusal) -> [String] {
        var verified: [String] = []
        let key = SymmetricKey(data: Data(secret.utf8))
        let mac = Array(HMAC<SHA256>.authenticationCode(for: body, using: key))
        func hex(_ text: String) -> [UInt8]? {
            let utf8 = Array(text.utf8)
            guard utf8.count == 64 else { return nil }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(32)
            var i = 0
            while i < 64 {
                guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
                bytes.append(hi << 4 | lo)
                i += 2
            }
            return bytes
        }
        let github = headers[values: githubSignature]
        let gitea = headers[values: giteaSignature]
        let gitlab = headers[values: gitlabToken]
        guard !(github.isEmpty && gitea.isEmpty && gitlab.isEmpty) else { throw .unsigned }
        // One value each: a repeated header is refused rather than one of its values chosen.
        guard github.count <= 1, gitea.count <= 1, gitlab.count <= 1 else { throw .badSignature }
        if let value = github.first {
            guard value.hasPrefix("sha256="), let given = hex(String(value.dropFirst(7))), constantTimeEquals(given, mac) else {
                throw .badSignature
            }
            verified.append("github")
        }
        if let value = gitea.first {
            guard let given = hex(value), constantTimeEquals(given, mac) else { throw .badSignature }
            verified.append("gitea")
        }
        if let value = gitlab.first {
            // Compared as digests, so neither the length nor the bytes of the secret leak by timing.
            let given = Array(SHA256.hash(data: Data(value.utf8)))
            let expected = Array(SHA256.hash(data: Data(secret.utf8)))
            guard constantTimeEquals(given, expected) else { throw .badSignature }
            verified.append("gitlab")
        }
        return verified
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: nil
        }
    }

    private static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }

    /// The event the request names (`push`, `Push Hook`, `ping`, …), nil when it names none.
    static func event(_ headers: HTTPFields) -> String? {
        for name in eventHeaders { if let value = headers[name] { return value } }
        return nil
    }

    /// Whether the event is a push (a request naming no event is read as one).
    static func isPush(_ event: String?) -> Bool {
        guard let event else { return true }
        return event == "push" || event == "Push Hook"
    }

    /// What a push payload says: its ref and the commit it moved to.
    struct Push: Equatable {
        var ref: String
        var after: String

        /// The branch pushed to, nil for a tag or anything else.
        var branch: String? { ref.hasPrefix("refs/heads/") ? String(ref.dropFirst("refs/heads/".count)) : nil }
        /// A push that deleted the ref (`after` is all zeros).
        var deletes: Bool { after.utf8.allSatisfy { $0 == UInt8(ascii: "0") } }
    }

    enum PayloadError: Error, Equatable, CustomStringConvertible {
        case invalid(String)
        var description: String { switch self { case .invalid(let m): m } }
    }

    /// The push in a payload (GitHub, Gitea and GitLab all send `ref` and `after`). The body is
    /// bounded by the caller; the JSON must be an object with both as strings, `after` a full
    /// object name and `ref` short and free of control characters.
    static func parsePush(_ body: [UInt8]) throws(PayloadError) -> Push {
        let payload: GitPushPayload
        do {
            payload = try JSONDecoder().decode(GitPushPayload.self, from: Data(body))
        } catch {
            throw .invalid("the payload is not a JSON object with ref and after")
        }
        guard let ref = payload.ref, let after = payload.after else { throw .invalid("the payload has no ref or after") }
        guard ref.utf8.count <= 255, ref.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f }) else {
            throw .invalid("the payload's ref is not a valid ref")
        }
        guard GitRemote.isObjectName(after) else { throw .invalid("the payload's after is not a full commit name") }
        return Push(ref: ref, after: after)
    }
}
