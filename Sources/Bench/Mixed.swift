import Foundation
import JSON
import JobQueue
import Logging
import Migrations
import Postgres

/// The figures of `bench --mixed`: live traffic and imports of several organizations on one
/// queue, and one person's backlog.
public struct MixedReport: Sendable {
    public var importJobs = 0
    public var lateImportJobs = 0
    public var liveJobs = 0
    public var liveRate = 0.0
    /// Enqueue-to-finish of the live jobs created while A's import lasted, in ms.
    public var liveLatencyMs: BenchReport.Percentiles?
    /// D's share of everything finished while A and D both had work.
    public var lateImportShare = 0.0
    /// Jobs finished per second while A's import lasted, all organizations together.
    public var mixedJobsPerSecond = 0.0
    /// The same import jobs drained alone.
    public var plainJobsPerSecond = 0.0
    public var hotKeyJobs = 0
    public var otherJobs = 0
    public var hotKeyJobsPerSecond = 0.0
    public var othersWithHotKeyJobsPerSecond = 0.0
    public var othersAloneJobsPerSecond = 0.0
    public var concurrency = 0
    public var batchSize = 0

    public var json: JSONValue {
        func number(_ value: Double) -> JSONValue { .number(JSONNumber((value * 100).rounded() / 100)) }
        return [
            "import_jobs": .number(JSONNumber(importJobs)), "late_import_jobs": .number(JSONNumber(lateImportJobs)),
            "live_jobs": .number(JSONNumber(liveJobs)), "live_rate_per_second": number(liveRate),
            "live_latency_ms": liveLatencyMs?.json ?? .null, "late_import_share": number(lateImportShare),
            "mixed_jobs_per_second": number(mixedJobsPerSecond), "plain_jobs_per_second": number(plainJobsPerSecond),
            "mixed_vs_plain": number(plainJobsPerSecond > 0 ? mixedJobsPerSecond / plainJobsPerSecond : 0),
            "hot_key_jobs": .number(JSONNumber(hotKeyJobs)), "other_jobs": .number(JSONNumber(otherJobs)),
            "hot_key_jobs_per_second": number(hotKeyJobsPerSecond),
            "others_with_hot_key_jobs_per_second": number(othersWithHotKeyJobsPerSecond),
            "others_alone_jobs_per_second": number(othersAloneJobsPerSecond),
            "concurrency": .number(JSONNumber(concurrency)), "batch_size": .number(JSONNumber(batchSize)),
        ]
    }

    public var table: String {
        func f(_ value: Double) -> String { String(format: "%.0f", value) }
        func ms(_ value: Double?) -> String { value.map { String(format: "%.1f", $0) } ?? "-" }
        let ratio = plainJobsPerSecond > 0 ? mixedJobsPerSecond / plainJobsPerSecond : 0
        let others = othersAloneJobsPerSecond > 0 ? othersWithHotKeyJobsPerSecond / othersAloneJobsPerSecond : 0
        return [
            "bench --mixed: concurrency \(concurrency), batch size up to \(batchSize)",
            "",
            "measure                                                  value",
            "A's import, then D's import halfway, jobs                 \(importJobs) + \(lateImportJobs)",
            "live jobs of B and C (plain INSERT, Poisson), jobs        \(liveJobs) at \(f(liveRate))/s",
            "live enqueue-to-finish during A's import, ms p50/p99/max  \(ms(liveLatencyMs?.p50)) / \(ms(liveLatencyMs?.p99)) / \(ms(liveLatencyMs?.max))",
            "D's share of throughput while A and D both had work      \(String(format: "%.0f %%", lateImportShare * 100))",
            "throughput during A's import, all jobs/s                 \(f(mixedJobsPerSecond))",
            "plain drain of the same imports, jobs/s                  \(f(plainJobsPerSecond))",
            "mixed / plain                                            \(String(format: "%.2f", ratio))",
            "one person's \(hotKeyJobs) jobs (one ordering key), jobs/s      \(f(hotKeyJobsPerSecond))",
            "\(otherJobs) other jobs beside it / alone, jobs/s          \(f(othersWithHotKeyJobsPerSecond)) / \(f(othersAloneJobsPerSecond))   (\(String(format: "%.2f", others)))",
        ].joined(separator: "\n")
    }
}

