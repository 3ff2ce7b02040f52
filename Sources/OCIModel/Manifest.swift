import Foundation

public enum MediaType {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json"
    public static let dockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    public static let ociEmpty = "application/vnd.oci.empty.v1+json"

    public static let manifestTypes: [String] = [ociManifest, ociIndex, dockerManifest, dockerManifestList]

    public static func isIndex(_ t: String) -> Bool { t == ociIndex || t == dockerManifestList }

    /// RFC 6838 §4.2 `type/subtype` (restricted names, no parameters): the shape the image spec
    /// requires of an `artifactType`.
    public static func isRFC6838(_ t: String) -> Bool {
        func restrictedName(_ part: Substring) -> Bool {
            guard let first = part.first, part.count <= 127, first.isASCII, first.isLetter || first.isNumber else { return false }
            return part.allSatisfy { c in
                c.isASCII && (c.isLetter || c.isNumber || "!#$&-^_.+".contains(c))
            }
        }
        let parts = t.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        return parts.count == 2 && restrictedName(parts[0]) && restrictedName(parts[1])
    }

    /// Layer types that may live outside the registry (Windows base layers); not required to be present.
    public static func isNonDistributable(_ t: String) -> Bool {
        t.contains(".foreign.") || t.contains("nondistributable")
    }
}

/// An OCI content descriptor.
public struct Descriptor: Codable, Hashable, Sendable {
    public var mediaType: String
    public var digest: String
    public var size: Int64
    public var urls: [String]?
    public var annotations: [String: String]?
    public var artifactType: String?
    public var platform: Platform?

    public init(mediaType: String, digest: String, size: Int64, annotations: [String: String]? = nil,
                artifactType: String? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.artifactType = artifactType
    }

    public struct Platform: Codable, Hashable, Sendable {
        public var architecture: String
        public var os: String
        public var variant: String?
        enum CodingKeys: String, CodingKey {
            case architecture, os, variant
        }
    }
}

/// The manifest as Berth needs it for validation and for its referential metadata.
public struct ParsedManifest: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case image, index }
    public var kind: Kind
    public var mediaType: String
    /// Blobs the manifest needs present in the repository (config and layers).
    public var blobs: [Digest]
    /// Child manifests (index entries) that must be present in the repository.
    public var children: [Digest]
    public var subject: Digest?
    /// The `artifactType` a referrers response shows for this manifest.
    public var artifactType: String?
    public var annotations: [String: String]?
}

private struct RawManifest: Decodable {
    var schemaVersion: Int?
    var mediaType: String?
    var artifactType: String?
    var config: Descriptor?
    var layers: [Descriptor]?
    var manifests: [Descriptor]?
    var subject: Descriptor?
    var annotations: [String: String]?
    var blobs: [Descriptor]?
}

public enum ManifestParser {
    /// The largest manifest Berth accepts (the spec suggests at least 4 MiB).
    public static let maxSize = 4 * 1024 * 1024

