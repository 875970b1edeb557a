import Foundation
#if canImport(Glibc)
import Glibc
#endif
import JSON
import ContactDomain
import JobQueue
import Logging
import Migrations
import Postgres

/// What to measure; every field has a default that fits a 2-core machine in about a minute.
public struct BenchOptions: Sendable {
    /// Jobs per throughput measurement. Default: 20,000.
    public var jobs = 20_000
    /// Enqueue the contact jobs as an import (`queue.imports`, `import_id`, `import_line`).
    public var importTag = false
    /// The workers' configuration (queues and drain are the bench's own). Default: the defaults
    /// of `upsert-worker run`.
    public var worker = WorkerConfiguration()
    /// The same, as `upsert-worker run` arguments, for the worker processes of the scaling table.
    public var workerArguments: [String] = []
    /// Jobs fed one at a time to an idle worker for the latency figures. Default: 200.
    public var latencySamples = 200
    /// Worker process counts for the scaling table (empty: skip). Example: [1, 2, 4].
    public var processes: [Int] = []
    /// Concurrency of each worker process in the scaling table. Default: 2.
    public var processConcurrency = 2
    /// Finished rows to add before timing the claim again (0: skip). Example: 1,000,000.
    public var claimRows = 0
    /// No-op jobs for the memory soak (0: skip). Example: 1,000,000.
    public var soakJobs = 0
    /// Another organization's customers (each with a contact) in the CRM before the bench
    /// starts. Default: 50,000.
    public var backgroundCustomers = 50_000
    /// How many times enqueue and the contact drain are measured (the median is reported,
    /// with every round). Default: 3.
    public var rounds = 3
    /// pgbench clients for the floor (its best on a small machine, whatever the worker's
    /// concurrency). Default: 4.
    public var floorClients = 4
    /// Run the pgbench floor. Default: true.
    public var floor = true
    /// This executable, to start worker processes for the scaling table.
    public var executable: String?
    /// Keep the scratch database afterwards, for inspection. Default: false.
    public var keepDatabase = false
    /// `--mixed`: organization A's import (D's is a tenth of it). Default: 200,000.
    public var mixedImportJobs = 200_000
    /// `--mixed`: live jobs a second, B and C together. Default: 100.
    public var mixedLiveRate = 100.0
    /// `--mixed`: one person's jobs in the hot-key measurement. Default: 10,000.
    public var hotKeyJobs = 10_000
    /// A program that measures the peer (PgQueuer) on a scratch database of its own, after
    /// ours (``Bench/runPeer(_:payloads:database:options:)``). Default: none.
    public var peerCommand: String?
    /// The same PostgreSQL through a slower link (a delaying proxy): each round's contact
    /// drain runs again through it, its figure beside the loopback one. Default: none.
    public var link: PostgresConfiguration?

    public init() {}
}

/// The figures of one bench run.
public struct BenchReport: Sendable {
    public var jobs = 0
    public var concurrency = 0
    public var batchSize = 0
    public var backgroundCustomers = 0
    public var floorClients = 0
    public var enqueueJobsPerSecond = 0.0
    public var drainJobsPerSecond = 0.0
    /// Every round's figure, in order; the two above are their medians.
    public var enqueueRounds: [Double] = []
    public var drainRounds: [Double] = []
    public var drainSucceeded = 0
    public var drainFailed = 0
    public var floorJobsPerSecond: Double?
    public var noopJobsPerSecond = 0.0
    public var noopRounds: [Double] = []
    /// The contact drain through `BenchOptions.link`, each round right after the loopback one.
    public var linkDrainRounds: [Double] = []
    public var linkDescription: String?
    /// The peer with empty jobs (as its own benchmark enqueues them), then with our payloads.
    public var peers: [PeerReport] = []
    public var startLatencyMs: Percentiles?
    public var finishLatencyMs: Percentiles?
    public var claimMsEmpty: Double?
    public var claimMsWithFinished: Double?
    public var finishedRows = 0
    public var scaling: [(processes: Int, jobsPerSecond: Double)] = []
    public var soakRSSMiB: [Double] = []
    public var peakRSSMiB = 0.0
    /// WAL bytes and PostgreSQL CPU microseconds per job of each contact drain round, and of
    /// the no-op drain.
    public var drainWALBytesPerJob: [Double] = []
    public var drainCPUMicrosecondsPerJob: [Double] = []
    public var noopWALBytesPerJob: [Double] = []
    public var noopCPUMicrosecondsPerJob: [Double] = []
    /// The metadata structurer's microseconds per typical 10-key object (no database).
    public var structurerMicroseconds: Double?

