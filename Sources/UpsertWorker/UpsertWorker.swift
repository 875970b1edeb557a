import ArgumentParser
import Bench
import ContactDomain
import Foundation
import JSON
import TextForms
import JobQueue
import Logging
import Migrations
import Postgres
import ServiceLifecycle
import UnixSignals

/// The `upsert-worker` command line (CONTRACT.md section 7).
@main
struct UpsertWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upsert-worker",
        abstract: "Works contact.upsert jobs from a PostgreSQL queue.",
        subcommands: [
            MigrateCommand.self, RunCommand.self, EnqueueCommand.self, StatsCommand.self, RetryCommand.self,
            CancelCommand.self, PruneCommand.self, BenchCommand.self,
        ])

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("upsert-worker: \(error.message)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            var message = fullMessage(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            FileHandle.standardError.write(Data("upsert-worker: \(message)\n".utf8))
            Foundation.exit(code == .validationFailure ? 2 : 1)
        }
    }
}

/// Opens one connection for a command, turning failures into one clear line.
func connect(_ configuration: PostgresConfiguration) async throws -> PostgresConnection {
    do {
        return try await PostgresConnection.connect(configuration, logger: Logger(label: "upsert-worker"))
    } catch {
        throw CLIError.failure("cannot connect to PostgreSQL (\(configuration)): \(error.message)")
    }
}