    /// Parses and validates manifest bytes pushed with `contentType`.
    /// Throws MANIFEST_INVALID for malformed JSON or the wrong shape, UNSUPPORTED for media types
    /// Berth does not store (Docker schema 1 and anything it cannot validate).
    public static func parse(_ bytes: [UInt8], contentType: String?) throws(RegistryError) -> ParsedManifest {
        do {
            try StrictJSON.checkDuplicateKeys(bytes)
        } catch {
            throw RegistryError(.manifestInvalid, "manifest refused: \(error)")
        }
        let raw: RawManifest
        do {
            raw = try JSONDecoder().decode(RawManifest.self, from: Data(bytes))
        } catch {
            throw RegistryError(.manifestInvalid, "manifest is not valid JSON of a manifest's shape")
        }
        let header = contentType.map(normalizeContentType).flatMap { $0.isEmpty ? nil : $0 }
        if let header, let bodyType = raw.mediaType, header != bodyType {
            throw RegistryError(.manifestInvalid,
                                "mediaType \(bodyType.prefix(100)) in the manifest differs from Content-Type \(header.prefix(100))")
        }
        var mediaType = header ?? raw.mediaType
        if mediaType == nil {
            if raw.manifests != nil { mediaType = MediaType.ociIndex }
            else if raw.config != nil { mediaType = MediaType.ociManifest }
        }
        guard let mediaType else {
            throw RegistryError(.manifestInvalid, "manifest media type unknown: no Content-Type and no mediaType")
        }
        if mediaType == MediaType.dockerSchema1 || mediaType == MediaType.dockerSchema1Signed {
            throw RegistryError(.manifestInvalid, "Docker schema 1 manifests are not supported", status: 400)
        }
        guard MediaType.manifestTypes.contains(mediaType) else {
            throw RegistryError(.manifestInvalid, "unsupported manifest media type \(mediaType.prefix(100))")
        }
        guard raw.schemaVersion == 2 else {
            throw RegistryError(.manifestInvalid, "schemaVersion must be 2")
        }
        let subject = try raw.subject.map { d throws(RegistryError) in try validate(d, what: "subject") }
        // stored and listed by the referrers API as given: only a media type, never any string
        if let artifactType = raw.artifactType, !MediaType.isRFC6838(artifactType) {
            throw RegistryError(.manifestInvalid, "artifactType must be a media type (type/subtype, RFC 6838)")
        }

        if MediaType.isIndex(mediaType) {
            guard let manifests = raw.manifests, raw.config == nil, raw.layers == nil else {
                throw RegistryError(.manifestInvalid, "an index needs a manifests array and no config or layers")
            }
            var children: [Digest] = []
            for d in manifests { children.append(try validate(d, what: "manifests[]")) }
            if mediaType == MediaType.dockerManifestList, raw.mediaType == nil {
                throw RegistryError(.manifestInvalid, "a Docker manifest list must carry its mediaType")
            }
            return ParsedManifest(kind: .index, mediaType: mediaType, blobs: [], children: children,
                                  subject: subject, artifactType: raw.artifactType, annotations: raw.annotations)
        }
        guard let config = raw.config, raw.manifests == nil else {
            throw RegistryError(.manifestInvalid, "an image manifest needs a config descriptor and no manifests")
        }
        guard let layers = raw.layers else {
            throw RegistryError(.manifestInvalid, "an image manifest needs a layers array")
        }
        if mediaType == MediaType.dockerManifest, raw.mediaType == nil {
            throw RegistryError(.manifestInvalid, "a Docker schema 2 manifest must carry its mediaType")
        }
        var blobs = [try validate(config, what: "config")]
        for layer in layers {
            let d = try validate(layer, what: "layers[]")
            if MediaType.isNonDistributable(layer.mediaType), !(layer.urls ?? []).isEmpty { continue }
            blobs.append(d)
        }
        // distribution-spec: a referrer without artifactType is listed with its config's media type.
        return ParsedManifest(kind: .image, mediaType: mediaType, blobs: blobs, children: [],
                              subject: subject, artifactType: raw.artifactType ?? config.mediaType,
                              annotations: raw.annotations)
    }

    static func validate(_ d: Descriptor, what: String) throws(RegistryError) -> Digest {
        guard d.size >= 0 else { throw RegistryError(.manifestInvalid, "\(what): negative size") }
        guard !d.mediaType.isEmpty, d.mediaType.utf8.count <= 255 else {
            throw RegistryError(.manifestInvalid, "\(what): invalid mediaType")
        }
        do {
            return try Digest(parsing: d.digest)
        } catch {
            throw RegistryError(.manifestInvalid, "\(what): invalid digest \(d.digest.prefix(80))")
        }
    }

    /// `application/vnd.oci.image.manifest.v1+json; charset=utf-8` → the bare type.
    public static func normalizeContentType(_ value: String) -> String {
        let base = value.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
        return base.trimmingCharacters(in: .whitespaces).lowercased()
    }
}