    public struct Percentiles: Sendable {
        public var p50: Double
        public var p99: Double
        public var max: Double

        init(_ values: [Double]) {
            let sorted = values.sorted()
            func at(_ q: Double) -> Double {
                guard !sorted.isEmpty else { return 0 }
                return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
            }
            p50 = at(0.5)
            p99 = at(0.99)
            max = sorted.last ?? 0
        }

        var json: JSONValue { ["p50": .number(JSONNumber(p50)), "p99": .number(JSONNumber(p99)), "max": .number(JSONNumber(max))] }
    }

    /// The report as JSON (for `bench --json`).
    public var json: JSONValue {
        func number(_ value: Double?) -> JSONValue { value.map { .number(JSONNumber(($0 * 100).rounded() / 100)) } ?? .null }
        var object: [String: JSONValue] = [
            "jobs": .number(JSONNumber(jobs)), "concurrency": .number(JSONNumber(concurrency)),
            "batch_size": .number(JSONNumber(batchSize)),
            "background_customers": .number(JSONNumber(backgroundCustomers)),
            "enqueue_jobs_per_second": number(enqueueJobsPerSecond),
            "drain_jobs_per_second": number(drainJobsPerSecond),
            "drain_succeeded": .number(JSONNumber(drainSucceeded)), "drain_failed": .number(JSONNumber(drainFailed)),
            "floor_jobs_per_second": number(floorJobsPerSecond),
            "floor_clients": .number(JSONNumber(floorClients)),
            "drain_vs_floor": number(floorJobsPerSecond.map { drainJobsPerSecond / $0 }),
            "noop_jobs_per_second": number(noopJobsPerSecond),
            "start_latency_ms": startLatencyMs?.json ?? .null,
            "finish_latency_ms": finishLatencyMs?.json ?? .null,
            "claim_ms_empty": number(claimMsEmpty), "claim_ms_with_finished": number(claimMsWithFinished),
            "finished_rows": .number(JSONNumber(finishedRows)),
            "peak_rss_mib": number(peakRSSMiB),
        ]
        object["enqueue_rounds"] = .array(enqueueRounds.map { number($0) })
        object["drain_rounds"] = .array(drainRounds.map { number($0) })
        object["scaling"] = .array(scaling.map { ["processes": .number(JSONNumber($0.processes)), "jobs_per_second": number($0.jobsPerSecond)] })
        object["soak_rss_mib"] = .array(soakRSSMiB.map { number($0) })
        object["drain_wal_bytes_per_job"] = .array(drainWALBytesPerJob.map { number($0) })
        object["drain_postgres_cpu_us_per_job"] = .array(drainCPUMicrosecondsPerJob.map { number($0) })
        object["noop_rounds"] = .array(noopRounds.map { number($0) })
        object["noop_wal_bytes_per_job"] = .array(noopWALBytesPerJob.map { number($0) })
        object["noop_postgres_cpu_us_per_job"] = .array(noopCPUMicrosecondsPerJob.map { number($0) })
        if !linkDrainRounds.isEmpty {
            object["link"] = .string(linkDescription ?? "")
            object["link_drain_rounds"] = .array(linkDrainRounds.map { number($0) })
            object["link_drain_jobs_per_second"] = number(Bench.median(linkDrainRounds))
            object["link_vs_loopback"] = number(Bench.median(linkDrainRounds) / drainJobsPerSecond)
        }
        object["peers"] = .array(peers.map { peer in
            [
                "name": .string(peer.name),
                "enqueue_rounds": .array(peer.enqueueRounds.map { number($0) }),
                "drain_rounds": .array(peer.drainRounds.map { number($0) }),
                "enqueue_jobs_per_second": number(peer.enqueueJobsPerSecond),
                "drain_jobs_per_second": number(peer.drainJobsPerSecond),
                "contact_drain_vs_peer_drain": number(drainJobsPerSecond / peer.drainJobsPerSecond),
                "noop_drain_vs_peer_drain": number(noopJobsPerSecond / peer.drainJobsPerSecond),
                "enqueue_vs_peer_enqueue": number(enqueueJobsPerSecond / peer.enqueueJobsPerSecond),
            ]
        })
        object["structurer_us_per_object"] = structurerMicroseconds.map { .number(JSONNumber(($0 * 100).rounded() / 100)) } ?? .null
        return .object(object)
    }