/// Runs `body` on a fresh connection and reports database errors as one line.
func withDatabase<T: Sendable>(
    _ configuration: PostgresConfiguration, _ body: @Sendable (isolated PostgresConnection) async throws -> T
) async throws -> T {
    let connection = try await connect(configuration)
    do {
        let value = try await connection.run(body)
        await connection.close()
        return value
    } catch let error as PostgresError {
        await connection.close()
        throw CLIError.failure(error.description)
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Applies the schema; safe to run again and from several processes at once.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let database = try global.prepare()
        let applied = try await withDatabase(database) { connection in
            try await Schema.migrate(connection, logger: Logger(label: "migrate")).count
        }
        let latest = Schema.migrations.map(\.version).max() ?? 0
        print("migrate: applied \(applied) migration(s); schema at version \(latest)")
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Works jobs until SIGTERM/SIGINT (or, with --drain, until none is left).")

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("queue"), help: "A queue to serve (repeatable; default: contacts).")
    var queues: [String] = []

    @Option(help: "Batches in flight at once, each on its own connection.")
    var concurrency: Int = 4

    @Option(name: .customLong("batch-size"), help: "The most jobs claimed and run per transaction (claims adapt to what is ready).")
    var batchSize: Int = 300

    @Option(help: "Seconds a claimed job stays locked without a heartbeat.")
    var lease: Double = 60

    @Option(name: .customLong("poll-interval"), help: "Seconds between fallback polls.")
    var pollInterval: Double = 1

    @Option(name: .customLong("grace-period"), help: "Seconds in-flight jobs get to finish on shutdown.")
    var gracePeriod: Double = 30

    @Option(name: .customLong("max-retry-delay"), help: "Cap, in seconds, of the backoff between attempts.")
    var maxRetryDelay: Double = 3600

    @Option(
        name: .customLong("statement-timeout"),
        help: "Seconds a statement of the worker may run before the server cancels it (default: the lease; 0: the server's).")
    var statementTimeout: Double?

    @Option(help: "Seconds a less urgent job may wait behind more urgent ones before it gets part of each full batch (0: never).")
    var aging: Double = 60

    @Flag(help: "Exit 0 once no job is ready to run now or running.")
    var drain = false

    func validate() throws {
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 256") }
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 10000") }
        guard lease >= 1, lease.isFinite else { throw ValidationError("--lease must be at least 1 second") }
        guard pollInterval > 0, pollInterval.isFinite else { throw ValidationError("--poll-interval must be positive") }
        guard gracePeriod >= 0, gracePeriod.isFinite else { throw ValidationError("--grace-period must be >= 0") }
        guard aging >= 0, aging.isFinite else { throw ValidationError("--aging must be >= 0") }
        if let statementTimeout {
            guard statementTimeout >= 0, statementTimeout.isFinite else {
                throw ValidationError("--statement-timeout must be >= 0")
            }
        }
    }

    func run() async throws {
        let database = try global.prepare()
        let logger = Logger(label: "upsert-worker")
        // Fail fast on a configuration that can never work (wrong password, no such
        // database); anything transient is left to the worker, which retries.
        do {
            let probe = try await PostgresConnection.connect(database, logger: logger)
            await probe.close()
        } catch where !error.isTransient {
            throw CLIError.failure("cannot connect to PostgreSQL (\(database)): \(error.message)")
        } catch {
            logger.warning("PostgreSQL is not reachable yet; the worker will keep trying", metadata: ["error": "\(error)"])
        }
        var configuration = WorkerConfiguration()
        configuration.queues = queues.isEmpty ? ["contacts"] : queues
        configuration.concurrency = concurrency
        configuration.batchSize = batchSize
        configuration.lease = .milliseconds(Int64(lease * 1000))
        configuration.pollInterval = .milliseconds(Int64(pollInterval * 1000))
        configuration.shutdownGracePeriod = .milliseconds(Int64(gracePeriod * 1000))
        configuration.retryPolicy.maximum = .milliseconds(Int64(maxRetryDelay * 1000))
        configuration.drain = drain
        configuration.statementTimeout = statementTimeout.map { .milliseconds(Int64($0 * 1000)) }
        configuration.aging = aging > 0 ? .milliseconds(Int64(aging * 1000)) : nil
        let worker = JobWorker(
            configuration: configuration, database: database, handlers: Handlers.all, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(
                        service: worker, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

/// Every job kind this binary runs.
enum Handlers {
    static var all: [any JobHandler] { [ContactUpsertHandler(), NoopHandler()] }
}

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

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "The queue's state at a glance.")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let database = try global.prepare()
        let stats = try await withDatabase(database) { connection in try QueueAdmin.stats(on: connection) }
        if json {
            print(stats.json.jsonText)
            return
        }
        print(StatsTable.render(stats))
    }
}

enum StatsTable {
    static func render(_ stats: QueueAdmin.Stats) -> String {
        var lines: [[String]] = [["QUEUE", "STATE", "JOBS", "OLDEST CREATED"]]
        for count in stats.counts {
            lines.append([
                count.queue, count.state, String(count.jobs),
                count.oldestCreatedAt.map { TimestampText.format($0) } ?? "-",
            ])
        }
        let widths = (0..<4).map { column in lines.map { $0[column].count }.max() ?? 0 }
        var out = lines.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }
        if stats.counts.isEmpty { out.append("(no jobs)") }
        out.append("")
        for (queue, age) in stats.oldestReadyAgeSeconds.sorted(by: { $0.key < $1.key }) {
            out.append("oldest ready job in \(queue): \(String(format: "%.1f", age)) s")
        }
        for (queue, jobs) in stats.finishedLastMinute.sorted(by: { $0.key < $1.key }) {
            out.append("finished in the last minute in \(queue): \(jobs)")
        }
        if !stats.topErrorCodes.isEmpty {
            out.append("most frequent errors of failed jobs: "
                + stats.topErrorCodes.map { "\($0.code) (\($0.jobs))" }.joined(separator: ", "))
        }
        return out.joined(separator: "\n")
    }
}

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry", abstract: "Moves a failed or cancelled job (or every failed job) back to ready.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The job id.")
    var job: Int64?

    @Flag(help: "Every failed job.")
    var failed = false

    func run() async throws {
        guard (job != nil) != failed else { throw CLIError.usage("give exactly one of --job ID or --failed") }
        let database = try global.prepare()
        if let job {
            let done = try await withDatabase(database) { connection in try QueueAdmin.retry(job: job, on: connection) }
            guard done else { throw CLIError.failure("job \(job) does not exist or is not failed/cancelled") }
            print("job \(job) is ready again")
        } else {
            let count = try await withDatabase(database) { connection in try QueueAdmin.retryFailed(on: connection) }
            print("\(count) failed job(s) are ready again")
        }
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancels a job not yet finished.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The job id.")
    var job: Int64

    func run() async throws {
        let database = try global.prepare()
        let job = self.job
        let done = try await withDatabase(database) { connection in try QueueAdmin.cancel(job: job, on: connection) }
        guard done else { throw CLIError.failure("job \(job) does not exist or has already finished") }
        print("job \(job) cancelled")
    }
}

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Deletes finished jobs older than a duration (30s, 15m, 12h, 7d).")

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("older-than"), help: "How long ago the jobs finished: 30s, 15m, 12h, 7d.")
    var olderThan: String

    func run() async throws {
        guard let age = parseDuration(olderThan) else {
            throw CLIError.usage("--older-than must be a duration such as 30s, 15m, 12h or 7d")
        }
        let database = try global.prepare()
        let count = try await withDatabase(database) { connection in try QueueAdmin.prune(olderThan: age, on: connection) }
        print("pruned \(count) finished job(s)")
    }
}

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measures enqueue, drain, no-op, latency and the plain-SQL floor on a scratch database.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Jobs per throughput measurement.")
    var jobs: Int = 20_000

    @Option(help: "Worker batches in flight.")
    var concurrency: Int = 4

    @Option(name: .customLong("batch-size"), help: "Jobs per worker transaction.")
    var batchSize: Int = 300

    @Option(name: .customLong("latency-samples"), help: "Jobs fed one at a time to an idle worker.")
    var latencySamples: Int = 200

    @Option(help: "Worker process counts for the scaling table, e.g. 1,2,4 (empty: skip).")
    var processes: String = ""

    @Option(name: .customLong("process-concurrency"), help: "Concurrency of each worker process in the scaling table.")
    var processConcurrency: Int = 2

    @Option(name: .customLong("claim-rows"), help: "Finished rows to add before timing the claim again (0: skip).")
    var claimRows: Int = 0

    @Option(name: .customLong("soak"), help: "No-op jobs for the memory soak (0: skip).")
    var soakJobs: Int = 0

    @Option(
        name: .customLong("background-customers"),
        help: "Another organization's customers already in the CRM, so tables have a realistic size.")
    var backgroundCustomers: Int = 50_000

    @Option(help: "Times enqueue and the contact drain are measured; the median is reported, with every round.")
    var rounds: Int = 3

    @Option(name: .customLong("floor-clients"), help: "pgbench clients for the plain-SQL floor.")
    var floorClients: Int = 4

    @Flag(name: .customLong("no-floor"), help: "Skip the pgbench floor.")
    var noFloor = false

    @Flag(name: .customLong("keep-database"), help: "Keep the scratch database for inspection.")
    var keepDatabase = false

    @Flag(name: .customLong("fixed-batch-size"), help: "Claim --batch-size every time instead of adapting.")
    var fixedBatchSize = false

    @Flag(help: "Mixed traffic instead: imports of two organizations, live jobs of two others, and a hot key.")
    var mixed = false

    @Option(name: .customLong("import-jobs"), help: "With --mixed: organization A's import (D's is a tenth).")
    var importJobs: Int = 200_000

    @Option(name: .customLong("live-rate"), help: "With --mixed: live jobs a second.")
    var liveRate: Double = 100

    @Option(name: .customLong("hot-key-jobs"), help: "With --mixed: one person's jobs in the hot-key measurement.")
    var hotKeyJobs: Int = 10_000

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 256") }
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 10000") }
        guard latencySamples >= 1 else { throw ValidationError("--latency-samples must be at least 1") }
        guard processes.isEmpty || processes.split(separator: ",").allSatisfy({ Int($0).map { $0 > 0 } ?? false }) else {
            throw ValidationError("--processes must look like 1,2,4")
        }
    }

    func run() async throws {
        let database = try global.prepare()
        var options = BenchOptions()
        options.jobs = jobs
        options.concurrency = concurrency
        options.batchSize = batchSize
        options.latencySamples = latencySamples
        options.processes = processes.split(separator: ",").compactMap { Int($0) }
        options.processConcurrency = processConcurrency
        options.claimRows = claimRows
        options.soakJobs = soakJobs
        options.backgroundCustomers = backgroundCustomers
        options.rounds = rounds
        options.floorClients = floorClients
        options.floor = !noFloor
        options.keepDatabase = keepDatabase
        options.fixedBatchSize = fixedBatchSize
        options.mixedImportJobs = importJobs
        options.mixedLiveRate = liveRate
        options.hotKeyJobs = hotKeyJobs
        options.executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let started = Date()
        let progress: @Sendable (String) -> Void = { message in
            let seconds = String(format: "%6.1f", Date().timeIntervalSince(started))
            FileHandle.standardError.write(Data("bench [\(seconds) s]: \(message)\n".utf8))
        }
        if mixed {
            do {
                let report = try await Bench.mixed(
                    server: database, options: options, handlers: Handlers.all, logger: logger, progress: progress)
                print(json ? report.json.jsonText : report.table)
            } catch let error as PostgresError {
                throw CLIError.failure(error.description)
            }
            return
        }
        let report: BenchReport
        do {
            report = try await Bench.run(
                server: database, options: options, handlers: Handlers.all, logger: logger,
                progress: progress)
        } catch let error as PostgresError {
            throw CLIError.failure(error.description)
        }
        print(json ? report.json.jsonText : report.table)
    }
}
