#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms

/// A Swift value that can be sent as a statement parameter, in PostgreSQL's text format.
///
/// Parameters are always sent separately from the SQL text (`$1`, `$2`…), never spliced
/// into it; the server parses each according to the type the statement expects there.
public protocol PostgresEncodable: Sendable {
    /// The value in PostgreSQL's text input format; nil sends SQL NULL.
    var postgresText: String? { get }

    /// Appends the value as one element of an array literal: quoted and escaped, or `NULL`.
    /// The default goes through ``postgresText``; types that know their text needs no
    /// escaping write it directly.
    func appendArrayElement(to buffer: inout [UInt8])
}

extension PostgresEncodable {
    public func appendArrayElement(to buffer: inout [UInt8]) {
        guard let text = postgresText else {
            buffer.append(contentsOf: [UInt8(ascii: "N"), UInt8(ascii: "U"), UInt8(ascii: "L"), UInt8(ascii: "L")])
            return
        }
        appendQuotedArrayElement(text, to: &buffer)
    }
}

/// `text` as an array element: in double quotes, with `"` and `\` escaped.
func appendQuotedArrayElement(_ text: String, to buffer: inout [UInt8]) {
    var text = text
    buffer.append(UInt8(ascii: "\""))
    text.withUTF8 { bytes in
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        if !bytes.contains(where: { $0 == quote || $0 == backslash }) {
            buffer.append(contentsOf: bytes)
            return
        }
        for byte in bytes {
            if byte == quote || byte == backslash { buffer.append(backslash) }
            buffer.append(byte)
        }
    }
    buffer.append(UInt8(ascii: "\""))
}

/// A Swift value that can be read from a result column in PostgreSQL's text format.
public protocol PostgresDecodable: Sendable {
    /// Decodes a non-NULL value.
    static func decode(postgresText: String) throws(PostgresError) -> Self
    /// Decodes SQL NULL; by default an error, since only optionals accept NULL.
    static func decodeNull() throws(PostgresError) -> Self
}

extension PostgresDecodable {
    public static func decodeNull() throws(PostgresError) -> Self {
        throw PostgresError(code: .decoding, message: "unexpected NULL for \(Self.self)")
    }

    static func mismatch(_ text: String) -> PostgresError {
        PostgresError(code: .decoding, message: "cannot decode \(Self.self) from a value of \(text.utf8.count) bytes")
    }
}

extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresText: String? { self?.postgresText }
    public func appendArrayElement(to buffer: inout [UInt8]) {
        guard let self else {
            buffer.append(contentsOf: [UInt8(ascii: "N"), UInt8(ascii: "U"), UInt8(ascii: "L"), UInt8(ascii: "L")])
            return
        }
        self.appendArrayElement(to: &buffer)
    }
}

extension Optional: PostgresDecodable where Wrapped: PostgresDecodable {
    public static func decode(postgresText: String) throws(PostgresError) -> Wrapped? {
        try Wrapped.decode(postgresText: postgresText)
    }
    public static func decodeNull() throws(PostgresError) -> Wrapped? { nil }
}

extension String: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self }
    public func appendArrayElement(to buffer: inout [UInt8]) { appendQuotedArrayElement(self, to: &buffer) }
    public static func decode(postgresText: String) throws(PostgresError) -> String { postgresText }
}

extension Substring: PostgresEncodable {
    public var postgresText: String? { String(self) }
}

extension Bool: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { self ? "t" : "f" }
    public static func decode(postgresText: String) throws(PostgresError) -> Bool {
        switch postgresText {
        case "t", "true": return true
        case "f", "false": return false
        default: throw mismatch(postgresText)
        }
    }
}

extension Int: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public static func decode(postgresText: String) throws(PostgresError) -> Int {
        guard let value = Int(postgresText) else { throw mismatch(postgresText) }
        return value
    }
}

extension Int64: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public func appendArrayElement(to buffer: inout [UInt8]) {
        if self < 0 { buffer.append(UInt8(ascii: "-")) }
        var digits: [UInt8] = []
        var rest = self.magnitude
        repeat {
            digits.append(UInt8(ascii: "0") + UInt8(rest % 10))
            rest /= 10
        } while rest > 0
        buffer.append(contentsOf: digits.reversed())
    }
    public static func decode(postgresText: String) throws(PostgresError) -> Int64 {
        guard let value = Int64(postgresText) else { throw mismatch(postgresText) }
        return value
    }
}

extension Int32: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public static func decode(postgresText: String) throws(PostgresError) -> Int32 {
        guard let value = Int32(postgresText) else { throw mismatch(postgresText) }
        return value
    }
}

extension Int16: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { String(self) }
    public static func decode(postgresText: String) throws(PostgresError) -> Int16 {
        guard let value = Int16(postgresText) else { throw mismatch(postgresText) }
        return value
    }
}

extension Double: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? {
        if isNaN { return "NaN" }
        if isInfinite { return self > 0 ? "Infinity" : "-Infinity" }
        return "\(self)"
    }
    public static func decode(postgresText: String) throws(PostgresError) -> Double {
        switch postgresText {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default:
            guard let value = Double(postgresText) else { throw mismatch(postgresText) }
            return value
        }
    }
}

extension UUID: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { UUIDText.string(self) }
    public func appendArrayElement(to buffer: inout [UInt8]) { UUIDText.append(self, to: &buffer) }
    public static func decode(postgresText: String) throws(PostgresError) -> UUID {
        guard let value = UUIDText.parse(postgresText) else { throw mismatch(postgresText) }
        return value
    }
}

