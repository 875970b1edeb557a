import ArgumentParser
import CommandLineSupport
import ContactDomain
import Crypto
import Foundation
import JSON
import JobQueue
import Logging
import Migrations
import Postgres
import TextForms

struct EnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Bulk-enqueues payloads from NDJSON or CSV; the whole input is checked before anything is written, in one transaction, in memory that does not grow with the input.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The input file, or - for standard input (the default).")
    var file: String = "-"

    @Option(help: "ndjson or csv (default: csv for a .csv file, ndjson otherwise).")
    var format: String?

    @Option(name: .customLong("api-key"), help: "The organization's API key; its client becomes the jobs' client_id.")
    var apiKey: String?

    @Option(name: .customLong("client-id"), help: "The organization (a trusted producer's choice).")
    var clientID: String?

    @Option(help: "The queue to put the jobs in.")
    var queue: String = "contacts"

    @Option(help: "The job kind.")
    var kind: String = "contact.upsert"

    @Option(help: "The jobs' priority (smaller runs first). Bulk imports default to 10, behind live traffic at 0.")
    var priority: Int16 = 10

    @Flag(name: .customLong("dry-run"), help: "Check every row and report; enqueue nothing.")
    var dryRun = false

    @Flag(name: .customLong("skip-invalid"), help: "Enqueue the good rows; write the bad ones, with their reasons, to --rejects.")
    var skipInvalid = false

    @Option(help: "Where to write the bad rows, in the input's format plus error columns (with --skip-invalid or --dry-run).")
    var rejects: String?

    @Flag(name: .customLong("no-check"), help: "Check only the JSON or CSV syntax; the worker reports the rest on each job.")
    var noCheck = false

    @Flag(help: "Key each job by its organization and payload: enqueueing a row again that is unchanged adds no job.")
    var idempotent = false

    func validate() throws {
        if skipInvalid, rejects == nil { throw ValidationError("--skip-invalid needs --rejects FILE") }
        if rejects != nil, !skipInvalid, !dryRun { throw ValidationError("--rejects goes with --skip-invalid or --dry-run") }
    }

    func run() async throws {
        let database = try global.prepare()
        if apiKey != nil, clientID != nil { throw CLIError.usage("--api-key and --client-id exclude each other") }
        var client: UUID? = nil
        if let clientID {
            guard let id = UUID(uuidString: clientID) else { throw CLIError.usage("--client-id is not a UUID") }
            client = id
        }
        let chosenFormat: InputReader.Format
        if let format {
            guard let parsed = InputReader.Format(rawValue: format) else {
                throw CLIError.usage("--format must be ndjson or csv")
            }
            chosenFormat = parsed
        } else {
            chosenFormat = file.lowercased().hasSuffix(".csv") ? .csv : .ndjson
        }
        // Standard input is read twice like a file: spooled to a temporary file first (disk,
        // not memory).
        let spool = file == "-" ? try Self.spoolStandardInput() : nil
        defer { if let spool { try? FileManager.default.removeItem(atPath: spool) } }
        let path = spool ?? file
        guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError.failure("cannot read \(file)") }

        // The organization first: an unknown or inactive one is refused before any row is read.
        let (apiKey, kind) = (self.apiKey, self.kind)
        client = try await withDatabase(database) { [client] connection in
            try await connection.run { connection in
                var resolved = client
                if let apiKey {
                    guard let id = try APIKeys.client(forKey: apiKey, on: connection) else {
                        throw CLIError.failure("the API key is unknown or revoked; nothing was enqueued")
                    }
                    resolved = id
                }
                if let id = resolved, try ContactStore.clientIsActive(id, on: connection) != true {
                    throw CLIError.failure("the organization \(UUIDText.string(id)) does not exist or is inactive; nothing was enqueued")
                }
                return resolved
            }
        }

        // First pass: every row checked, with the worker's own rules when they are contact upserts.
        let (file, rejects, checkRules) = (self.file, self.rejects, !self.noCheck && kind == "contact.upsert")
        let check = try await withDatabase(database) { [client] connection in
            try await Self.checkEveryRow(
                path: path, format: chosenFormat, named: file, rules: checkRules, clientID: client, rejects: rejects,
                on: connection)
        }
        check.report(file: file)
        if dryRun {
            print("checked \(check.rows) row(s) of \(file): \(check.rows - check.badLines.count) valid, \(check.badLines.count) invalid; nothing was enqueued (dry run)")
            if !check.badLines.isEmpty { throw CLIError.failure("\(check.badLines.count) invalid row(s) in \(file)") }
            return
        }
        if !check.badLines.isEmpty, !skipInvalid {
            throw CLIError.failure("\(check.badLines.count) invalid row(s) in \(file); nothing was enqueued")
        }
        let accepted = check.rows - check.badLines.count
        guard accepted > 0 else {
            throw CLIError.failure("no valid row in \(file); nothing was enqueued")
        }

        // Second pass: the good rows again, 10,000 at a time, all in one transaction with the import's record.
        let progress = Progress(total: accepted)
        let (queue, priority, idempotent) = (self.queue, self.priority, self.idempotent)
        let fileName = URL(fileURLWithPath: file).lastPathComponent
        let (importID, enqueued) = try await withDatabase(database) { [client] connection in
            try await connection.withTransaction { connection in
                let importID = UUID()
                let afterJobID = try Imports.begin(on: connection)
                var reader = try InputReader(path: path, format: chosenFormat)
                var bad = check.badLines.makeIterator()
                var nextBad = bad.next()
                var total = 0
                var done = 0
                var rows: [(line: Int, payload: JSONValue)] = []
                rows.reserveCapacity(Self.chunk)
                func flush(_ connection: isolated PostgresConnection) throws {
                    guard !rows.isEmpty else { return }
                    var jobs = try ContactJobs.newJobs(
                        rows.map(\.payload), queue: queue, kind: kind, clientID: client, priority: priority, on: connection)
                    for i in jobs.indices {
                        jobs[i].importID = importID
                        jobs[i].importLine = rows[i].line
                        if idempotent { jobs[i].idempotencyKey = Self.contentKey(jobs[i]) }
                    }
                    total += try JobProducer.enqueueMany(jobs, completing: ContactJobs.completeOrderingKey, on: connection)
                    done += rows.count
                    rows.removeAll(keepingCapacity: true)
                    progress.update(done)
                }
                while let row = reader.next() {
                    let line: Int
                    switch row {
                    case .success(let good): line = good.line
                    case .failure(let problem): line = problem.line
                    }
                    while let skipped = nextBad, skipped < line { nextBad = bad.next() }
                    if line == nextBad { continue }
                    // The first pass found no other problem; a file changed since then is refused.
                    guard case .success(let good) = row else {
                        throw CLIError.failure("\(file) changed while it was being enqueued; nothing was enqueued")
                    }
                    rows.append((good.line, good.payload))
                    if rows.count == Self.chunk { try flush(connection) }
                }
                try flush(connection)
                try Imports.record(
                    importID, queue: queue, kind: kind, clientID: client ?? check.onlyClient,
                    fileName: file == "-" ? "-" : fileName, format: chosenFormat.rawValue, columns: check.columns,
                    rowsAccepted: accepted, rowsRejected: check.badLines.count, afterJobID: afterJobID, on: connection)
                return (importID, total)
            }
        }
        progress.finish()
        let skipped = accepted - enqueued
        print("import \(UUIDText.string(importID)): enqueued \(enqueued) job(s) into \(queue)"
            + (skipped > 0 ? ", \(skipped) already enqueued before" : "")
            + (check.badLines.isEmpty ? "" : "; \(check.badLines.count) invalid row(s) written to \(rejects ?? "-")"))
        print("follow it with: upsert-worker import status \(UUIDText.string(importID))")
    }
}

