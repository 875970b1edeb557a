#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON

/// The type of a custom field definition (`crm.custom_field_definitions.field_type`).
public enum CustomFieldType: String, Sendable, Hashable, CaseIterable {
    case text, number, date, boolean, options
}

/// A client's custom field definition.
public struct CustomFieldDefinition: Sendable, Hashable {
    public let id: UUID
    public let key: String
    /// The name people see (`crm.custom_field_definitions.label`), if any; metadata keys may
    /// use it instead of the key.
    public let label: String?
    public let type: CustomFieldType
    /// The allowed values of an `options` field, in the definition's spelling.
    public let options: [String]
    /// Identifier fields deduplicate customers: a value belongs to at most one customer.
    public let isIdentifier: Bool

    public init(
        id: UUID, key: String, label: String? = nil, type: CustomFieldType, options: [String] = [], isIdentifier: Bool = false
    ) {
        self.id = id
        self.key = key
        self.label = label
        self.type = type
        self.options = options
        self.isIdentifier = isIdentifier
    }

    /// The canonical text of `input` for this field (docs/contract.md section 3: numbers as
    /// PostgreSQL's numeric writes them, dates as `YYYY-MM-DD`, booleans as `true`/`false`,
    /// options in the definition's spelling), or why it does not fit. An empty string is
    /// handled by the caller: it removes the value.
    public func canonicalize(_ input: CustomFieldInput) -> Result<String, CustomFieldValueProblem> {
        switch type {
        case .text:
            let text = input.text
            guard text.unicodeScalars.count <= 10_000 else { return .failure(.tooLong) }
            return .success(text)
        case .number:
            guard let canonical = DecimalText.canonical(input.text.trimmingSpaces) else {
                return .failure(.notANumber)
            }
            return .success(canonical)
        case .date:
            guard let date = CalendarDate.canonical(input.text.trimmingSpaces) else { return .failure(.notADate) }
            return .success(date)
        case .boolean:
            switch input {
            case .bool(let b): return .success(b ? "true" : "false")
            default:
                switch input.text.trimmingSpaces.lowercased() {
                case "true", "1", "yes", "si", "sí": return .success("true")
                case "false", "0", "no": return .success("false")
                default: return .failure(.notABoolean)
                }
            }
        case .options:
            let wanted = input.text.trimmingSpaces.lowercased()
            guard let match = options.first(where: { $0.lowercased() == wanted }) else {
                return .failure(.notAnOption(options))
            }
            return .success(match)
        }
    }

    /// The key that makes identifier values unique per client and definition: the
    /// canonical value, lowercased (so `ACME-1` and `acme-1` are one identifier).
    public func identifierKey(_ canonical: String) -> String? {
        isIdentifier ? canonical.lowercased() : nil
    }
}

/// A custom field value as the payload gave it: JSON string, number or boolean.
public enum CustomFieldInput: Sendable, Hashable {
    case string(String)
    case number(JSONNumber)
    case bool(Bool)

    /// The value as text (a number as written, a boolean as `true`/`false`).
    public var text: String {
        switch self {
        case .string(let s): s
        case .number(let n): n.text
        case .bool(let b): b ? "true" : "false"
        }
    }

    /// True for the empty string, which removes the customer's value.
    public var isEmptyString: Bool {
        if case .string(let s) = self { return s.trimmingSpaces.isEmpty }
        return false
    }
}

/// Why a value does not fit its definition (`invalid_custom_field_values[].reason`).
public enum CustomFieldValueProblem: Error, Sendable, Hashable, CustomStringConvertible {
    case tooLong, notANumber, notADate, notABoolean, duplicateKey
    case notAnOption([String])

    public var description: String {
        switch self {
        case .tooLong: "text longer than 10,000 characters"
        case .notANumber: "not a number"
        case .notADate: "not a date (YYYY-MM-DD)"
        case .notABoolean: "not a boolean (true/false, 1/0, yes/no, si/no)"
        case .duplicateKey: "duplicate key"
        case .notAnOption(let options): "not one of the options: \(options.joined(separator: ", "))"
        }
    }
}

/// Decimal numbers in PostgreSQL `numeric`'s canonical text form.
public enum DecimalText {
    /// The largest decimal exponent accepted; far beyond any CRM value, far below numeric's limits.
    static let maxExponent = 1000