    func medianOrNil(_ values: [Double]) -> Double? { values.isEmpty ? nil : Bench.median(values) }

    func roundsNote(_ rounds: [Double]) -> String {
        rounds.count > 1 ? "   (median of " + rounds.map { String(format: "%.0f", $0) }.joined(separator: ", ") + ")" : ""
    }

    /// The report as a table for people.
    public var table: String {
        func f(_ value: Double?) -> String { value.map { String(format: "%.0f", $0) } ?? "-" }
        func ms(_ value: Double?) -> String { value.map { String(format: "%.2f", $0) } ?? "-" }
        var lines = [
            "bench: \(jobs) jobs, concurrency \(concurrency), batch size \(batchSize), "
                + "\(backgroundCustomers) other customers in the CRM",
            "",
            "measure                                   value",
            "enqueue (COPY), jobs/s                    \(f(enqueueJobsPerSecond))\(roundsNote(enqueueRounds))",
            "drain, contact.upsert, jobs/s             \(f(drainJobsPerSecond))\(roundsNote(drainRounds))   (\(drainSucceeded) succeeded, \(drainFailed) failed)",
            "floor, plain SQL 1 job/tx (pgbench), /s   \(f(floorJobsPerSecond))   (\(floorClients) clients)",
            "drain / floor                             \(floorJobsPerSecond.map { String(format: "%.2fx", drainJobsPerSecond / $0) } ?? "-")",
            "drain, contact.upsert, WAL bytes per job  \(f(medianOrNil(drainWALBytesPerJob)))\(roundsNote(drainWALBytesPerJob))",
            "drain, contact.upsert, PostgreSQL CPU µs/job \(f(medianOrNil(drainCPUMicrosecondsPerJob)))\(roundsNote(drainCPUMicrosecondsPerJob))",
            "drain, queue.noop, jobs/s                 \(f(noopJobsPerSecond))\(roundsNote(noopRounds))",
            "drain, queue.noop, WAL bytes / CPU µs per job  \(f(medianOrNil(noopWALBytesPerJob))) / \(f(medianOrNil(noopCPUMicrosecondsPerJob)))",
            "structurer, 10-key meta_data, µs/object  \(ms(structurerMicroseconds))",
            "idle enqueue-to-start ms p50/p99/max      \(ms(startLatencyMs?.p50)) / \(ms(startLatencyMs?.p99)) / \(ms(startLatencyMs?.max))",
            "idle enqueue-to-finish ms p50/p99/max     \(ms(finishLatencyMs?.p50)) / \(ms(finishLatencyMs?.p99)) / \(ms(finishLatencyMs?.max))",
        ]
        if !linkDrainRounds.isEmpty {
            let link = Bench.median(linkDrainRounds)
            lines.append("drain over the link, contact.upsert, jobs/s \(f(link))\(roundsNote(linkDrainRounds))   (\(linkDescription ?? ""))")
            lines.append("link / loopback                           \(String(format: "%.2f", link / drainJobsPerSecond))")
        }
        for peer in peers {
            func ratio(_ ours: Double, _ theirs: Double) -> String { String(format: "%.2f", ours / theirs) }
            lines.append("peer: \(peer.name), same server")
            lines.append("  peer enqueue, jobs/s                    \(f(peer.enqueueJobsPerSecond))\(roundsNote(peer.enqueueRounds))")
            lines.append("  peer no-op drain, jobs/s                \(f(peer.drainJobsPerSecond))\(roundsNote(peer.drainRounds))")
            lines.append("  our enqueue / peer enqueue              \(ratio(enqueueJobsPerSecond, peer.enqueueJobsPerSecond))")
            lines.append("  our contact drain / peer no-op drain    \(ratio(drainJobsPerSecond, peer.drainJobsPerSecond))")
            lines.append("  our no-op drain / peer no-op drain      \(ratio(noopJobsPerSecond, peer.drainJobsPerSecond))")
        }
        if claimMsEmpty != nil {
            lines.append("claim of 10, ms: empty / \(finishedRows) finished   \(ms(claimMsEmpty)) / \(ms(claimMsWithFinished))")
        }
        for (processes, rate) in scaling {
            lines.append("drain with \(processes) worker process(es), jobs/s    \(f(rate))")
        }
        if !soakRSSMiB.isEmpty {
            lines.append("soak RSS MiB (samples)                    \(soakRSSMiB.map { String(format: "%.0f", $0) }.joined(separator: " "))")
        }
        lines.append("peak RSS MiB                              \(String(format: "%.0f", peakRSSMiB))")
        return lines.joined(separator: "\n")
    }
}

