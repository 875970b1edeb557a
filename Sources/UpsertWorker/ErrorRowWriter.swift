import CommandLineSupport
import ContactDomain
import Foundation
import JSON

/// Writes rows of an import back in the input's own format, each with the error columns
/// `error_line`, `error_code`, `error_message` and `error_details` (the error's details as one
/// line), for `enqueue --rejects` and `import failures`. An operator fixes the rows in a
/// spreadsheet and enqueues the file again: the reader drops the `error_` columns.
struct ErrorRowWriter {
    static let errorColumns = ["error_line", "error_code", "error_message", "error_details"]

    let format: InputReader.Format
    /// The input's CSV header without earlier error columns (empty for NDJSON).
    let columns: [String]
    /// Which of the input's header columns are kept.
    let kept: [Int]
    private let output: FileHandle
    private var buffer = ""

    /// `path` nil or `-`: standard output.
    init(path: String?, format: InputReader.Format, header: [String]) throws {
        self.format = format
        kept = header.indices.filter { !header[$0].trimmingCharacters(in: .whitespaces).hasPrefix(InputReader.errorPrefix) }
        columns = kept.map { header[$0] }
        if let path, path != "-" {
            guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path)
            else { throw CLIError.failure("cannot write \(path)") }
            output = handle
        } else {
            output = FileHandle.standardOutput
        }
        if format == .csv { append(Self.csvLine(columns + Self.errorColumns)) }
    }

    /// A row as the file had it.
    mutating func write(raw: InputReader.RawRow?, line: Int, code: String, message: String, details: String) throws {
        let errors = [String(line), code, message, details]
        switch (format, raw) {
        case (.csv, .fields(let fields)?) where fields.count > (kept.last ?? -1):
            append(Self.csvLine(kept.map { fields[$0] } + errors))
        case (.csv, _):
            append(Self.csvLine(Array(repeating: "", count: columns.count) + errors))
        case (.ndjson, .line(let text)?):
            if case .object(let members)? = try? JSONValue.parse(text) {
                append(Self.jsonLine(members, errors))
            } else {
                append(Self.jsonLine(["error_raw": .string(text)], errors))
            }
        case (.ndjson, _):
            append(Self.jsonLine([:], errors))
        }
        try flushIfFull()
    }

    /// A row rebuilt from its job's payload.
    mutating func write(payload: JSONValue, line: Int, code: String, message: String, details: String) throws {
        let errors = [String(line), code, message, details]
        switch format {
        case .csv: append(Self.csvLine(ContactCSV.fields(headers: columns, payload: payload) + errors))
        case .ndjson: append(Self.jsonLine(payload.objectValue ?? [:], errors))
        }
        try flushIfFull()
    }

    mutating func finish() throws {
        try output.write(contentsOf: Data(buffer.utf8))
        buffer = ""
        if output !== FileHandle.standardOutput { try output.close() }
    }

    private mutating func append(_ line: String) {
        buffer += line
        buffer += "\n"
    }

    private mutating func flushIfFull() throws {
        guard buffer.utf8.count >= 1 << 20 else { return }
        try output.write(contentsOf: Data(buffer.utf8))
        buffer = ""
    }

    static func jsonLine(_ members: [String: JSONValue], _ errors: [String]) -> String {
        var members = members.filter { !$0.key.hasPrefix(InputReader.errorPrefix) || $0.key == "error_raw" }
        for (column, value) in zip(errorColumns, errors) {
            members[column] = column == "error_line" ? .number(JSONNumber(Int(value) ?? 0)) : .string(value)
        }
        return JSONValue.object(members).jsonText
    }

    /// RFC 4180: a field with a comma, quote, line break or surrounding space is quoted.
    static func csvLine(_ fields: [String]) -> String {
        fields.map { field in
            let needsQuotes = field.contains { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }
                || field.first == " " || field.last == " "
            return needsQuotes ? "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : field
        }.joined(separator: ",")
    }
}