extension Bench {
    /// `bench --mixed`: organization A imports `importJobs` contacts; B and C send live jobs one
    /// at a time by plain INSERT without client_id (Poisson, `liveRate` a second in all); D
    /// starts a `lateImportJobs` import when half of A's is done. Then one person's
    /// `hotKeyJobs` jobs at the head of the queue beside `otherJobs` others, and the others alone.
    public static func mixed(
        server: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void
    ) async throws -> MixedReport {
        let name = "upsert_mixed_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PostgresConnection.connect(server, logger: logger)
        try await admin.run { c in try c.executeScript("CREATE DATABASE \(name)") }
        do {
            let report = try await measureMixed(
                server.with(database: name), options: options, handlers: handlers, logger: logger, progress: progress)
            try await admin.run { c in try c.executeScript("DROP DATABASE \(name) WITH (FORCE)") }
            return report
        } catch {
            try? await admin.run { c in try c.executeScript("DROP DATABASE \(name) WITH (FORCE)") }
            throw error
        }
    }

    static func measureMixed(
        _ database: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void
    ) async throws -> MixedReport {
        let orgs = (a: Workload(10, name: "A"), b: Workload(11, name: "B"), c: Workload(12, name: "C"), d: Workload(13, name: "D"))
        let c = try await PostgresConnection.connect(database, logger: logger)
        try await c.run { c in
            _ = try await Schema.migrate(c, logger: logger)
            for org in [orgs.a, orgs.b, orgs.c, orgs.d] { try org.load(on: c) }
            try orgs.a.loadBackground(customers: options.backgroundCustomers, on: c)
        }
        var report = MixedReport()
        report.importJobs = options.mixedImportJobs
        report.lateImportJobs = options.mixedImportJobs / 10
        report.concurrency = options.concurrency
        report.batchSize = options.batchSize
        let importA = orgs.a.payloads(report.importJobs, seed: 1)
        let importD = orgs.d.payloads(report.lateImportJobs, seed: 4)

        progress("mixed: plain drain of \(importA.count + importD.count) import jobs")
        try await enqueueImport(importA, org: orgs.a, on: c)
        try await enqueueImport(importD, org: orgs.d, on: c)
        try await settle(c)
        report.plainJobsPerSecond = try await timedRate(importA.count + importD.count) {
            try await drain(["contacts"], database, options, handlers, logger)
        }
        try await resetAll(c, [orgs.a, orgs.b, orgs.c, orgs.d])

        progress("mixed: A's import, live traffic of B and C, D's import halfway")
        try await enqueueImport(importA, org: orgs.a, on: c)
        try await settle(c)
        let worker = JobWorker(
            configuration: workerConfiguration(["contacts"], options, drain: false), database: database,
            handlers: handlers, logger: logger)
        let running = Task { try await worker.run() }
        let live = Task {
            try await liveTraffic(
                [orgs.b.payloads(20_000, seed: 2), orgs.c.payloads(20_000, seed: 3)], rate: options.mixedLiveRate,
                database: database, logger: logger)
        }
        var dStarted = false
        while true {
            let left = try await c.run { c in
                try c.query(
                    "SELECT count(*) AS n FROM queue.jobs WHERE fairness_key = $1 AND state IN ('ready', 'running')",
                    [orgs.a.client.uuidString.lowercased()])[0].decode(Int.self, "n")
            }
            if !dStarted, left <= importA.count / 2 {
                dStarted = true
                try await enqueueImport(importD, org: orgs.d, on: c)
            }
            if left == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        live.cancel()
        _ = try? await live.value
        while try await c.run({ c in
            try c.query("SELECT count(*) AS n FROM queue.jobs WHERE state IN ('ready', 'running')")[0].decode(Int.self, "n")
        }) > 0 {
            try await Task.sleep(for: .milliseconds(100))
        }
        worker.stop()
        try await running.value
        try await mixedFigures(&report, orgs: orgs, on: c)

        progress("hot key: \(options.hotKeyJobs) jobs of one person beside \(options.jobs) others, then the others alone")
        try await resetAll(c, [orgs.a, orgs.b, orgs.c, orgs.d])
        report.hotKeyJobs = options.hotKeyJobs
        report.otherJobs = options.jobs
        let others = orgs.b.payloads(options.jobs, seed: 5)
        try await enqueueImport(others, org: orgs.b, on: c)
        try await settle(c)
        report.othersAloneJobsPerSecond = try await timedRate(others.count) {
            try await drain(["contacts"], database, options, handlers, logger)
        }
        try await resetAll(c, [orgs.a, orgs.b, orgs.c, orgs.d])
        let hot = (0..<options.hotKeyJobs).map { i -> JSONValue in
            [
                "channel": "whatsapp", "channel_phone_number": .string(orgs.b.channels[0].phone ?? ""),
                "contact_phone_number": "+56 9 8765 4321", "contact_name": .string("Hot Person \(i)"),
                "meta_data": ["message": .number(JSONNumber(i))],
            ]
        }
        try await enqueueImport(hot, org: orgs.b, on: c)
        try await enqueueImport(others, org: orgs.b, on: c)
        try await settle(c)
        try await drain(["contacts"], database, options, handlers, logger)
        let (hotSeconds, otherSeconds) = try await c.run { c in
            let row = try c.query(
                """
                SELECT extract(epoch FROM max(finished_at) FILTER (WHERE payload ->> 'contact_phone_number' = '+56 9 8765 4321')
                               - min(started_at))::float8 AS hot,
                       extract(epoch FROM max(finished_at) FILTER (WHERE payload ->> 'contact_phone_number' <> '+56 9 8765 4321')
                               - min(started_at))::float8 AS others
                FROM queue.jobs
                """)[0]
            return (try row.decode(Double.self, "hot"), try row.decode(Double.self, "others"))
        }
        report.hotKeyJobsPerSecond = Double(hot.count) / max(hotSeconds, 1e-6)
        report.othersWithHotKeyJobsPerSecond = Double(others.count) / max(otherSeconds, 1e-6)
        await c.close()
        return report
    }

    /// An import as `upsert-worker enqueue --client-id` does it: one transaction, the bulk priority.
    static func enqueueImport(_ payloads: [JSONValue], org: Workload, on c: PostgresConnection) async throws {
        let jobs = payloads.map {
            NewJob.withDefaultOrderingKey(
                queue: "contacts", kind: "contact.upsert", payload: $0, clientID: org.client, priority: 10)
        }
        try await c.run { c in
            try await c.withTransaction { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
        }
    }

    /// Webhook ingesters: one plain INSERT per event, no client_id, at Poisson times; returns
    /// how many were sent when cancelled.
    static func liveTraffic(_ streams: [[JSONValue]], rate: Double, database: PostgresConfiguration, logger: Logger)
        async throws -> Int
    {
        let c = try await PostgresConnection.connect(database, logger: logger)
        var random = SeededGenerator(state: 99)
        var sent = 0
        var next = ContinuousClock.now
        while !Task.isCancelled {
            let gap = -log(max(1e-9, Double.random(in: 0..<1, using: &random))) / rate
            next += .milliseconds(Int64(gap * 1000))
            if next > ContinuousClock.now { try? await Task.sleep(until: next) }
            if Task.isCancelled { break }
            let stream = streams[sent % streams.count]
            let payload = stream[(sent / streams.count) % stream.count]
            try await c.run { c in try c.execute("INSERT INTO queue.jobs (payload) VALUES ($1::jsonb)", [payload]) }
            sent += 1
        }
        await c.close()
        return sent
    }

    static func mixedFigures(
        _ report: inout MixedReport, orgs: (a: Workload, b: Workload, c: Workload, d: Workload), on c: PostgresConnection
    ) async throws {
        let (a, d) = (orgs.a.client.uuidString.lowercased(), orgs.d.client.uuidString.lowercased())
        let live = [orgs.b.client.uuidString.lowercased(), orgs.c.client.uuidString.lowercased()]
        let figures = try await c.run { c in
            try c.query(
                """
                WITH a AS (SELECT min(started_at) AS first, max(finished_at) AS last FROM queue.jobs WHERE fairness_key = $1),
                     d AS (SELECT min(created_at) AS first, max(finished_at) AS last FROM queue.jobs WHERE fairness_key = $2),
                     both_busy AS (SELECT d.first AS first, least(a.last, d.last) AS last FROM a, d)
                SELECT extract(epoch FROM a.last - a.first)::float8 AS a_seconds,
                       (SELECT count(*) FROM queue.jobs j, a WHERE j.finished_at BETWEEN a.first AND a.last) AS a_window_jobs,
                       (SELECT count(*) FROM queue.jobs j, both_busy w
                        WHERE j.fairness_key = $2 AND j.finished_at BETWEEN w.first AND w.last) AS d_jobs,
                       (SELECT count(*) FROM queue.jobs j, both_busy w WHERE j.finished_at BETWEEN w.first AND w.last) AS both_jobs,
                       (SELECT count(*) FROM queue.jobs WHERE fairness_key = ANY($3::text[])) AS live_jobs,
                       (SELECT extract(epoch FROM max(created_at) - min(created_at))::float8 FROM queue.jobs
                        WHERE fairness_key = ANY($3::text[])) AS live_seconds
                FROM a
                """, [a, d, live])[0]
        }
        let aSeconds = try figures.decode(Double.self, "a_seconds")
        report.mixedJobsPerSecond = Double(try figures.decode(Int.self, "a_window_jobs")) / max(aSeconds, 1e-6)
        let both = try figures.decode(Int.self, "both_jobs")
        report.lateImportShare = both > 0 ? Double(try figures.decode(Int.self, "d_jobs")) / Double(both) : 0
        report.liveJobs = try figures.decode(Int.self, "live_jobs")
        report.liveRate = Double(report.liveJobs) / max(try figures.decode(Double?.self, "live_seconds") ?? 0, 1e-6)
        let latencies = try await c.run { c in
            try c.query(
                """
                SELECT extract(epoch FROM j.finished_at - j.created_at)::float8 * 1000 AS ms
                FROM queue.jobs j, (SELECT min(started_at) AS first, max(finished_at) AS last FROM queue.jobs
                                    WHERE fairness_key = $1) a
                WHERE j.fairness_key = ANY($2::text[]) AND j.created_at BETWEEN a.first AND a.last
                """, [a, live]
            ).map { try $0.decode(Double.self, "ms") }
        }
        report.liveLatencyMs = latencies.isEmpty ? nil : BenchReport.Percentiles(latencies)
    }

    /// Empties the queue and removes what the bench organizations wrote.
    static func resetAll(_ c: PostgresConnection, _ orgs: [Workload]) async throws {
        try await c.run { c in
            try c.execute("DELETE FROM queue.jobs")
            for table in ["crm.customer_identifiers", "crm.contacts", "crm.customers"] {
                try c.execute("DELETE FROM \(table) WHERE client_id = ANY($1::uuid[])", [orgs.map(\.client)])
            }
            try c.executeScript("VACUUM ANALYZE crm.customer_identifiers, crm.contacts, crm.customers, queue.jobs")
        }
    }
}
