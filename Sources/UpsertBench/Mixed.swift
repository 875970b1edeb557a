import Foundation
import JSON
import JobQueue
import Logging
import Migrations
import Postgres
import TestSupport

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
    /// Each round's figures; the report shows their medians.
    public var hotKeyRounds: [Double] = []
    public var othersWithHotKeyRounds: [Double] = []
    public var othersAloneRounds: [Double] = []
    public var hotKeyJobsPerSecond: Double { Bench.median(hotKeyRounds) }
    public var othersWithHotKeyJobsPerSecond: Double { Bench.median(othersWithHotKeyRounds) }
    public var othersAloneJobsPerSecond: Double { Bench.median(othersAloneRounds) }
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
            "hot_key_rounds": .array(hotKeyRounds.map(number)),
            "others_with_hot_key_rounds": .array(othersWithHotKeyRounds.map(number)),
            "others_alone_rounds": .array(othersAloneRounds.map(number)),
            "concurrency": .number(JSONNumber(concurrency)), "batch_size": .number(JSONNumber(batchSize)),
        ]
    }

    public var table: String {
        func f(_ value: Double) -> String { String(format: "%.0f", value) }
        func ms(_ value: Double?) -> String { value.map { String(format: "%.1f", $0) } ?? "-" }
        func rounds(_ values: [Double]) -> String { values.map(f).joined(separator: ", ") }
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
            "  rounds: one person \(rounds(hotKeyRounds)); beside \(rounds(othersWithHotKeyRounds)); alone \(rounds(othersAloneRounds))",
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
        try await withScratchDatabase("upsert_mixed", server: server, options: options, logger: logger, progress: progress) {
            try await measureMixed($0, options: options, handlers: handlers, logger: logger, progress: progress)
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
        report.concurrency = options.worker.concurrency
        report.batchSize = options.worker.batchSize

        try await measureMixedTraffic(
            &report, orgs: orgs, database, options: options, handlers: handlers, logger: logger, progress: progress, on: c)
        try await measureHotKey(
            &report, orgs: orgs, database, options: options, handlers: handlers, logger: logger, progress: progress, on: c)
        await c.close()
        return report
    }

    /// A's import drained alone, then again beside B's and C's live traffic, with D's import
    /// arriving halfway.
    static func measureMixedTraffic(
        _ report: inout MixedReport, orgs: (a: Workload, b: Workload, c: Workload, d: Workload),
        _ database: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void, on c: PostgresConnection
    ) async throws {
        let importA = orgs.a.payloads(report.importJobs, seed: 1)
        let importD = orgs.d.payloads(report.lateImportJobs, seed: 4)
        progress("mixed: plain drain of \(importA.count + importD.count) import jobs")
        try await resetAll(c, [orgs.a, orgs.b, orgs.c, orgs.d])
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
        // Watching A's progress must not load the database it measures: one index probe for
        // the head of the bulk priority (A's jobs were placed 0, 1, 2… and are claimed in
        // that order), then one for "any of A's jobs left".
        let a = orgs.a.client.uuidString.lowercased()
        while try await c.run({ c in
            try c.query(
                """
                SELECT coalesce((SELECT fair_seq FROM queue.jobs
                                 WHERE queue = 'contacts' AND priority = 10 AND state = 'ready' AND hold IS NULL
                                 ORDER BY fair_seq LIMIT 1), 1 << 62) AS head
                """)[0].decode(Int64.self, "head")
        }) < Int64(importA.count / 2) {
            try await Task.sleep(for: .milliseconds(100))
        }
        progress("mixed: half of A's import done; D's import starts")
        try await enqueueImport(importD, org: orgs.d, on: c)
        while try await c.run({ c in
            try c.query(
                """
                SELECT EXISTS (SELECT 1 FROM queue.jobs WHERE queue = 'contacts' AND priority = 10 AND fairness_key = \(a)
                               AND state = 'ready')
                    OR EXISTS (SELECT 1 FROM queue.jobs
                               WHERE state = 'running' AND locked_until IS NOT NULL AND fairness_key = \(a)) AS busy
                """)[0].decode(Bool.self, "busy")
        }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        progress("mixed: A's import done")
        live.cancel()
        _ = try? await live.value
        while try await c.run({ c in
            try c.query("SELECT EXISTS (SELECT 1 FROM queue.jobs WHERE state IN ('ready', 'running')) AS busy")[0]
                .decode(Bool.self, "busy")
        }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        worker.stop()
        try await running.value
        progress("mixed: drained; reading the figures")
        try await mixedFigures(&report, orgs: orgs, on: c)
    }

    /// One person's many jobs beside other people's, and the others alone.
    static func measureHotKey(
        _ report: inout MixedReport, orgs: (a: Workload, b: Workload, c: Workload, d: Workload),
        _ database: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void, on c: PostgresConnection
    ) async throws {
        progress("hot key: \(options.hotKeyJobs) jobs of one person beside \(options.jobs) others, and the others alone")
        report.hotKeyJobs = options.hotKeyJobs
        report.otherJobs = options.jobs
        let others = orgs.b.payloads(options.jobs, seed: 5)
        let hot = (0..<options.hotKeyJobs).map { i -> JSONValue in
            [
                "channel": "whatsapp", "channel_phone_number": .string(orgs.b.channels[0].phone ?? ""),
                "contact_phone_number": "+56 9 8765 4321", "contact_name": .string("Hot Person \(i)"),
                "meta_data": ["message": .number(JSONNumber(i))],
            ]
        }
        // Seconds from the first claim to the last finish of the jobs `which` selects.
        func span(_ which: StaticString) async throws -> Double {
            try await c.run { c in
                try c.query(
                    """
                    SELECT extract(epoch FROM max(finished_at) FILTER (WHERE \(sql: which)) - min(started_at))::float8 AS s
                    FROM queue.jobs
                    """)[0].decode(Double.self, "s")
            }
        }
        let isHot: StaticString = "payload ->> 'contact_phone_number' = '+56 9 8765 4321'"
        let isOther: StaticString = "payload ->> 'contact_phone_number' <> '+56 9 8765 4321'"
        for _ in 1...max(1, options.rounds) {
            try await resetAll(c, [orgs.a, orgs.b, orgs.c, orgs.d])
            try await enqueueImport(others, org: orgs.b, on: c)
            try await settle(c)
            try await drain(["contacts"], database, options, handlers, logger)
            report.othersAloneRounds.append(Double(others.count) / max(try await span("true"), 1e-6))
            try await resetAll(c, [orgs.a, orgs.b, orgs.c, orgs.d])
            try await enqueueImport(hot, org: orgs.b, on: c)
            try await enqueueImport(others, org: orgs.b, on: c)
            try await settle(c)
            try await drain(["contacts"], database, options, handlers, logger)
            report.hotKeyRounds.append(Double(hot.count) / max(try await span(isHot), 1e-6))
            report.othersWithHotKeyRounds.append(Double(others.count) / max(try await span(isOther), 1e-6))
        }
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
            try await c.run { c in try c.execute("INSERT INTO queue.jobs (payload) VALUES (\(payload)::jsonb)") }
            sent += 1
        }
        await c.close()
        return sent
    }

    static func mixedFigures(
        _ report: inout MixedReport, orgs: (a: Workload, b: Workload, c: Workload, d: Workload), on c: PostgresConnection
    ) async throws {
        // Every job's organization and times, in seconds since the epoch, computed here.
        struct Row {
            let org: String
            let created: Double
            let started: Double
            let finished: Double
        }
        let rows = try await c.run { c in
            try c.query(
                """
                SELECT fairness_key, extract(epoch FROM created_at)::float8 AS created,
                       extract(epoch FROM started_at)::float8 AS started, extract(epoch FROM finished_at)::float8 AS finished
                FROM queue.jobs WHERE finished_at IS NOT NULL
                """
            ).map { row in
                Row(
                    org: try row.decode(String.self, "fairness_key"), created: try row.decode(Double.self, "created"),
                    started: try row.decode(Double.self, "started"), finished: try row.decode(Double.self, "finished"))
            }
        }
        let (a, d) = (orgs.a.client.uuidString.lowercased(), orgs.d.client.uuidString.lowercased())
        let live = Set([orgs.b.client.uuidString.lowercased(), orgs.c.client.uuidString.lowercased()])
        let ofA = rows.filter { $0.org == a }
        let ofD = rows.filter { $0.org == d }
        guard let aFirst = ofA.map(\.started).min(), let aLast = ofA.map(\.finished).max(),
            let dFirst = ofD.map(\.created).min(), let dLast = ofD.map(\.finished).max()
        else { return }
        report.mixedJobsPerSecond =
            Double(rows.filter { $0.finished >= aFirst && $0.finished <= aLast }.count) / max(aLast - aFirst, 1e-6)
        let bothLast = min(aLast, dLast)
        let both = rows.filter { $0.finished >= dFirst && $0.finished <= bothLast }
        report.lateImportShare = both.isEmpty ? 0 : Double(both.filter { $0.org == d }.count) / Double(both.count)
        let liveRows = rows.filter { live.contains($0.org) }
        report.liveJobs = liveRows.count
        if let first = liveRows.map(\.created).min(), let last = liveRows.map(\.created).max() {
            report.liveRate = Double(liveRows.count) / max(last - first, 1e-6)
        }
        let latencies = liveRows.filter { $0.created >= aFirst && $0.created <= aLast }.map { ($0.finished - $0.created) * 1000 }
        report.liveLatencyMs = latencies.isEmpty ? nil : BenchReport.Percentiles(latencies)
    }

    /// Empties the queue and removes what the bench organizations wrote.
    static func resetAll(_ c: PostgresConnection, _ orgs: [Workload]) async throws {
        try await c.run { c in
            try c.execute("DELETE FROM queue.jobs")
            for table: StaticString in ["crm.customer_identifiers", "crm.contacts", "crm.customers"] {
                try c.execute("DELETE FROM \(sql: table) WHERE client_id = ANY(\(orgs.map(\.client))::uuid[])")
            }
            // Rewritten compact, so that every phase starts from the same tables, not from the
            // dead rows and index bloat of the phase before.
            try c.executeScript("VACUUM FULL ANALYZE crm.customer_identifiers, crm.contacts, crm.customers, queue.jobs")
        }
    }
}
