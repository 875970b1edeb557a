import ArgumentParser
import CommandLineSupport
import ContactDomain
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
        // First pass: every row checked.
        let rows = try Self.checkEveryRow(path: path, format: chosenFormat, named: file)

        // Second pass: the same rows again, 10,000 at a time, all in one transaction.
        let progress = Progress(total: rows)
        let (queue, kind, apiKey, priority, file) = (self.queue, self.kind, self.apiKey, self.priority, self.file)
        let enqueued = try await withDatabase(database) { [client] connection in
            try await connection.withTransaction { connection in
                var clientID = client
                if let apiKey {
                    guard let resolved = try APIKeys.client(forKey: apiKey, on: connection) else {
                        throw CLIError.failure("the API key is unknown or revoked; nothing was enqueued")
                    }
                    clientID = resolved
                }
                var reader = try InputReader(path: path, format: chosenFormat)
                var total = 0
                var done = 0
                var payloads: [JSONValue] = []
                payloads.reserveCapacity(Self.chunk)
                func flush(_ connection: isolated PostgresConnection) throws {
                    guard !payloads.isEmpty else { return }
                    let jobs = try ContactJobs.newJobs(
                        payloads, queue: queue, kind: kind, clientID: clientID, priority: priority, on: connection)
                    total += try JobProducer.enqueueMany(jobs, on: connection)
                    done += payloads.count
                    payloads.removeAll(keepingCapacity: true)
                    progress.update(done)
                }
                while let row = reader.next() {
                    // The first pass found no problem; a file changed since then is refused.
                    guard case .success(let (_, payload)) = row else {
                        throw CLIError.failure("\(file) changed while it was being enqueued; nothing was enqueued")
                    }
                    payloads.append(payload)
                    if payloads.count == Self.chunk { try flush(connection) }
                }
                try flush(connection)
                return total
            }
        }
        progress.finish()
        print("enqueued \(enqueued) job(s) into \(queue)")
    }
}

extension EnqueueCommand {
    /// The first pass: every row checked, nothing kept but the count and the first problems.
    /// Returns the number of rows; with any problem, reports them and throws.
    static func checkEveryRow(path: String, format: InputReader.Format, named file: String) throws -> Int {
        var reader = try InputReader(path: path, format: format)
        var rows = 0
        var problems: [InputReader.Problem] = []
        var problemCount = 0
        while let row = reader.next() {
            switch row {
            case .success: rows += 1
            case .failure(let problem):
                problemCount += 1
                if problems.count < 20 { problems.append(problem) }
            }
        }
        guard problemCount == 0 else {
            for problem in problems {
                FileHandle.standardError.write(Data("upsert-worker: \(file): \(problem)\n".utf8))
            }
            if problemCount > problems.count {
                FileHandle.standardError.write(Data("upsert-worker: … and \(problemCount - problems.count) more\n".utf8))
            }
            throw CLIError.failure("\(problemCount) invalid line(s) in \(file); nothing was enqueued")
        }
        return rows
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
