/// A JSON document as a value: the shape every payload, result and error object takes.
///
/// Numbers keep the exact text they were written with (see ``JSONNumber``), so a value read
/// from a producer and written back to PostgreSQL's `jsonb` loses no digits, however large.
/// Objects are dictionaries: like `jsonb`, a repeated key keeps its last value, and the
/// serializer writes keys in sorted order so that equal values print identically.
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// The name of the JSON type, as error messages show it (`"string"`, `"object"`, …).
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// The member `key` of an object; nil for a missing key or a value that is no object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The string, when this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The members, when this is an object.
    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// The elements, when this is an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// True for JSON null.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(JSONNumber(value)) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(nilLiteral: ()) { self = .null }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        var members: [String: JSONValue] = [:]
        for (key, value) in elements { members[key] = value }
        self = .object(members)
    }
}

/// A JSON number, kept as the literal text that was parsed or produced.
///
/// Swift has no numeric type that holds every JSON number (`1e400`, or an integer of 40
/// digits), and PostgreSQL's `numeric` holds more than `Double`. Keeping the text lets the
/// worker pass numbers through untouched and convert only where a rule needs a value.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible {
    /// The number as JSON text, always valid JSON number syntax.
    public let text: String

    /// A number from JSON text; nil unless `text` is exactly one JSON number.
    public init?(text: String) {
        var parser = JSONParser(bytes: Array(text.utf8), limits: .default)
        guard let number = try? parser.parseStandaloneNumber() else { return nil }
        self = number
    }

    init(uncheckedText: String) { self.text = uncheckedText }

    /// The integer as a JSON number.
    public init(_ value: Int) { self.text = String(value) }

    /// The finite double as a JSON number; NaN and infinities, which JSON cannot hold, become 0.
    public init(_ value: Double) {
        if value.isFinite {
            if value == value.rounded(), abs(value) < 1e15 {
                self.text = String(Int64(value))
            } else {
                self.text = "\(value)"
            }
        } else {
            self.text = "0"
        }
    }

    /// The value as a `Double` (rounded; infinite for magnitudes beyond its range).
    public var doubleValue: Double { Double(text) ?? .nan }

    /// The value as an `Int` when it is an integer that fits, else nil.
    public var intValue: Int? { Int(text) }

    public var description: String { text }
}

extension JSONNumber {
    /// True when PostgreSQL's `numeric` (and so `jsonb`) can store the number: at most
    /// 131,072 digits before the decimal point and 16,383 after. `1e999999` is valid JSON that
    /// no database column accepts.
    public var fitsPostgresNumeric: Bool {
        var text = Substring(self.text)
        if text.first == "-" { text.removeFirst() }
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            guard let value = Int(text[text.index(after: e)...].replacingPlus()) else { return false }
            exponent = value
            text = text[..<e]
        }
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let integer = parts[0].drop(while: { $0 == "0" })
        let fraction = parts.count > 1 ? parts[1] : ""
        let integerDigits = integer.count + exponent
        let fractionDigits = fraction.count - exponent
        return integerDigits <= 131_072 && fractionDigits <= 16_383
    }
}

extension Substring {
    fileprivate func replacingPlus() -> Substring { first == "+" ? dropFirst() : self }
}

extension JSONValue {
    /// The first number anywhere in the value that PostgreSQL cannot store, if any.
    public var firstNumberOutOfPostgresRange: JSONNumber? {
        switch self {
        case .number(let n): return n.fitsPostgresNumeric ? nil : n
        case .array(let elements):
            for element in elements { if let n = element.firstNumberOutOfPostgresRange { return n } }
            return nil
        case .object(let members):
            for value in members.values { if let n = value.firstNumberOutOfPostgresRange { return n } }
            return nil
        default: return nil
        }
    }
}