extension EnqueueCommand {
    /// What the first pass found.
    struct Check: Sendable {
        var rows = 0
        /// The lines of the bad rows, in order.
        var badLines: [Int] = []
        /// The first problems, as printed (line, column, reason).
        var problems: [String] = []
        var problemCount = 0
        /// A CSV file's header.
        var columns: [String] = []
        /// The organization of every good row, when they share one.
        var onlyClient: UUID?

        static let shown = 100

        func report(file: String) {
            for problem in problems {
                FileHandle.standardError.write(Data("upsert-worker: \(file): \(problem)\n".utf8))
            }
            if problemCount > problems.count {
                FileHandle.standardError.write(Data("upsert-worker: … and \(problemCount - problems.count) more problem(s)\n".utf8))
            }
        }
    }

    /// The first pass: every row read and checked (with the worker's rules when `rules`),
    /// nothing kept but the bad rows' lines and the first problems; with `rejects`, the bad
    /// rows are written there with their reasons.
    static func checkEveryRow(
        path: String, format: InputReader.Format, named file: String, rules: Bool, clientID: UUID?, rejects: String?,
        on connection: PostgresConnection
    ) async throws -> Check {
        // The whole pass runs on the connection's executor: one hop, not one per row.
        try await connection.run { connection in
            try await checkEveryRow(
                path: path, format: format, named: file, rules: rules, clientID: clientID, rejects: rejects,
                isolatedOn: connection)
        }
    }

