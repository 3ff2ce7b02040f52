import Foundation

/// Base64url without padding (RFC 7515 section 2), as JWS uses it.
public enum Base64URL {
    public static func encode<D: DataProtocol>(_ data: D) -> String {
        Data(data).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// Decodes strictly: only the base64url alphabet, no padding, no whitespace.
    public static func decode(_ text: String) -> Data? {
        guard text.utf8.allSatisfy({ c in
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x5F
        }) else { return nil }
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        switch s.count % 4 {
        case 0: break
        case 2: s += "=="
        case 3: s += "="
        default: return nil
        }
        return Data(base64Encoded: s)
    }
}

/// Parses durations like `90s`, `15m`, `24h`, `7d`, `1y` (also combined: `1d12h`).
public func parseDuration(_ text: String) -> TimeInterval? {
    var total: TimeInterval = 0
    var number = ""
    var sawUnit = false
    for ch in text.trimmingCharacters(in: .whitespaces) {
        if ch.isASCII, ch.isNumber {
            number.append(ch)
            continue
        }
        guard let n = Double(number) else { return nil }
        switch ch {
        case "s": total += n
        case "m": total += n * 60
        case "h": total += n * 3600
        case "d": total += n * 86_400
        case "w": total += n * 7 * 86_400
        case "y": total += n * 365 * 86_400
        default: return nil
        }
        number = ""
        sawUnit = true
    }
    guard number.isEmpty, sawUnit, total > 0 else { return nil }
    return total
}
