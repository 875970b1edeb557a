/// A phone number in E.164 form (`+` and 7 to 15 digits, the first not 0), with the match
/// key that identity compares (docs/rules.md section 2).
///
/// The SQL functions `crm.normalize_phone` and `crm.phone_key` implement the same rules for
/// the database (the queue's default ordering key, generated columns); a test checks that the
/// two agree on every example.
public struct PhoneNumber: Sendable, Hashable, CustomStringConvertible {
    /// The E.164 form, as a new contact stores it: `+56961234567`.
    public let e164: String

    /// Why a spelling is not a phone number.
    public enum Problem: String, Error, Sendable, Hashable {
        case empty = "empty"
        case notAPhoneIdentifier = "a WhatsApp identifier that is not a phone number (@lid, @g.us, @broadcast or business-scoped id)"
        case invalidCharacters = "contains characters that are not part of a phone number"
        case length = "must have 7 to 15 digits with the country code (E.164)"
        case leadingZero = "must start with a country code (national formats are not guessed)"
    }

    /// Normalizes a spelling: trims; strips a `whatsapp:` prefix and a WhatsApp Web JID suffix
    /// (`@s.whatsapp.net`, `@c.us`, with an optional `:device`); drops spaces, dashes, dots,
    /// slashes and parentheses; reads a leading `+` or `00` as the country code marker; and
    /// takes plain digits (WhatsApp's `wa_id`) as already starting with the country code.
    public static func parse(_ raw: String) -> Result<PhoneNumber, Problem> {
        parseASCII(raw) ?? parseCharacters(raw)
    }

    /// ``parse(_:)`` over the bytes of an ASCII spelling (nearly all of them): the same steps,
    /// without building Characters. Nil for anything it does not handle the same way (non-ASCII,
    /// or a CR LF pair, which Swift reads as one Character); a test checks that both agree.
    static func parseASCII(_ raw: String) -> Result<PhoneNumber, Problem>? {
        var raw = raw
        return raw.withUTF8 { all -> Result<PhoneNumber, Problem>? in
            var previous: UInt8 = 0
            for byte in all {
                if byte >= 0x80 || (previous == 0x0D && byte == 0x0A) { return nil }
                previous = byte
            }
            func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
            func isDigit(_ b: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
            func trimmed(_ b: Slice<UnsafeBufferPointer<UInt8>>) -> Slice<UnsafeBufferPointer<UInt8>> {
                var b = b
                while let first = b.first, isSpace(first) { b = b.dropFirst() }
                while let last = b.last, isSpace(last) { b = b.dropLast() }
                return b
            }
            func lowercasedEquals(_ b: Slice<UnsafeBufferPointer<UInt8>>, _ text: StaticString) -> Bool {
                guard b.count == text.utf8CodeUnitCount else { return false }
                let expected = UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
                return zip(b, expected).allSatisfy { byte, want in
                    ((UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte) == want
                }
            }
            var s = trimmed(all[...])
            if s.isEmpty { return .failure(.empty) }
            if s.count >= 9, lowercasedEquals(s.prefix(9), "whatsapp:") { s = trimmed(s.dropFirst(9)) }
            if let at = s.firstIndex(of: UInt8(ascii: "@")) {
                let domain = s[(at + 1)...]
                guard lowercasedEquals(domain, "s.whatsapp.net") || lowercasedEquals(domain, "c.us") else {
                    return .failure(.notAPhoneIdentifier)
                }
                var user = s[..<at]
                if let colon = user.firstIndex(of: UInt8(ascii: ":")) {
                    let device = user[(colon + 1)...]
                    guard !device.isEmpty, device.allSatisfy(isDigit) else { return .failure(.invalidCharacters) }
                    user = user[..<colon]
                }
                guard !user.isEmpty, user.allSatisfy(isDigit) else { return .failure(.notAPhoneIdentifier) }
                s = user
            }
            var digits: [UInt8] = []
            digits.reserveCapacity(s.count)
            for byte in s where !Self.separatorBytes.contains(byte) { digits.append(byte) }
            var sawPlus = false
            if digits.first == UInt8(ascii: "+") {
                sawPlus = true
                digits.removeFirst()
            }
            guard digits.allSatisfy(isDigit) else {
                let hasLetter = s.contains { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0 | 0x20) }
                return .failure(hasLetter ? .notAPhoneIdentifier : .invalidCharacters)
            }
            if !sawPlus, digits.count >= 2, digits[0] == UInt8(ascii: "0"), digits[1] == UInt8(ascii: "0") {
                digits.removeFirst(2)
            }
            guard (7...15).contains(digits.count) else { return .failure(.length) }
            guard digits.first != UInt8(ascii: "0") else { return .failure(.leadingZero) }
            return .success(PhoneNumber(e164: "+" + String(decoding: digits, as: UTF8.self)))
        }
    }

    /// The ASCII members of ``separators``.
    static let separatorBytes: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D, 0x2D, 0x2E, 0x2F, 0x28, 0x29]