/// `upsert-bench`: a scratch database, a realistic workload, and the figures of
/// docs/performance.md, all from one run.
public enum Bench {
    public static func run(
        server: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void
    ) async throws -> BenchReport {
        var report = try await withScratchDatabase("upsert_bench", server: server, options: options, logger: logger, progress: progress) {
            try await measure($0, options: options, handlers: handlers, logger: logger, progress: progress)
        }
        if let command = options.peerCommand {
            // Twice: with empty jobs, as the peer's own benchmark enqueues them, and with the
            // payloads of our workload, so that both queues enqueue the same bytes.
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("peer-payloads-\(getpid()).ndjson")
            try Workload().payloads(options.jobs).map { $0.jsonText + "\n" }.joined().write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            for payloads in [nil, file.path] {
                progress("peer: \(command), \(options.rounds) round(s) of \(options.jobs) jobs, "
                    + (payloads == nil ? "empty" : "with our payloads") + ", on a scratch database of its own")
                report.peers.append(
                    try await withScratchDatabase("peer_bench", server: server, options: options, logger: logger, progress: progress) {
                        try runPeer(command, payloads: payloads, database: $0, options: options)
                    })
            }
        }
        return report
    }

    /// Runs `body` on a database created for it (its name generated here, never input), and
    /// drops it afterwards unless `keepDatabase`.
    static func withScratchDatabase<T>(
        _ prefix: StaticString, server: PostgresConfiguration, options: BenchOptions, logger: Logger,
        progress: @Sendable (String) -> Void, _ body: (PostgresConfiguration) async throws -> T
    ) async throws -> T {
        let name = "\(prefix)_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PostgresConnection.connect(server, logger: logger)
        try await admin.run { c in try c.executeScript("CREATE DATABASE \(name)") }
        do {
            let value = try await body(server.with(database: name))
            if options.keepDatabase {
                progress("kept the scratch database \(name)")
            } else {
                try await admin.run { c in try c.executeScript("DROP DATABASE \(name) WITH (FORCE)") }
            }
            await admin.close()
            return value
        } catch {
            try? await admin.run { c in try c.executeScript("DROP DATABASE \(name) WITH (FORCE)") }
            await admin.close()
            throw error
        }
    }

