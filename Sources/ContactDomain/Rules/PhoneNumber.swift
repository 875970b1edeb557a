/// A phone number in E.164 form (`+` and 7 to 15 digits, the first not 0), with the match
/// key that identity compares (DOMAIN.md section 2).
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
