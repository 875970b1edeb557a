import ContactDomain
import Foundation
import JSON

/// Reads the payloads for `upsert-worker enqueue`, checking the whole input before anything
/// is written: every problem comes back with its line number.
enum InputReader {
    enum Format: String {
        case ndjson, csv
    }

    struct Problem: CustomStringConvertible {
        let line: Int
        let message: String
        var description: String { "line \(line): \(message)" }
    }

    /// One JSON object per line; blank lines are skipped.
    static func ndjson(_ data: [UInt8]) -> (payloads: [(line: Int, payload: JSONValue)], problems: [Problem]) {
        var payloads: [(Int, JSONValue)] = []
        var problems: [Problem] = []
        var lineNumber = 0
        var start = 0
        let count = data.count
        while start < count {
            var end = start
            while end < count, data[end] != 0x0A { end += 1 }
            lineNumber += 1
            var slice = data[start..<end]
            if slice.last == 0x0D { slice = slice.dropLast() }
            start = end + 1
            if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            do {
                let value = try JSONValue.parse(slice)
                guard case .object = value else {
                    problems.append(Problem(line: lineNumber, message: "not a JSON object (\(value.typeName))"))
                    continue
                }
                if let number = value.firstNumberOutOfPostgresRange {
                    problems.append(
                        Problem(line: lineNumber, message: "number \(number.text.prefix(20)) is too large for PostgreSQL"))
                    continue
                }
                payloads.append((lineNumber, value))
            } catch {
                problems.append(Problem(line: lineNumber, message: "invalid JSON: \(error)"))
            }
        }
        return (payloads, problems)
    }

    /// CSV (RFC 4180) with the payload's field names as headers; see ``ContactCSV``.
    static func csv(_ data: [UInt8]) -> (payloads: [(line: Int, payload: JSONValue)], problems: [Problem]) {
        guard let text = String(validating: data, as: UTF8.self) else {
            // Find the first invalid line to name it.
            var line = 1
            var start = 0
            for (i, byte) in data.enumerated() where byte == 0x0A {
                if String(validating: data[start..<i], as: UTF8.self) == nil { break }
                line += 1
                start = i + 1
            }
            return ([], [Problem(line: line, message: "invalid UTF-8")])
        }
        let records: [CSVRecord]
        do {
            records = try CSVParser.parse(text)
        } catch let error as CSVParser.ParseError {
            return ([], [Problem(line: error.line, message: error.message)])
        } catch {
            return ([], [Problem(line: 1, message: "\(error)")])
        }
        guard let header = records.first else { return ([], []) }
        var payloads: [(Int, JSONValue)] = []
        var problems: [Problem] = []
        for record in records.dropFirst() {
            if record.fields.count == 1, record.fields[0].isEmpty { continue }
            guard record.fields.count == header.fields.count else {
                problems.append(
                    Problem(
                        line: record.line,
                        message: "\(record.fields.count) fields where the header has \(header.fields.count)"))
                continue
            }
            switch ContactCSV.payload(headers: header.fields, fields: record.fields) {
            case .success(let payload) where payload.firstNumberOutOfPostgresRange != nil:
                problems.append(Problem(line: record.line, message: "a number is too large for PostgreSQL"))
            case .success(let payload): payloads.append((record.line, payload))
            case .failure(let error): problems.append(Problem(line: record.line, message: error.message))
            }
        }
        return (payloads, problems)
    }
}

struct CSVRecord {
    let line: Int
    let fields: [String]
}

/// An RFC 4180 CSV parser: quoted fields, doubled quotes, line breaks inside quotes, LF or CRLF.
enum CSVParser {
    struct ParseError: Error {
        let line: Int
        let message: String
    }

    static func parse(_ text: String) throws -> [CSVRecord] {
        var records: [CSVRecord] = []
        var fields: [String] = []
        var field = ""
        var inQuotes = false
        var line = 1
        var recordLine = 1
        var afterQuote = false
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        func next() -> Unicode.Scalar? {
            if let p = pending {
                pending = nil
                return p
            }
            return iterator.next()
        }
        while let c = next() {
            if inQuotes {
                if c == "\"" {
                    if let n = next() {
                        if n == "\"" {
                            field.unicodeScalars.append("\"")
                        } else {
                            inQuotes = false
                            afterQuote = true
                            pending = n
                        }
                    } else {
                        inQuotes = false
                        afterQuote = true
                    }
                } else {
                    if c == "\n" { line += 1 }
                    if c == "\0" { throw ParseError(line: line, message: "NUL character") }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case ",":
                fields.append(field)
                field = ""
                afterQuote = false
            case "\r":
                continue
            case "\n":
                fields.append(field)
                records.append(CSVRecord(line: recordLine, fields: fields))
                fields = []
                field = ""
                afterQuote = false
                line += 1
                recordLine = line
            case "\"":
                guard field.isEmpty, !afterQuote else {
                    throw ParseError(line: line, message: "a quote inside an unquoted field")
                }
                inQuotes = true
            case "\0":
                throw ParseError(line: line, message: "NUL character")
            default:
                if afterQuote { throw ParseError(line: line, message: "text after a closing quote") }
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw ParseError(line: recordLine, message: "unterminated quoted field") }
        if !field.isEmpty || !fields.isEmpty || afterQuote {
            fields.append(field)
            records.append(CSVRecord(line: recordLine, fields: fields))
        }
        return records
    }
}
