import ArgumentParser
import CommandLineSupport
import ContactDomain
import Foundation
import JobQueue
import Logging
import Postgres

/// `upsert-bench`: the figures of docs/performance.md, measured on a scratch database it
/// creates and drops. A program of its own, so that the production binary carries no bench.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upsert-bench",
        abstract: "Measures enqueue, drain, no-op, latency and the plain-SQL floor on a scratch database.")

    static func main() async {
        await runAsProgram(named: "upsert-bench")
    }

    @OptionGroup var global: GlobalOptions

    @Option(help: "Jobs per throughput measurement.")
    var jobs: Int = 20_000

    @OptionGroup(title: "Worker options (as upsert-worker run takes them)") var worker: WorkerOptions

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

    @Flag(help: "Mixed traffic instead: imports of two organizations, live jobs of two others, and a hot key.")
    var mixed = false

    @Option(name: .customLong("import-jobs"), help: "With --mixed: organization A's import (D's is a tenth).")
    var importJobs: Int = 200_000

    @Option(name: .customLong("live-rate"), help: "With --mixed: live jobs a second.")
    var liveRate: Double = 100

    @Option(name: .customLong("hot-key-jobs"), help: "With --mixed: one person's jobs in the hot-key measurement.")
    var hotKeyJobs: Int = 10_000

    @Flag(name: .customLong("metrics-cost"), help: "The contact drain with metrics off and on, alternating, --rounds times each.")
    var metricsCost = false

    @Flag(name: .customLong("import-tag"), help: "Enqueue the contact jobs as an import, tagged as `enqueue` tags them.")
    var importTag = false

    @Flag(name: .customLong("structurer-cost"), help: "Only the metadata structurer's cost per typical 10-key object (no database).")
    var structurerCost = false

    @Option(
        help: ArgumentHelp(
            "Also measure the peer with this program, on the same server, after ours (scripts/peer-bench: PgQueuer).",
            valueName: "program"))
    var peer: String?

    @Option(
        name: .customLong("link-url"),
        help: ArgumentHelp(
            "The same server through a slower link (scripts/delay-proxy): each round's contact drain runs again through it.",
            valueName: "url"))
    var linkURL: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        guard latencySamples >= 1 else { throw ValidationError("--latency-samples must be at least 1") }
        guard processes.isEmpty || processes.split(separator: ",").allSatisfy({ Int($0).map { $0 > 0 } ?? false }) else {
            throw ValidationError("--processes must look like 1,2,4")
        }
    }

    func run() async throws {
        if structurerCost {
            print(String(format: "structurer, 10-key meta_data, µs/object  %.2f", Bench.structurerMicroseconds(rounds: rounds)))
            return
        }
        let database = try global.prepare()
        var options = BenchOptions()
        options.jobs = jobs
        options.importTag = importTag
        options.worker = worker.configuration()
        options.workerArguments = worker.arguments
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
        options.mixedImportJobs = importJobs
        options.mixedLiveRate = liveRate
        options.hotKeyJobs = hotKeyJobs
        options.peerCommand = peer
        if let linkURL {
            do {
                options.link = try PostgresConfiguration(linkURL)
            } catch {
                throw CLIError.usage("--link-url: \(error.description)")
            }
        }
        // The worker processes of the scaling table are the production binary, built beside this one.
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        options.executable = URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("upsert-worker").path
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let started = Date()
        let progress: @Sendable (String) -> Void = { message in
            let seconds = String(format: "%6.1f", Date().timeIntervalSince(started))
            FileHandle.standardError.write(Data("bench [\(seconds) s]: \(message)\n".utf8))
        }
        if metricsCost {
            do {
                let report = try await Bench.metricsCost(
                    server: database, options: options, handlers: [ContactUpsertHandler(), NoopHandler()], logger: logger,
                    progress: progress)
                print(report.table)
            } catch let error as PostgresError {
                throw CLIError.failure(error.description)
            }
            return
        }
        if mixed {
            do {
                let report = try await Bench.mixed(
                    server: database, options: options, handlers: [ContactUpsertHandler(), NoopHandler()], logger: logger, progress: progress)
                print(json ? report.json.jsonText : report.table)
            } catch let error as PostgresError {
                throw CLIError.failure(error.description)
            }
            return
        }
        let report: BenchReport
        do {
            report = try await Bench.run(
                server: database, options: options, handlers: [ContactUpsertHandler(), NoopHandler()], logger: logger,
                progress: progress)
        } catch let error as PostgresError {
            throw CLIError.failure(error.description)
        }
        print(json ? report.json.jsonText : report.table)
    }
}
