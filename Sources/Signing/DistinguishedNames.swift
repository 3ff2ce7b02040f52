import Foundation
import SwiftASN1
import X509

/// One `KEY=value` element of a distinguished name as people write it (`CN=payments.org`).
public struct NameAttribute: Equatable, Hashable, Sendable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

public struct SigningError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// The simple string form of distinguished names used on the command line and in
/// `trustedIdentities` (`CN=payments.org, O=Platform`): comma-separated `KEY=value` pairs;
/// `\,` `\;` `\\` and `\ ` escape characters inside values.
public enum DistinguishedNames {
    static let oids: [String: ASN1ObjectIdentifier] = [
        "CN": .RDNAttributeType.commonName,
        "O": .RDNAttributeType.organizationName,
        "OU": .RDNAttributeType.organizationalUnitName,
        "C": .RDNAttributeType.countryName,
        "ST": .RDNAttributeType.stateOrProvinceName,
        "L": .RDNAttributeType.localityName,
        "STREET": .RDNAttributeType.streetAddress,
        "DC": .RDNAttributeType.domainComponent,
        "EMAILADDRESS": .RDNAttributeType.emailAddress,
    ]
    static let aliases: [String: String] = ["S": "ST", "E": "EMAILADDRESS", "EMAIL": "EMAILADDRESS"]

    static func canonicalKey(_ raw: String) -> String {
        let k = raw.trimmingCharacters(in: .whitespaces).uppercased()
        return aliases[k] ?? k
    }

    /// Parses `CN=a,O=b`; throws on unknown keys, empty values or duplicate keys.
    public static func parse(_ text: String) throws -> [NameAttribute] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for ch in text {
            if escaped {
                current.append(ch == " " ? "\u{0}" : ch)  // keep escaped spaces through trimming
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else if ch == "," {
                parts.append(current)
                current = ""
            } else {
                current.append(ch)
            }
        }
        guard !escaped else { throw SigningError("\(text): dangling escape character") }
        parts.append(current)
        var result: [NameAttribute] = []
        for part in parts {
            guard let eq = part.firstIndex(of: "=") else {
                throw SigningError("\(text): \(part.trimmingCharacters(in: .whitespaces)) is not KEY=value")
            }
            let key = canonicalKey(String(part[..<eq]))
            let value = String(part[part.index(after: eq)...]).trimmingCharacters(in: .whitespaces)
                .replacingOccurrences(of: "\u{0}", with: " ")
            guard oids[key] != nil else {
                throw SigningError("\(text): unknown attribute \(key) (use CN, O, OU, C, ST, L, STREET, DC, emailAddress)")
            }
            guard !value.isEmpty else { throw SigningError("\(text): empty value for \(key)") }
            guard !result.contains(where: { $0.key == key }) else { throw SigningError("\(text): \(key) given twice") }
            result.append(NameAttribute(key: key, value: value))
        }
        return result
    }

    /// The X.509 name for the parsed attributes, one RDN per attribute, in the order given.
    public static func distinguishedName(_ attributes: [NameAttribute]) throws -> DistinguishedName {
        var rdns: [RelativeDistinguishedName] = []
        for a in attributes {
            guard let oid = oids[a.key] else { throw SigningError("unknown attribute \(a.key)") }
            let attribute: RelativeDistinguishedName.Attribute
            if a.key == "C" {
                guard a.value.count == 2 else { throw SigningError("C (country) must be a two-letter code") }
                attribute = try .init(type: oid, printableString: a.value)
            } else {
                attribute = .init(type: oid, utf8String: a.value)
            }
            rdns.append(RelativeDistinguishedName(attribute))
        }
        return DistinguishedName(rdns)
    }

    /// The attributes of a certificate's name (unknown attribute types keep their dotted OID as key).
    public static func attributes(of name: DistinguishedName) -> [NameAttribute] {
        var result: [NameAttribute] = []
        for rdn in name {
            for attribute in rdn {
                let key = oids.first(where: { $0.value == attribute.type })?.key ?? attribute.type.description
                let value = String(attribute.value) ?? attribute.value.description
                result.append(NameAttribute(key: key, value: value))
            }
        }
        return result
    }

    /// `CN=payments.org, O=Platform`.
    public static func format(_ attributes: [NameAttribute]) -> String {
        attributes.map { a in
            var v = a.value.replacingOccurrences(of: "\\", with: "\\\\")
                .replacingOccurrences(of: ",", with: "\\,").replacingOccurrences(of: ";", with: "\\;")
            if v.hasPrefix(" ") { v = "\\" + v }
            if v.hasSuffix(" ") { v = String(v.dropLast()) + "\\ " }
            return "\(a.key == "EMAILADDRESS" ? "emailAddress" : a.key)=\(v)"
        }.joined(separator: ", ")
    }

    /// True when every attribute of `identity` is present with the same value in `subject`
    /// (Notation's rule: a trusted identity may list a subset of the subject's attributes).
    public static func matches(identity: [NameAttribute], subject: [NameAttribute]) -> Bool {
        guard !identity.isEmpty else { return false }
        return identity.allSatisfy { want in subject.contains(where: { $0.key == want.key && $0.value == want.value }) }
    }
}