    static func measure(
        _ database: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void
    ) async throws -> BenchReport {
        var report = BenchReport()
        report.jobs = options.jobs
        report.concurrency = options.worker.concurrency
        report.batchSize = options.worker.batchSize
        report.backgroundCustomers = options.backgroundCustomers
        report.floorClients = options.floorClients
        report.structurerMicroseconds = structurerMicroseconds()
        let workload = Workload()
        let c = try await PostgresConnection.connect(database, logger: logger)
        try await c.run { c in
            _ = try await Schema.migrate(c, logger: logger)
            try c.executeScript(Floor.functionSQL)
            try workload.load(on: c)
            try workload.loadBackground(customers: options.backgroundCustomers, on: c)
        }
        let payloads = workload.payloads(options.jobs)
        try await measureRounds(
            &report, payloads, workload, database, options: options, handlers: handlers, logger: logger, progress: progress, on: c)
        try await measureOthers(
            &report, payloads, workload, database, options: options, handlers: handlers, logger: logger,
            progress: progress, on: c)
        report.peakRSSMiB = peakRSSMiB()
        await c.close()
        return report
    }

    /// Enqueue and the contact drain, `rounds` times each (medians reported).
    static func measureRounds(
        _ report: inout BenchReport, _ payloads: [JSONValue], _ workload: Workload, _ database: PostgresConfiguration,
        options: BenchOptions, handlers: [any JobHandler], logger: Logger, progress: @Sendable (String) -> Void,
        on c: PostgresConnection
    ) async throws {
        for round in 1...max(1, options.rounds) {
            if round > 1 { try await resetContacts(c, workload) }
            try await settle(c)
            progress("enqueue: COPY \(options.jobs) jobs (round \(round))")
            report.enqueueRounds.append(try await timedRate(options.jobs) {
                try await enqueue(payloads, queue: "contacts", kind: "contact.upsert", importTag: options.importTag, on: c)
            })
            try await settle(c)
            progress("drain: \(options.jobs) contact.upsert jobs (round \(round))")
            let before = try await DatabaseCost.mark(on: c)
            report.drainRounds.append(try await timedRate(options.jobs) {
                try await drain(["contacts"], database, options, handlers, logger)
            })
            let after = try await DatabaseCost.mark(on: c)
            let cost = try await DatabaseCost.between(before, after, on: c)
            progress("drain round \(round): WAL \(before.lsn) to \(after.lsn) (for pg_waldump)")
            report.drainWALBytesPerJob.append(cost.walBytes / Double(options.jobs))
            if let cpu = cost.cpuSeconds { report.drainCPUMicrosecondsPerJob.append(cpu * 1e6 / Double(options.jobs)) }
            if let link = options.link, let name = database.database {
                // The same jobs again, the workers talking to the same database through the link.
                try await resetContacts(c, workload)
                try await enqueue(payloads, queue: "contacts", kind: "contact.upsert", importTag: options.importTag, on: c)
                try await settle(c)
                progress("drain over the link: \(options.jobs) contact.upsert jobs (round \(round))")
                report.linkDrainRounds.append(try await timedRate(options.jobs) {
                    try await drain(["contacts"], link.with(database: name), options, handlers, logger)
                })
                report.linkDescription = link.description
            }
        }
        report.enqueueJobsPerSecond = median(report.enqueueRounds)
        report.drainJobsPerSecond = median(report.drainRounds)
        (report.drainSucceeded, report.drainFailed) = try await c.run { c in
            let row = try c.query(
                """
                SELECT count(*) FILTER (WHERE state = 'succeeded') AS ok, count(*) FILTER (WHERE state = 'failed') AS bad
                FROM queue.jobs WHERE queue = 'contacts'
                """)[0]
            return (try row.decode(Int.self, "ok"), try row.decode(Int.self, "bad"))
        }
    }