    /// ``parse(_:)`` for any spelling, Character by Character.
    static func parseCharacters(_ raw: String) -> Result<PhoneNumber, Problem> {
        var s = Substring(raw.trimmingSpaces)
        if s.isEmpty { return .failure(.empty) }
        if s.lowercased().hasPrefix("whatsapp:") {
            s = Substring(String(s.dropFirst("whatsapp:".count)).trimmingSpaces)
        }
        if let at = s.firstIndex(of: "@") {
            let domain = s[s.index(after: at)...].lowercased()
            guard domain == "s.whatsapp.net" || domain == "c.us" else { return .failure(.notAPhoneIdentifier) }
            var user = s[..<at]
            if let colon = user.firstIndex(of: ":") {
                let device = user[user.index(after: colon)...]
                guard !device.isEmpty, device.allSatisfy(\.isASCIIDigit) else { return .failure(.invalidCharacters) }
                user = user[..<colon]
            }
            guard !user.isEmpty, user.allSatisfy(\.isASCIIDigit) else { return .failure(.notAPhoneIdentifier) }
            s = user
        }
        var cleaned = s.filter { !Self.separators.contains($0) }
        var sawPlus = false
        if cleaned.first == "+" {
            sawPlus = true
            cleaned.removeFirst()
        }
        guard cleaned.allSatisfy(\.isASCIIDigit) else {
            // A business-scoped user id (`CL.1410018717833190`) lands here too.
            return .failure(s.contains(where: \.isLetter) ? .notAPhoneIdentifier : .invalidCharacters)
        }
        var digits = cleaned
        if !sawPlus, digits.hasPrefix("00") { digits.removeFirst(2) }
        guard (7...15).contains(digits.count) else { return .failure(.length) }
        guard digits.first != "0" else { return .failure(.leadingZero) }
        return .success(PhoneNumber(e164: "+" + digits))
    }

    /// Separators dropped from a spelling: white space, dashes, dots, slashes, parentheses.
    static let separators: Set<Character> = [" ", "\t", "\n", "\r", "\u{00A0}", "-", ".", "/", "(", ")"]

    /// The identity match key: the digits, with WhatsApp's known variants folded together.
    /// - Brazil: `55` + area code + an 8-digit mobile starting 6 to 9 gains the ninth digit `9`;
    /// - Mexico: `521` + 10 digits is `52` + the same 10 digits;
    /// - Argentina: `549` + 10 digits is `54` + the same 10 digits.
    public var matchKey: String {
        let d = Array(e164.utf8.dropFirst())
        func isDigit(_ b: UInt8, in range: ClosedRange<UInt8>) -> Bool {
            b >= UInt8(ascii: "0") + range.lowerBound && b <= UInt8(ascii: "0") + range.upperBound
        }
        if d.count == 12, d[0] == UInt8(ascii: "5"), d[1] == UInt8(ascii: "5"), isDigit(d[2], in: 1...9),
            isDigit(d[3], in: 1...9), isDigit(d[4], in: 6...9)
        {
            return String(decoding: d[0..<4], as: UTF8.self) + "9" + String(decoding: d[4...], as: UTF8.self)
        }
        if d.count == 13, d[0] == UInt8(ascii: "5"), d[1] == UInt8(ascii: "2"), d[2] == UInt8(ascii: "1") {
            return "52" + String(decoding: d[3...], as: UTF8.self)
        }
        if d.count == 13, d[0] == UInt8(ascii: "5"), d[1] == UInt8(ascii: "4"), d[2] == UInt8(ascii: "9") {
            return "54" + String(decoding: d[3...], as: UTF8.self)
        }
        return String(decoding: d, as: UTF8.self)
    }

    public var description: String { e164 }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
