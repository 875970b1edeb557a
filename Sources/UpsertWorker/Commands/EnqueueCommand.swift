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
        abstract: "Bulk-enqueues payloads from NDJSON or CSV; the whole input is checked before anything is written.")

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
        let data: [UInt8]
        if file == "-" {
            data = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw CLIError.failure("cannot read \(file)")
            }
            data = [UInt8](contents)
        }
        let (payloads, problems) = chosenFormat == .csv ? InputReader.csv(data) : InputReader.ndjson(data)
        guard problems.isEmpty else {
            for problem in problems.prefix(20) {
                FileHandle.standardError.write(Data("upsert-worker: \(file): \(problem)\n".utf8))
            }
            if problems.count > 20 {
                FileHandle.standardError.write(Data("upsert-worker: … and \(problems.count - 20) more\n".utf8))
            }
            throw CLIError.failure("\(problems.count) invalid line(s) in \(file); nothing was enqueued")
        }
        let progress = Progress(total: payloads.count)
        let (queue, kind, apiKey, priority) = (self.queue, self.kind, self.apiKey, self.priority)
        let enqueued = try await withDatabase(database) { [client] connection in
            try await connection.withTransaction { connection in
                var clientID = client
                if let apiKey {
                    guard let resolved = try APIKeys.client(forKey: apiKey, on: connection) else {
                        throw CLIError.failure("the API key is unknown or revoked; nothing was enqueued")
                    }
                    clientID = resolved
                }
                var total = 0
                let chunk = 10_000
                var start = 0
                while start < payloads.count {
                    let end = min(start + chunk, payloads.count)
                    let jobs = try ContactJobs.newJobs(
                        payloads[start..<end].map(\.payload), queue: queue, kind: kind, clientID: clientID,
                        priority: priority, on: connection)
                    total += try JobProducer.enqueueMany(jobs, on: connection)
                    progress.update(end)
                    start = end
                }
                return total
            }
        }
        progress.finish()
        print("enqueued \(enqueued) job(s) into \(queue)")
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
