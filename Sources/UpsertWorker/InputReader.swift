import ContactDomain
import Foundation
import JSON

/// Reads the payloads of `upsert-worker enqueue` from a file, a megabyte at a time: memory
/// stays the same for a hundred rows or five million. Each row comes with its line number, or
/// with what is wrong with it.
struct InputReader {
    enum Format: String {
        case ndjson, csv
    }

    /// A row as the file wrote it: an NDJSON line's text, or a CSV record's fields.
    enum RawRow {
        case line(String)
        case fields([String])
    }

    /// A row that cannot be enqueued, with its line.
    struct Problem: Error, CustomStringConvertible {
        let line: Int
        let message: String
        var raw: RawRow? = nil
        var description: String { "line \(line): \(message)" }

        init(_ line: Int, _ message: String, raw: RawRow? = nil) {
            self.line = line
            self.message = message
            self.raw = raw
        }
    }

    typealias Row = Result<(line: Int, payload: JSONValue, raw: RawRow), Problem>

    /// Columns and top-level keys that start with this are an earlier run's error columns
    /// (`--rejects`, `import failures`): they are not part of the payload.
    static let errorPrefix = "error_"

    /// The CSV header, once the first record was read.
    var columns: [String] { header ?? [] }

    private var bytes: ByteSource
    private let format: Format
    private var header: [String]?
    /// Which header columns feed the payload (not an earlier run's error columns).
    private var payloadColumns: [Bool] = []
    /// A CSV error that breaks the file's structure ends the reading.
    private var broken = false

    init(path: String, format: Format) throws {
        self.bytes = try ByteSource(path: path)
        self.format = format
    }

    /// The next row, or nil at the end of the input.
    mutating func next() -> Row? {
        switch format {
        case .ndjson: return nextJSONLine()
        case .csv: return nextCSVRow()
        }
    }

    // MARK: NDJSON

    /// One JSON object per line; blank lines are skipped.
    private mutating func nextJSONLine() -> Row? {
        while let (line, text) = bytes.nextLine() {
            if text.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let raw = RawRow.line(String(decoding: text, as: UTF8.self))
            do {
                let value = try JSONValue.parse(text)
                guard case .object(var members) = value else {
                    return .failure(.init(line, "not a JSON object (\(value.typeName))", raw: raw))
                }
                if let number = value.firstNumberOutOfPostgresRange {
                    return .failure(.init(line, "number \(number.text.prefix(20)) is too large for PostgreSQL", raw: raw))
                }
                for key in members.keys where key.hasPrefix(Self.errorPrefix) { members[key] = nil }
                return .success((line, .object(members), raw))
            } catch {
                return .failure(.init(line, "invalid JSON: \(error)", raw: raw))
            }
        }
        return nil
    }

    // MARK: CSV

    /// CSV (RFC 4180) with the payload's field names as headers; see ``ContactCSV``.
    private mutating func nextCSVRow() -> Row? {
        while !broken {
            let record: CSVRecord
            do {
                guard let next = try CSVParser.nextRecord(from: &bytes) else { return nil }
                record = next
            } catch {
                broken = true
                return .failure(.init(error.line, error.message))
            }
            var fields: [String] = []
            fields.reserveCapacity(record.fields.count)
            for field in record.fields {
                guard let text = String(validating: field, as: UTF8.self) else {
                    return .failure(.init(record.line, "invalid UTF-8"))
                }
                fields.append(text)
            }
            guard let header else {
                self.header = fields
                self.payloadColumns = fields.map { !$0.trimmingCharacters(in: .whitespaces).hasPrefix(Self.errorPrefix) }
                continue
            }
            if fields.count == 1, fields[0].isEmpty { continue }
            let raw = RawRow.fields(fields)
            guard fields.count == header.count else {
                return .failure(.init(record.line, "\(fields.count) fields where the header has \(header.count)", raw: raw))
            }
            let kept = payloadColumns.indices.filter { payloadColumns[$0] }
            let payload =
                kept.count == header.count
                ? ContactCSV.payload(headers: header, fields: fields)
                : ContactCSV.payload(headers: kept.map { header[$0] }, fields: kept.map { fields[$0] })
            switch payload {
            case .success(let payload) where payload.firstNumberOutOfPostgresRange != nil:
                return .failure(.init(record.line, "a number is too large for PostgreSQL", raw: raw))
            case .success(let payload): return .success((record.line, payload, raw))
            case .failure(let error): return .failure(.init(record.line, error.message, raw: raw))
            }
        }
        return nil
    }
}