extension JSONValue: PostgresEncodable, PostgresDecodable {
    public var postgresText: String? { jsonText }
    public static func decode(postgresText: String) throws(PostgresError) -> JSONValue {
        do {
            return try JSONValue.parse(postgresText, limits: JSONParseLimits(maxDepth: 512, maxBytes: Int.max))
        } catch {
            throw PostgresError(code: .decoding, message: "invalid JSON from the server: \(error)")
        }
    }
}

/// A `numeric` value, kept as its exact decimal text (PostgreSQL's `numeric` holds far more
/// digits than any Swift number type).
public struct PostgresNumeric: Sendable, Hashable, PostgresEncodable, PostgresDecodable, CustomStringConvertible {
    /// The decimal text as PostgreSQL writes it (`-12.50`, `30000`, `NaN`).
    public let text: String
    public init(_ text: String) { self.text = text }
    public var postgresText: String? { text }
    public var description: String { text }
    public static func decode(postgresText: String) throws(PostgresError) -> PostgresNumeric {
        PostgresNumeric(postgresText)
    }
}

/// A one-dimensional array parameter (`text[]`, `uuid[]`, `bigint[]`…), sent as an array literal.
extension Array: PostgresEncodable where Element: PostgresEncodable {
    public var postgresText: String? {
        var out: [UInt8] = []
        out.reserveCapacity(2 + count * 40)
        out.append(UInt8(ascii: "{"))
        // Parameters are encoded behind `any PostgresEncodable`, where this loop would be the
        // unspecialized generic one (every element copied and encoded through witness tables,
        // a tenth of the worker's CPU): the element types the statements send run a loop
        // specialized for them. Each cast is to the type `Element` was just compared equal to.
        if Element.self == String?.self {
            appendArrayElements(unsafeBitCast(self, to: [String?].self), to: &out)
        } else if Element.self == String.self {
            appendArrayElements(unsafeBitCast(self, to: [String].self), to: &out)
        } else if Element.self == UUID.self {
            appendArrayElements(unsafeBitCast(self, to: [UUID].self), to: &out)
        } else if Element.self == UUID?.self {
            appendArrayElements(unsafeBitCast(self, to: [UUID?].self), to: &out)
        } else if Element.self == Int64.self {
            appendArrayElements(unsafeBitCast(self, to: [Int64].self), to: &out)
        } else if Element.self == Int.self {
            appendArrayElements(unsafeBitCast(self, to: [Int].self), to: &out)
        } else {
            appendArrayElements(self, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

}

/// The elements of an array literal, comma-separated. A free function, so that each call with a
/// concrete element type is specialized (a static member of the generic `Array` was not).
private func appendArrayElements<Value: PostgresEncodable>(_ elements: [Value], to out: inout [UInt8]) {
    for (i, element) in elements.enumerated() {
        if i > 0 { out.append(UInt8(ascii: ",")) }
        element.appendArrayElement(to: &out)
    }
}

extension Date: PostgresEncodable, PostgresDecodable {
    /// ISO 8601 in UTC with microseconds, which `timestamptz` reads exactly.
    public var postgresText: String? { TimestampText.format(self) }

    public static func decode(postgresText: String) throws(PostgresError) -> Date {
        guard let date = TimestampText.parse(postgresText) else { throw mismatch(postgresText) }
        return date
    }
}


/// The rows a statement returned, copied out of libpq's result.
public struct PostgresRows: Sendable, RandomAccessCollection {
    /// The column names, in order.
    public let columns: [String]
    /// The rows.
    public let rows: [PostgresRow]
    /// The number of rows the statement affected (`UPDATE`, `DELETE`, `INSERT`…), or returned.
    public let affectedRows: Int

    public var startIndex: Int { rows.startIndex }
    public var endIndex: Int { rows.endIndex }
    public subscript(position: Int) -> PostgresRow { rows[position] }
}

/// The column positions of a result, shared by its rows.
final class ColumnIndex: Sendable {
    let positions: [String: Int]
    init(_ columns: [String]) {
        var positions: [String: Int] = [:]
        for (i, name) in columns.enumerated() where positions[name] == nil { positions[name] = i }
        self.positions = positions
    }
}

/// One result row: text values by column, decoded on demand into typed Swift values.
public struct PostgresRow: Sendable {
    let index: ColumnIndex
    /// The raw text of each column, nil for SQL NULL.
    public let values: [String?]

    /// Decodes the named column; a missing column or a mismatching value throws ``PostgresError/Code/decoding``.
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self, _ column: String) throws(PostgresError) -> T {
        guard let position = index.positions[column] else {
            throw PostgresError(code: .decoding, message: "no column \(column) in the result")
        }
        return try decode(type, at: position)
    }

    /// Decodes the only column of a one-column result (`SELECT count(*) …`).
    public func decode<T: PostgresDecodable>(_ type: T.Type = T.self) throws(PostgresError) -> T {
        guard values.count == 1 else {
            throw PostgresError(code: .decoding, message: "expected one column, the result has \(values.count)")
        }
        return try decode(type, at: 0)
    }

    /// Decodes the column at `position`. Internal: callers name their columns, so a statement's
    /// select list can change without a decode elsewhere silently reading the wrong column.
    func decode<T: PostgresDecodable>(_ type: T.Type = T.self, at position: Int) throws(PostgresError) -> T {
        guard values.indices.contains(position) else {
            throw PostgresError(code: .decoding, message: "no column \(position) in the result")
        }
        guard let text = values[position] else { return try T.decodeNull() }
        return try T.decode(postgresText: text)
    }
}