    /// The floor, the no-op drain, latency, scaling, the claim with many finished rows, the soak.
    static func measureOthers(
        _ report: inout BenchReport, _ payloads: [JSONValue], _ workload: Workload, _ database: PostgresConfiguration,
        options: BenchOptions, handlers: [any JobHandler], logger: Logger, progress: @Sendable (String) -> Void,
        on c: PostgresConnection
    ) async throws {
        if options.floor, let pgbench = findPgbench() {
            progress("floor: the same jobs in plain SQL through pgbench, one job per transaction")
            try await resetCRM(c, workload)
            try await enqueue(payloads, queue: "floor", kind: "contact.upsert", on: c)
            try await settle(c)
            report.floorJobsPerSecond = try runPgbench(
                pgbench, database: database, clients: options.floorClients, jobs: options.jobs)
        }

        for round in 1...max(1, options.rounds) {
            progress("no-op: \(options.jobs) queue.noop jobs (round \(round))")
            try await c.run { c in try c.execute("DELETE FROM queue.jobs WHERE queue = 'noop'") }
            try await enqueue(Array(repeating: [:], count: options.jobs), queue: "noop", kind: "queue.noop", on: c)
            try await settle(c)
            let before = try await DatabaseCost.mark(on: c)
            report.noopRounds.append(try await timedRate(options.jobs) {
                try await drain(["noop"], database, options, handlers, logger)
            })
            let cost = try await DatabaseCost.between(before, try await DatabaseCost.mark(on: c), on: c)
            report.noopWALBytesPerJob.append(cost.walBytes / Double(options.jobs))
            if let cpu = cost.cpuSeconds { report.noopCPUMicrosecondsPerJob.append(cpu * 1e6 / Double(options.jobs)) }
        }
        report.noopJobsPerSecond = median(report.noopRounds)

        progress("latency: \(options.latencySamples) jobs fed one at a time to an idle worker")
        (report.startLatencyMs, report.finishLatencyMs) = try await latency(
            workload, samples: options.latencySamples, database, handlers, logger, on: c)

        for processes in options.processes {
            guard let executable = options.executable else { break }
            progress("scaling: \(processes) worker process(es)")
            try await resetContacts(c, workload)
            try await enqueue(payloads, queue: "contacts", kind: "contact.upsert", on: c)
            try await settle(c)
            let rate = try await timedRate(options.jobs) {
                try await runProcesses(processes, executable: executable, database: database, options: options)
            }
            report.scaling.append((processes, rate))
        }

        if options.claimRows > 0 {
            progress("claim: timing claims with an empty table, then with \(options.claimRows) finished rows")
            report.finishedRows = options.claimRows
            (report.claimMsEmpty, report.claimMsWithFinished) = try await claimTimes(finishedRows: options.claimRows, on: c)
        }

        if options.soakJobs > 0 {
            progress("soak: \(options.soakJobs) queue.noop jobs, sampling RSS")
            report.soakRSSMiB = try await soak(options.soakJobs, database, options, handlers, logger, on: c)
        }
    }