/// A file's bytes, read a chunk at a time, with the line number of the next byte.
struct ByteSource {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var position = 0
    private var atEnd = false
    /// The line of the next byte (1-based).
    private(set) var line = 1
    static let chunk = 1 << 20

    init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw CocoaError(.fileReadNoSuchFile) }
        self.handle = handle
    }

    /// Reads more when fewer than one byte is left; false at the end of the file.
    private mutating func fill() -> Bool {
        if position < buffer.count { return true }
        guard !atEnd else { return false }
        let data = handle.readData(ofLength: Self.chunk)
        if data.isEmpty {
            atEnd = true
            return false
        }
        buffer = [UInt8](data)
        position = 0
        return true
    }

    /// The next byte, counting lines.
    mutating func next() -> UInt8? {
        guard fill() else { return nil }
        let byte = buffer[position]
        position += 1
        if byte == 0x0A { line += 1 }
        return byte
    }

    /// The next line without its line break (and a CR before it), with its number.
    mutating func nextLine() -> (line: Int, text: [UInt8])? {
        guard fill() else { return nil }
        let number = line
        var text: [UInt8] = []
        while fill() {
            if let end = buffer[position...].firstIndex(of: 0x0A) {
                text += buffer[position..<end]
                position = end + 1
                line += 1
                if text.last == 0x0D { text.removeLast() }
                return (number, text)
            }
            text += buffer[position...]
            position = buffer.count
        }
        if text.last == 0x0D { text.removeLast() }
        return (number, text)
    }
}

struct CSVRecord {
    let line: Int
    let fields: [[UInt8]]
}

/// An RFC 4180 CSV parser over bytes: quoted fields, doubled quotes, line breaks inside quotes,
/// LF or CRLF. UTF-8 never uses the bytes of `"`, `,`, CR or LF inside a character, so the
/// fields are cut on bytes and decoded afterwards.
enum CSVParser {
    struct ParseError: Error {
        let line: Int
        let message: String
    }

    /// The next record, or nil at the end of the input.
    static func nextRecord(from bytes: inout ByteSource) throws(ParseError) -> CSVRecord? {
        var fields: [[UInt8]] = []
        var field: [UInt8] = []
        var inQuotes = false
        var afterQuote = false
        var started = false
        let recordLine = bytes.line
        while let byte = bytes.next() {
            started = true
            if inQuotes {
                switch byte {
                case 0x22:  // a quote: doubled, or the end of the quoted part
                    inQuotes = false
                    afterQuote = true
                case 0x00:
                    throw ParseError(line: bytes.line, message: "NUL character")
                default:
                    field.append(byte)
                }
                continue
            }
            switch byte {
            case 0x22:
                if afterQuote {
                    field.append(0x22)  // "" inside a quoted field
                    inQuotes = true
                    afterQuote = false
                } else if field.isEmpty {
                    inQuotes = true
                } else {
                    throw ParseError(line: bytes.line, message: "a quote inside an unquoted field")
                }
            case 0x2C:
                fields.append(field)
                field = []
                afterQuote = false
            case 0x0D:
                continue
            case 0x0A:
                fields.append(field)
                return CSVRecord(line: recordLine, fields: fields)
            case 0x00:
                throw ParseError(line: bytes.line, message: "NUL character")
            default:
                if afterQuote { throw ParseError(line: bytes.line, message: "text after a closing quote") }
                field.append(byte)
            }
        }
        if inQuotes { throw ParseError(line: recordLine, message: "unterminated quoted field") }
        guard started else { return nil }
        fields.append(field)
        return CSVRecord(line: recordLine, fields: fields)
    }
}