    /// `-12.5` → `-12.5`, `3e4` → `30000`, `1.50e1` → `15.0`, `.5` → `0.5`, `-0` → `0`:
    /// exactly what `'…'::numeric::text` prints. Nil for anything that is not a decimal.
    public static func canonical(_ text: String) -> String? {
        var chars = Substring(text)
        var negative = false
        if chars.first == "-" || chars.first == "+" {
            negative = chars.first == "-"
            chars.removeFirst()
        }
        var mantissa = chars
        var exponent = 0
        if let e = chars.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = chars[..<e]
            var expText = chars[chars.index(after: e)...]
            var expNegative = false
            if expText.first == "-" || expText.first == "+" {
                expNegative = expText.first == "-"
                expText.removeFirst()
            }
            guard !expText.isEmpty, expText.count <= 6, expText.allSatisfy(\.isASCIIDigit), let value = Int(expText)
            else { return nil }
            exponent = expNegative ? -value : value
            guard abs(exponent) <= maxExponent else { return nil }
        }
        let parts = mantissa.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let integerDigits = parts[0]
        let fractionDigits = parts.count > 1 ? parts[1] : ""
        guard integerDigits.allSatisfy(\.isASCIIDigit), fractionDigits.allSatisfy(\.isASCIIDigit),
            !(integerDigits.isEmpty && fractionDigits.isEmpty)
        else { return nil }
        guard integerDigits.count + fractionDigits.count <= maxExponent else { return nil }
        let scale = max(0, fractionDigits.count - exponent)
        var digits = Array(integerDigits + fractionDigits)
        // The decimal point sits after `point` digits of `digits`.
        var point = integerDigits.count + exponent
        if point < 0 {
            digits.insert(contentsOf: Array(repeating: "0", count: -point), at: 0)
            point = 0
        }
        if point > digits.count { digits.append(contentsOf: Array(repeating: "0", count: point - digits.count)) }
        var integer = String(digits[..<point])
        var fraction = String(digits[point...])
        if fraction.count > scale {
            // Only zeros lie beyond the scale (the exponent moved them there).
            fraction = String(fraction.prefix(scale))
        } else if fraction.count < scale {
            fraction += String(repeating: "0", count: scale - fraction.count)
        }
        while integer.count > 1, integer.first == "0" { integer.removeFirst() }
        if integer.isEmpty { integer = "0" }
        let isZero = integer.allSatisfy { $0 == "0" } && fraction.allSatisfy { $0 == "0" }
        var out = (negative && !isZero) ? "-" : ""
        out += integer
        if scale > 0 { out += "." + fraction }
        return out
    }
}

/// Calendar dates: `YYYY-MM-DD`, or the date part of an ISO 8601 timestamp.
public enum CalendarDate {
    /// The date as `YYYY-MM-DD` when `text` is a real calendar date (or an ISO 8601 timestamp
    /// whose date part is one); nil otherwise.
    public static func canonical(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 10 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                let b = bytes[i]
                guard b >= 48, b <= 57 else { return nil }
                value = value * 10 + Int(b - 48)
            }
            return value
        }
        guard let year = number(0..<4), bytes[4] == UInt8(ascii: "-"), let month = number(5..<7),
            bytes[7] == UInt8(ascii: "-"), let day = number(8..<10)
        else { return nil }
        guard year >= 1, (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        if bytes.count > 10 {
            guard bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " "),
                isTimeOfDay(bytes[11...])
            else { return nil }
        }
        return String(decoding: bytes[0..<10], as: UTF8.self)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// `HH:MM[:SS[.fff]]` then `Z`, `±HH:MM`, `±HHMM`, `±HH`, or nothing.
    static func isTimeOfDay(_ rest: ArraySlice<UInt8>) -> Bool {
        let text = String(decoding: rest, as: UTF8.self)
        var s = Substring(text)
        func take(_ n: Int) -> Int? {
            guard s.count >= n else { return nil }
            let part = s.prefix(n)
            guard part.allSatisfy(\.isASCIIDigit) else { return nil }
            s = s.dropFirst(n)
            return Int(part)
        }
        guard let hour = take(2), hour < 24, s.first == ":" else { return false }
        s = s.dropFirst()
        guard let minute = take(2), minute < 60 else { return false }
        if s.first == ":" {
            s = s.dropFirst()
            guard let second = take(2), second <= 60 else { return false }
            if s.first == "." || s.first == "," {
                s = s.dropFirst()
                let fraction = s.prefix(while: \.isASCIIDigit)
                guard !fraction.isEmpty else { return false }
                s = s.dropFirst(fraction.count)
            }
        }
        if s.isEmpty || s == "Z" || s == "z" { return true }
        guard s.first == "+" || s.first == "-" else { return false }
        s = s.dropFirst()
        guard let offsetHours = take(2), offsetHours <= 23 else { return false }
        if s.isEmpty { return true }
        if s.first == ":" { s = s.dropFirst() }
        guard let offsetMinutes = take(2), offsetMinutes < 60 else { return false }
        return s.isEmpty
    }
}