    /// Before a timed phase: the queue table vacuumed and analyzed, and a checkpoint, so that
    /// no phase pays for the writes of the one before it (a checkpoint in the middle of the
    /// one-job-per-transaction floor halved it). The checkpoint needs superuser or
    /// pg_checkpoint; without either it is skipped.
    static func settle(_ c: PostgresConnection) async throws {
        try await c.run { c in
            try c.executeScript("VACUUM ANALYZE queue.jobs")
            try? c.executeScript("CHECKPOINT")
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    static func timedRate(_ count: Int, _ body: () async throws -> Void) async throws -> Double {
        let start = ContinuousClock.now
        try await body()
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return Double(count) / max(seconds, 1e-9)
    }

    static func enqueue(_ payloads: [JSONValue], queue: String, kind: String, importTag: Bool = false, on c: PostgresConnection)
        async throws
    {
        // As `upsert-worker enqueue` does (with `importTag`, also its import record and tag).
        try await c.run { c in
            try await c.withTransaction { c in
                var jobs = try ContactJobs.newJobs(payloads, queue: queue, kind: kind, on: c)
                let id = UUID()
                let after = importTag ? try Imports.begin(on: c) : 0
                if importTag {
                    for i in jobs.indices {
                        jobs[i].importID = id
                        jobs[i].importLine = i + 1
                    }
                }
                _ = try JobProducer.enqueueMany(jobs, completing: ContactJobs.completeOrderingKey, on: c)
                if importTag {
                    try Imports.record(
                        id, queue: queue, kind: kind, clientID: nil, fileName: "bench.ndjson", format: "ndjson", columns: [],
                        rowsAccepted: jobs.count, rowsRejected: 0, afterJobID: after, on: c)
                }
            }
        }
    }

    static func workerConfiguration(_ queues: [String], _ options: BenchOptions, drain: Bool) -> WorkerConfiguration {
        var configuration = options.worker
        configuration.queues = queues
        configuration.drain = drain
        return configuration
    }

    static func drain(
        _ queues: [String], _ database: PostgresConfiguration, _ options: BenchOptions, _ handlers: [any JobHandler],
        _ logger: Logger
    ) async throws {
        let worker = JobWorker(
            configuration: workerConfiguration(queues, options, drain: true), database: database, handlers: handlers,
            logger: logger)
        try await worker.run()
    }

    /// Removes what the bench organization wrote, between measurements; the background
    /// organization's rows stay, and the tables are vacuumed and analyzed as autovacuum would.
    static func resetCRM(_ c: PostgresConnection, _ workload: Workload) async throws {
        try await c.run { c in
            for table: StaticString in ["crm.customer_identifiers", "crm.contacts", "crm.customers"] {
                try c.execute("DELETE FROM \(sql: table) WHERE client_id = \(workload.client)")
            }
            try c.executeScript("VACUUM ANALYZE crm.customer_identifiers, crm.contacts, crm.customers")
        }
    }

    /// ``resetCRM(_:_:)``, and the `contacts` queue emptied, before the same jobs run again.
    static func resetContacts(_ c: PostgresConnection, _ workload: Workload) async throws {
        try await resetCRM(c, workload)
        try await c.run { c in try c.execute("DELETE FROM queue.jobs WHERE queue = 'contacts'") }
    }

    static func findPgbench() -> String? {
        let candidates = ["/usr/lib/postgresql/17/bin/pgbench", "/usr/lib/postgresql/16/bin/pgbench",
                          "/usr/lib/postgresql/15/bin/pgbench", "/usr/lib/postgresql/14/bin/pgbench", "/usr/bin/pgbench"]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func runPgbench(_ pgbench: String, database: PostgresConfiguration, clients: Int, jobs: Int) throws -> Double {
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("floor-\(getpid()).sql")
        try Floor.pgbenchScript.write(to: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: script) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: pgbench)
        let perClient = (jobs + clients - 1) / clients
        process.arguments = ["-n", "-f", script.path, "-c", String(clients), "-j", String(min(clients, 2)),
                             "-t", String(perClient), database.connectionString]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0,
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
            let tps = Double(line.dropFirst("tps = ".count).prefix(while: { $0.isNumber || $0 == "." }))
        else {
            throw BenchError(message: "pgbench failed: \(text.suffix(500))")
        }
        // Each transaction works at most one job; clients × per-client rounding may add a few empty ones.
        return tps * Double(jobs) / Double(perClient * clients)
    }

    static func latency(
        _ workload: Workload, samples: Int, _ database: PostgresConfiguration, _ handlers: [any JobHandler],
        _ logger: Logger, on c: PostgresConnection
    ) async throws -> (BenchReport.Percentiles, BenchReport.Percentiles) {
        // The worker's default settings, as `upsert-worker run` starts it.
        var configuration = WorkerConfiguration()
        configuration.queues = ["latency"]
        let worker = JobWorker(configuration: configuration, database: database, handlers: handlers, logger: logger)
        let running = Task { try await worker.run() }
        try await Task.sleep(for: .milliseconds(300))
        let payloads = workload.payloads(samples, seed: 7)
        for payload in payloads {
            try await c.run { c in
                try c.execute("INSERT INTO queue.jobs (queue, payload) VALUES ('latency', \(payload)::jsonb)")
            }
            try await Task.sleep(for: .milliseconds(15))
        }
        while try await c.run({ c in
            try c.query("SELECT count(*) AS n FROM queue.jobs WHERE queue = 'latency' AND finished_at IS NULL")[0]
                .decode(Int.self, "n")
        }) > 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        worker.stop()
        try await running.value
        let rows = try await c.run { c in
            try c.query(
                """
                SELECT extract(epoch FROM started_at - created_at) * 1000 AS start_ms,
                       extract(epoch FROM finished_at - created_at) * 1000 AS finish_ms
                FROM queue.jobs WHERE queue = 'latency'
                """
            ).map { (try $0.decode(Double.self, "start_ms"), try $0.decode(Double.self, "finish_ms")) }
        }
        return (BenchReport.Percentiles(rows.map(\.0)), BenchReport.Percentiles(rows.map(\.1)))
    }

    static func runProcesses(_ count: Int, executable: String, database: PostgresConfiguration, options: BenchOptions)
        async throws
    {
        var processes: [Process] = []
        for _ in 0..<count {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            // The bench's worker options, with the scaling table's own concurrency last (it wins).
            process.arguments = ["run", "--drain"] + options.workerArguments
                + ["--concurrency", String(options.processConcurrency), "--log-level", "error",
                   "--database-url", database.connectionString]
            try process.run()
            processes.append(process)
        }
        for process in processes {
            while process.isRunning { try await Task.sleep(for: .milliseconds(5)) }
            guard process.terminationStatus == 0 else {
                throw BenchError(message: "a worker process exited with \(process.terminationStatus)")
            }
        }
    }

    static func claimTimes(finishedRows: Int, on c: PostgresConnection) async throws -> (Double, Double) {
        func timeClaims() async throws -> Double {
            try await c.run { c in
                try c.execute("DELETE FROM queue.jobs WHERE queue = 'claimcheck'")
                try c.execute(
                    "INSERT INTO queue.jobs (queue, kind, payload) SELECT 'claimcheck', 'queue.noop', '{}' FROM generate_series(1, 2000)")
                try c.executeScript("ANALYZE queue.jobs")
                var times: [Double] = []
                for _ in 0..<100 {
                    let start = ContinuousClock.now
                    _ = try QueueStore.claim(
                        queues: ["claimcheck"], limit: 10, worker: "bench", lease: .seconds(60), on: c)
                    let elapsed = ContinuousClock.now - start
                    times.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
                }
                return BenchReport.Percentiles(times).p50
            }
        }
        let empty = try await timeClaims()
        try await c.run { c in
            try c.execute(
                """
                INSERT INTO queue.jobs (queue, kind, payload, state, attempts, finished_at)
                SELECT 'claimcheck-done', 'queue.noop', '{}', 'succeeded', 1, now() FROM generate_series(1, \(finishedRows))
                """)
            try c.executeScript("VACUUM ANALYZE queue.jobs")
        }
        let full = try await timeClaims()
        return (empty, full)
    }

    static func soak(
        _ jobs: Int, _ database: PostgresConfiguration, _ options: BenchOptions, _ handlers: [any JobHandler],
        _ logger: Logger, on c: PostgresConnection
    ) async throws -> [Double] {
        let worker = JobWorker(
            configuration: workerConfiguration(["soak"], options, drain: false), database: database, handlers: handlers,
            logger: logger)
        let running = Task { try await worker.run() }
        var samples: [Double] = []
        let chunk = 50_000
        var enqueued = 0
        while enqueued < jobs {
            let n = min(chunk, jobs - enqueued)
            try await enqueue(Array(repeating: [:], count: n), queue: "soak", kind: "queue.noop", on: c)
            enqueued += n
            // Keep the backlog bounded, so the soak measures the worker and not the table.
            while try await c.run({ c in
                try c.query("SELECT count(*) AS n FROM queue.jobs WHERE queue = 'soak' AND state <> 'succeeded'")[0]
                    .decode(Int.self, "n")
            }) > chunk {
                try await Task.sleep(for: .milliseconds(100))
            }
            if enqueued % 100_000 == 0 || enqueued == jobs { samples.append(currentRSSMiB()) }
        }
        while try await c.run({ c in
            try c.query("SELECT count(*) AS n FROM queue.jobs WHERE queue = 'soak' AND state <> 'succeeded'")[0]
                .decode(Int.self, "n")
        }) > 0 {
            try await Task.sleep(for: .milliseconds(100))
        }
        samples.append(currentRSSMiB())
        worker.stop()
        try await running.value
        return samples
    }

    static func peakRSSMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    static func currentRSSMiB() -> Double {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }
}

/// The bench could not complete a measurement.
public struct BenchError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
