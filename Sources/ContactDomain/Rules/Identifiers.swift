#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The UUID pattern of the seed API reference, exactly:
/// `^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$`
///
/// It accepts versions 1 to 8 with the RFC 9562 variant, and the nil and max UUIDs (the max
/// in lowercase only). Version 0 (`00000000-0000-0000-0000-000000000001`) is refused.
public enum SeedUUID {
    /// True when `text` matches the seed's pattern.
    public static func matches(_ text: String) -> Bool {
        if text == "00000000-0000-0000-0000-000000000000" || text == "ffffffff-ffff-ffff-ffff-ffffffffffff" {
            return true
        }
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, byte) in bytes.enumerated() {
            switch i {
            case 8, 13, 18, 23:
                guard byte == UInt8(ascii: "-") else { return false }
            case 14:
                guard byte >= UInt8(ascii: "1"), byte <= UInt8(ascii: "8") else { return false }
            case 19:
                guard "89abAB".utf8.contains(byte) else { return false }
            default:
                guard isHex(byte) else { return false }
            }
        }
        return true
    }

    /// The UUID `text` names when it matches the seed's pattern, else nil.
    public static func uuid(_ text: String) -> UUID? {
        guard matches(text) else { return nil }
        var value = (UInt64(0), UInt64(0))
        var nibbles = 0
        for byte in text.utf8 where byte != UInt8(ascii: "-") {
            let digit = UInt64(byte <= 0x39 ? byte - 0x30 : (byte | 0x20) - 0x61 + 10)
            if nibbles < 16 { value.0 = value.0 << 4 | digit } else { value.1 = value.1 << 4 | digit }
            nibbles += 1
        }
        let (high, low) = (value.0.bigEndian, value.1.bigEndian)
        return withUnsafeBytes(of: (high, low)) { b in
            UUID(uuid: (b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]))
        }
    }

    static func isHex(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
    }
}

/// E-mail addresses: plausible, not proven.
public enum EmailAddress {
    /// The longest address accepted (RFC 5321's path limit).
    public static let maxLength = 254

    /// Why `text` (already trimmed) is not a plausible address, or nil when it is:
    /// `local@domain.tld`, no spaces, at most 254 characters.
    public static func problem(_ text: String) -> String? {
        switch asciiVerdict(text) {
        case .valid?: return nil
        case .invalid(let problem)?: return problem
        case nil: return scalarProblem(text)
        }
    }

    /// ``problem(_:)`` over the bytes of an ASCII address (the same checks in the same order);
    /// nil for non-ASCII text. A test checks that both agree.
    static func asciiVerdict(_ text: String) -> Verdict? {
        var text = text
        return text.withUTF8 { b -> Verdict? in
            guard b.allSatisfy({ $0 < 0x80 }) else { return nil }
            if b.count > maxLength { return .invalid("longer than 254 characters") }
            if b.contains(where: { $0 <= 0x20 || $0 == 0x7F }) { return .invalid("contains spaces or control characters") }
            let at = UInt8(ascii: "@"), dot = UInt8(ascii: "."), dash = UInt8(ascii: "-")
            guard let split = b.firstIndex(of: at), b.lastIndex(of: at) == split else {
                return .invalid("must contain exactly one @")
            }
            let local = b[..<split], domain = b[(split + 1)...]
            guard !local.isEmpty, local.count <= 64 else { return .invalid("invalid local part") }
            if local.first == dot || local.last == dot || zip(local, local.dropFirst()).contains(where: { $0 == dot && $1 == dot }) {
                return .invalid("invalid local part")
            }
            let labels = domain.split(separator: dot, omittingEmptySubsequences: false)
            guard labels.count >= 2 else { return .invalid("the domain needs a dot (local@domain.tld)") }
            func isLetter(_ c: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(c | 0x20) }
            for label in labels {
                guard !label.isEmpty, label.count <= 63, label.first != dash, label.last != dash else {
                    return .invalid("invalid domain")
                }
                guard label.allSatisfy({ isLetter($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == dash })
                else { return .invalid("invalid domain") }
            }
            guard let tld = labels.last, tld.count >= 2, tld.allSatisfy(isLetter) else {
                return .invalid("invalid top-level domain")
            }
            return .valid
        }
    }

    enum Verdict: Equatable {
        case valid
        case invalid(String)
    }

    /// ``problem(_:)`` for any text, scalar by scalar.
    static func scalarProblem(_ text: String) -> String? {
        if text.unicodeScalars.count > maxLength { return "longer than 254 characters" }
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            return "contains spaces or control characters"
        }
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return "must contain exactly one @" }
        let (local, domain) = (parts[0], parts[1])
        guard !local.isEmpty, local.utf8.count <= 64 else { return "invalid local part" }
        if local.hasPrefix(".") || local.hasSuffix(".") || local.contains("..") { return "invalid local part" }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2 else { return "the domain needs a dot (local@domain.tld)" }
        for label in labels {
            guard !label.isEmpty, label.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-") else {
                return "invalid domain"
            }
            guard label.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" })
            else { return "invalid domain" }
        }
        guard let tld = labels.last, tld.count >= 2, tld.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic }) else {
            return "invalid top-level domain"
        }
        return nil
    }
}