    static func checkEveryRow(
        path: String, format: InputReader.Format, named file: String, rules: Bool, clientID: UUID?, rejects: String?,
        isolatedOn connection: isolated PostgresConnection
    ) async throws -> Check {
        var reader = try InputReader(path: path, format: format)
        var check = Check()
        let handler = ContactUpsertHandler()
        var writer: ErrorRowWriter? = nil
        var clients: Set<UUID> = []
        func note(_ text: String) {
            check.problemCount += 1
            if check.problems.count < Check.shown { check.problems.append(text) }
        }
        while let row = reader.next() {
            check.rows += 1
            if writer == nil, let rejects {
                writer = try ErrorRowWriter(path: rejects, format: format, header: reader.columns)
            }
            switch row {
            case .failure(let problem):
                check.badLines.append(problem.line)
                note(problem.description)
                try writer?.write(raw: problem.raw, line: problem.line, code: "invalid_payload", message: problem.message, details: "")
            case .success(let good):
                guard rules else { continue }
                let checked = try await handler.check(good.payload, clientID: clientID, on: connection)
                let error: ContactError
                switch checked {
                case .success(let resolved):
                    if clients.count < 2 { clients.insert(resolved) }
                    continue
                case .failure(let problems): error = problems
                }
                check.badLines.append(good.line)
                for (field, reason) in error.problems {
                    if format == .csv, let column = Self.column(for: field, in: reader.columns) {
                        note("line \(good.line), column \(column): \(reason)")
                    } else {
                        note("line \(good.line): \(field): \(reason)")
                    }
                }
                try writer?.write(
                    raw: good.raw, line: good.line, code: error.code, message: error.message,
                    details: Imports.flatten(details: error.details))
            }
        }
        try writer?.finish()
        check.columns = reader.columns
        check.onlyClient = clients.count == 1 ? clients.first : nil
        return check
    }

    /// The CSV column a problem's field came from.
    static func column(for field: String, in header: [String]) -> String? {
        let names = header.map { $0.trimmingCharacters(in: .whitespaces) }
        if names.contains(field) { return field }
        if field.hasPrefix("custom_field_values.") {
            let key = field.dropFirst("custom_field_values.".count)
            for name in ["cf.\(key)", "custom_field_values.\(key)", "custom_field_values"] where names.contains(name) {
                return name
            }
        }
        if field == "channel_identity" {
            return ["channel_phone_number", "channel_id"].first(where: names.contains)
        }
        return nil
    }

    /// `--idempotent`: the job's organization, queue, kind and payload, hashed.
    static func contentKey(_ job: NewJob) -> String {
        let text = [job.queue, job.kind, job.clientID.map(UUIDText.string) ?? "", job.payload.jsonText].joined(separator: "\u{0}")
        return "import:" + SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Rows per COPY in the second pass: what is held in memory at once.
    static let chunk = 10_000

    /// Copies standard input to a temporary file, a megabyte at a time, and returns its path.
    static func spoolStandardInput() throws -> String {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("upsert-worker-enqueue-\(UUID().uuidString)").path
        guard FileManager.default.createFile(atPath: path, contents: nil),
            let output = FileHandle(forWritingAtPath: path)
        else { throw CLIError.failure("cannot create a temporary file for standard input") }
        defer { try? output.close() }
        while true {
            let data = FileHandle.standardInput.readData(ofLength: ByteSource.chunk)
            if data.isEmpty { break }
            try output.write(contentsOf: data)
        }
        return path
    }
}

/// A progress bar on a terminal; silent otherwise.
final class Progress: Sendable {
    let total: Int
    let enabled: Bool

    init(total: Int) {
        self.total = total
        self.enabled = isatty(STDERR_FILENO) == 1 && total > 0
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let width = 30
        let filled = total == 0 ? width : done * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total)".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
