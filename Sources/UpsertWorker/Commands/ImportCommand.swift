import ArgumentParser
import CommandLineSupport
import Foundation
import JSON
import JobQueue
import Postgres
import TextForms

/// `upsert-worker import status|failures ID`: an import's progress, and its failed rows back
/// in the input's format (docs/contract.md section 7).
struct ImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Follow an import: its progress, and its failed rows, ready to fix.",
        subcommands: [ImportStatusCommand.self, ImportFailuresCommand.self])
}

/// The id argument of both subcommands.
func importID(_ text: String) throws -> UUID {
    guard let id = UUIDText.parse(text) else { throw CLIError.usage("\(text) is not an import id (a UUID)") }
    return id
}

struct ImportStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "An import's jobs by state, pace, time left, errors by code and failing lines.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The import id that enqueue printed.")
    var id: String

    @Option(help: "How many failing lines to list.")
    var lines: Int = 20

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() async throws {
        let database = try global.prepare()
        let id = try importID(self.id)
        let lines = max(0, self.lines)
        let status = try await withDatabase(database) { connection in
            try await connection.run { connection in try Imports.status(id, lines: lines, on: connection) }
        }
        guard let status else { throw CLIError.failure("no import \(UUIDText.string(id))") }
        print(json ? status.json.jsonText : Self.render(status))
    }

    static func render(_ s: ImportStatus) -> String {
        let r = s.record
        func percent(_ n: Int) -> String { s.total == 0 ? "" : String(format: " (%.1f %%)", Double(n) * 100 / Double(s.total)) }
        var out = [
            "import \(UUIDText.string(r.id))",
            "  file        \(r.fileName) (\(r.format)), \(r.rowsAccepted) row(s) accepted, \(r.rowsRejected) rejected",
            "  by          \(r.createdBy), \(TimestampText.format(r.createdAt))",
            "  queue       \(r.queue), \(r.kind)" + (r.clientID.map { ", organization \(UUIDText.string($0))" } ?? ""),
            "",
            "  ready       \(s.ready)\(percent(s.ready))",
            "  running     \(s.running)\(percent(s.running))",
            "  succeeded   \(s.succeeded)\(percent(s.succeeded))",
            "  failed      \(s.failed)\(percent(s.failed))",
        ]
        if s.cancelled > 0 { out.append("  cancelled   \(s.cancelled)\(percent(s.cancelled))") }
        out.append("")
        if s.remaining == 0 {
            out.append("  done")
        } else if let left = s.secondsLeft {
            out.append(String(format: "  pace        %.0f jobs/s over the last minute; about %.0f s left", s.jobsPerSecond, left))
        } else {
            out.append("  pace        no job of this import finished in the last minute")
        }
        if !s.errorCodes.isEmpty {
            out.append("")
            out.append("  errors by code")
            for (code, n) in s.errorCodes { out.append("    \(code.padding(toLength: 30, withPad: " ", startingAt: 0)) \(n)") }
            let more = s.failed > s.failedLines.count ? " (first \(s.failedLines.count) of \(s.failed))" : ""
            out.append("  failing lines\(more): " + s.failedLines.map(String.init).joined(separator: ", "))
            out.append("  the failed rows, ready to fix: upsert-worker import failures \(UUIDText.string(r.id)) > failed.\(r.format == "csv" ? "csv" : "ndjson")")
        }
        return out.joined(separator: "\n")
    }
}

struct ImportFailuresCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failures",
        abstract: "An import's failed rows in the input's format, with error_line, error_code, error_message and error_details.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The import id that enqueue printed.")
    var id: String

    @Option(name: .shortAndLong, help: "Write to this file instead of standard output.")
    var output: String?

    func run() async throws {
        let database = try global.prepare()
        let id = try importID(self.id)
        let output = self.output
        let written = try await withDatabase(database) { connection in
            try await connection.run { connection -> Int in
                guard let record = try Imports.record(id, on: connection) else {
                    throw CLIError.failure("no import \(UUIDText.string(id))")
                }
                var writer = try ErrorRowWriter(
                    path: output, format: record.format == "csv" ? .csv : .ndjson, header: record.columns)
                var count = 0
                try Imports.failures(record, on: connection) { failures in
                    for failure in failures {
                        try writer.write(
                            payload: failure.payload, line: failure.line, code: failure.error["code"]?.stringValue ?? "",
                            message: failure.error["message"]?.stringValue ?? "",
                            details: Imports.flatten(details: failure.error["details"]))
                    }
                    count += failures.count
                }
                try writer.finish()
                return count
            }
        }
        FileHandle.standardError.write(Data("upsert-worker: \(written) failed row(s)\(output.map { " written to \($0)" } ?? "")\n".utf8))
    }
}
