import Foundation
import JSON
import JobQueue
import Migrations
import Postgres
import TestSupport
import Testing

@Suite("Enqueueing and operating the queue")
struct ProducerAndAdminTests {
    @Test("an idempotency key returns the first job's id and inserts nothing")
    func idempotency() async throws {
        try await QueueTest.withDatabase { _, connection in
            let (first, second, other) = try await connection.run { c in
                let job = NewJob(queue: "test", kind: "queue.noop", payload: ["a": 1], idempotencyKey: "evt-1")
                let first = try JobProducer.enqueue(job, on: c)
                let second = try JobProducer.enqueue(job, on: c)
                var elsewhere = job
                elsewhere.queue = "other"
                let other = try JobProducer.enqueue(elsewhere, on: c)
                return (first, second, other)
            }
            #expect(first == second)
            #expect(other != first, "keys are unique per queue")
            let inserted = try await connection.run { c in
                try JobProducer.enqueueMany(
                    [NewJob(queue: "test", kind: "queue.noop", payload: [:], idempotencyKey: "evt-1"),
                     NewJob(queue: "test", kind: "queue.noop", payload: [:], idempotencyKey: "evt-2"),
                     NewJob(queue: "test", kind: "queue.noop", payload: ["dup": true], idempotencyKey: "evt-2")],
                    on: c)
            }
            #expect(inserted == 1)
            let kept = try await QueueTest.scalar(
                "SELECT payload::text FROM queue.jobs WHERE idempotency_key = 'evt-2'", String.self, on: connection)
            #expect(kept == "{}", "the first of two jobs with one key is the one kept")
            // A raw INSERT with ON CONFLICT DO NOTHING, as docs/contract.md tells producers.
            let raw = try await connection.run { c in
                try c.execute(
                    "INSERT INTO queue.jobs (queue, payload, idempotency_key) VALUES ('test', '{}', 'evt-1') ON CONFLICT DO NOTHING")
            }
            #expect(raw == 0)
        }
    }

    @Test("a multi-row insert probes indexes only, even after the queue was analyzed while empty")
    func multiRowInsertAfterEmptyAnalyze() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await connection.run { c in
                try c.executeScript("ANALYZE queue.jobs")  // statistics of an empty table
                func burst(_ round: Int, on c: isolated PostgresConnection) throws(PostgresError) {
                    let jobs = (0..<200).map { i in
                        var job = NewJob(queue: "test", kind: "test.scripted", payload: [:], fairnessKey: "org")
                        job.idempotencyKey = "k\((round * 200 + i) % 1500)"  // later rounds repeat keys: conflicts
                        return job
                    }
                    _ = try JobProducer.enqueueReturning(jobs, on: c)
                }
                for round in 0..<6 { try burst(round, on: c) }  // past the custom plans: the generic one from now on
                try c.execute("SELECT pg_stat_reset_single_table_counters('queue.jobs'::regclass)")
                for round in 6..<11 { try burst(round, on: c) }
                try c.execute("SELECT pg_stat_force_next_flush()")
                let read = try c.query(
                    "SELECT seq_tup_read::int AS n FROM pg_stat_user_tables WHERE relid = 'queue.jobs'::regclass")[0]
                    .decode(Int.self, "n")
                #expect(read == 0, "the insert read \(read) rows by scanning the table")
            }
        }
    }

    /// Placing a job looks up its queue's head and its group's tail: two index probes, whatever
    /// the backlog. With no statistics yet (a new table, or one analyzed while empty) every
    /// index looks equally free, and the planner once served the tail's `ORDER BY … LIMIT 1` from
    /// an index on `(queue, run_at)` with a sort: every ready job of the queue read on every
    /// insert, so the front slowed down as a backlog grew (a production import, workers down).
    /// Which function's plan went wrong depended on the backlog's size and shape, hence two.
    @Test(
        "placing jobs reads a few index entries each, not the whole ready backlog, before any statistics",
        arguments: [false, true], [Backlog(jobs: 5_000, burst: 500, organizations: 1, payloadBytes: 0),
                                   Backlog(jobs: 30_000, burst: 1_500, organizations: 3, payloadBytes: 300)])
    func placementIgnoresBacklog(analyzedWhileEmpty: Bool, backlog: Backlog) async throws {
        try await QueueTest.withDatabase { _, connection in
            try await connection.run { c in
                if analyzedWhileEmpty { try c.executeScript("ANALYZE queue.jobs") }
                let note = String(repeating: "x", count: backlog.payloadBytes)
                let payload: JSONValue = backlog.payloadBytes == 0 ? [:] : ["note": .string(note)]
                func burst(_ count: Int, on c: isolated PostgresConnection) throws(PostgresError) {
                    let jobs = (0..<count).map { i in
                        NewJob(
                            queue: "test", kind: "test.scripted", payload: payload,
                            fairnessKey: "org\(i % backlog.organizations)")
                    }
                    _ = try JobProducer.enqueueReturning(jobs, on: c)
                }
                // The backlog, and the plans cached in this session.
                for _ in 0..<(backlog.jobs / backlog.burst) { try burst(backlog.burst, on: c) }
                try c.execute("SELECT pg_stat_force_next_flush()")
                try c.execute("SELECT pg_stat_reset_single_table_counters('queue.jobs'::regclass)")
                for _ in 0..<6 { try burst(20, on: c) }  // the multi-row insert: queue.fair_start once a statement
                // A producer's raw INSERT: the placing trigger (queue.next_fair_seq) for each row.
                try c.execute(
                    """
                    INSERT INTO queue.jobs (queue, kind, payload, fairness_key)
                    SELECT 'test', 'test.scripted', '{}', 'org0' FROM generate_series(1, 20)
                    """)
                try c.execute(
                    """
                    INSERT INTO queue.jobs (queue, kind, payload, fairness_key)
                    VALUES ('test', 'test.scripted', '{}', 'org0')
                    """)
                try c.execute("SELECT pg_stat_force_next_flush()")
                let read = try c.query(
                    """
                    SELECT (coalesce(sum(i.idx_tup_read), 0) + max(t.seq_tup_read))::int AS n
                    FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i USING (relid)
                    WHERE t.relid = 'queue.jobs'::regclass
                    """)[0].decode(Int.self, "n")
                let byIndex = try c.query(
                    """
                    SELECT indexrelname || ' ' || idx_tup_read AS n FROM pg_stat_user_indexes
                    WHERE relid = 'queue.jobs'::regclass AND idx_tup_read > 0
                    """).map { row throws(PostgresError) in try row.decode(String.self, "n") }
                // 141 jobs placed, two probes each, is under 300 entries (72 to 172 measured).
                // Reading the backlog once would be 5,000 or 30,000.
                #expect(read < 500, "placing 141 jobs read \(read) rows of queue.jobs: \(byIndex)")
            }
        }
    }

    struct Backlog: Sendable, CustomTestStringConvertible {
        let jobs: Int
        let burst: Int
        let organizations: Int
        let payloadBytes: Int
        var testDescription: String {
            "\(jobs) jobs in bursts of \(burst), \(organizations) organization(s), \(payloadBytes)-byte payloads"
        }
    }

    @Test("an INSERT or COPY of many rows sends one notification, not one per row")
    func oneNotificationPerStatement() async throws {
        try await QueueTest.withDatabase { database, connection in
            let listener = try await PostgresConnection.connect(database)
            try await listener.listen("queue_jobs")
            try await QueueTest.enqueue(1000, kind: "queue.noop", on: connection)
            try await connection.run { c in
                try c.execute("INSERT INTO queue.jobs (queue, payload) SELECT 'bulk', '{}' FROM generate_series(1, 500)")
            }
            var received: [PostgresNotification] = []
            for _ in 0..<3 {
                received += try await listener.waitForNotifications(timeout: .milliseconds(300))
            }
            #expect(received.map(\.payload).sorted() == ["bulk", "test"])
        }
    }

    @Test("a finished job someone waits for is announced with its outcome as stored; one too big for a notification by its id")
    func finishedAnnouncements() async throws {
        try await QueueTest.withDatabase { database, connection in
            let listener = try await PostgresConnection.connect(database)
            try await listener.listen("queue_jobs_finished")
            let handler = ScriptedHandler { job, _ in
                switch job.payload["do"]?.stringValue {
                case "fail": throw Permanent()
                case "big": return ["filler": .string(String(repeating: "x", count: 9000))]
                default: return ["b": 2, "a": "ü \"quoted\""]
                }
            }
            var jobs: [NewJob] = []
            for action in ["ok", "fail", "big", "ok"] {
                var job = NewJob(queue: "test", kind: "test.scripted", payload: ["do": .string(action)], maxAttempts: 1)
                job.notifyFinished = jobs.count < 3  // the last one: nobody waits for it
                jobs.append(job)
            }
            let ids = try await connection.run { [jobs] c in try JobProducer.enqueueReturning(jobs, on: c).map(\.id) }
            try await QueueTest.runWorker(QueueTest.configuration(), database: database, handlers: [handler])
            var received: [String] = []
            for _ in 0..<3 { received += try await listener.waitForNotifications(timeout: .milliseconds(300)).map(\.payload) }
            let stored = try await connection.run { c in
                try c.query("SELECT result::text AS r, last_error::text AS e FROM queue.jobs WHERE id = ANY(\(ids)::bigint[]) ORDER BY id")
                    .map { row throws(PostgresError) in (try row.decode(String?.self, "r"), try row.decode(String?.self, "e")) }
            }
            #expect(Set(received) == [
                "\(ids[0]) succeeded  \(stored[0].0 ?? "")", "\(ids[1]) failed 400 \(stored[1].1 ?? "")", "\(ids[2])",
            ])
            #expect(received.count == 3)
            await listener.close()
        }
    }

    @Test("stats, retry, cancel and prune do what operators expect")
    func operatorActions() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(3, kind: "no.such.kind", on: connection)
            try await QueueTest.enqueue(2, kind: "queue.noop", on: connection)
            try await QueueTest.runWorker(QueueTest.configuration(), database: database, handlers: [NoopHandler()])
            let stats = try await connection.run { c in try QueueAdmin.stats(on: c) }
            #expect(stats.counts.first { $0.state == .failed }?.jobs == 3)
            #expect(stats.counts.first { $0.state == .succeeded }?.jobs == 2)
            #expect(stats.finishedLastMinute["test"] == 5)
            #expect(stats.topErrorCodes.first?.code == "unknown_kind")
            #expect(stats.topErrorCodes.first?.jobs == 3)
            let failedView = try await QueueTest.scalar("SELECT count(*) FROM queue.failed_jobs", Int.self, on: connection)
            #expect(failedView == 3)

            let ids = try await QueueTest.jobs(connection).map(\.id)
            let retried = try await connection.run { c in try QueueAdmin.retry(job: ids[0], on: c) }
            #expect(retried)
            let notFailed = try await connection.run { c in try QueueAdmin.retry(job: ids[3], on: c) }
            #expect(!notFailed, "a succeeded job is not retried")
            let all = try await connection.run { c in try QueueAdmin.retryFailed(on: c) }
            #expect(all == 2)
            let cancelled = try await connection.run { c in try QueueAdmin.cancel(job: ids[1], on: c) }
            #expect(cancelled)
            let again = try await connection.run { c in try QueueAdmin.cancel(job: ids[1], on: c) }
            #expect(!again)
            let states = try await QueueTest.jobs(connection).map(\.state)
            #expect(states == ["ready", "cancelled", "ready", "succeeded", "succeeded"])
            try await connection.run { c in
                try c.execute("UPDATE queue.jobs SET finished_at = now() - interval '2 days' WHERE id = \(ids[3])")
            }
            let pruned = try await connection.run { c in try QueueAdmin.prune(olderThan: .seconds(86_400), on: c) }
            #expect(pruned == 1)
            #expect(try await QueueTest.jobs(connection).count == 4)
        }
    }

    @Test("the enqueue command checks the whole input's syntax first and names every bad line")
    func enqueueCommand() async throws {
        try await QueueTest.withDatabase { database, connection in
            let url = database.connectionString
            let bad = "{\"channel\":\"webchat\"}\n\n[1,2]\n{\"a\":\n{\"ok\":true}\n"
            let rejected = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--database-url", url, "--queue", "test"], input: bad)
            #expect(rejected.status == 1)
            #expect(rejected.output.contains("line 3: not a JSON object"))
            #expect(rejected.output.contains("line 4: invalid JSON"))
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs", Int.self, on: connection) == 0)

            let csv = #"""
                channel,channel_phone_number,contact_phone_number,contact_name,meta_data.source,cf.rut
                whatsapp,+56 2 2345 6789,+56 9 6123 4567,"Pérez, María",import,12.345.678-5
                whatsapp,+56 2 2345 6789,+56 9 6123 0000,"Ana ""La Jefa""",,

                """#
            let accepted = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--format", "csv", "--no-check", "--database-url", url], input: csv)
            #expect(accepted.status == 0, "\(accepted.output)")
            #expect(accepted.output.contains("enqueued 2 job(s)"))
            let payload = try await QueueTest.scalar(
                "SELECT payload FROM queue.jobs ORDER BY id LIMIT 1", JSONValue.self, on: connection)
            #expect(payload["contact_name"] == "Pérez, María")
            #expect(payload["meta_data"] == ["source": "import"])
            #expect(payload["custom_field_values"] == [["key": "rut", "value": "12.345.678-5"]])
            let name2 = try await QueueTest.scalar(
                "SELECT payload ->> 'contact_name' FROM queue.jobs ORDER BY id DESC LIMIT 1", String.self, on: connection)
            #expect(name2 == "Ana \"La Jefa\"")

            let brokenCSV = "channel,contact_name\nwhatsapp,\"unterminated\n"
            let csvRejected = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--format", "csv", "--database-url", url], input: brokenCSV)
            #expect(csvRejected.status == 1)
            #expect(csvRejected.output.contains("line 2: unterminated quoted field"))

            let invalidUTF8 = try await ChildProcess.run(
                "/bin/sh", ["-c", "printf '{\"a\":1}\\n{\"b\":\"\\377\"}\\n' | \"$0\" enqueue - --database-url \"$1\"",
                            TestBinaries.upsertWorker, url])
            #expect(invalidUTF8.status == 1)
            #expect(invalidUTF8.output.contains("line 2"))
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs", Int.self, on: connection) == 2)
        }
    }

    @Test("enqueue streams its input: the peak memory of 150,000 rows is that of 15,000")
    func enqueueMemoryIsFlat() async throws {
        try await QueueTest.withDatabase { database, connection in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("rss-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            var peaks: [Int: Int] = [:]
            for rows in [15_000, 150_000] {
                let file = directory.appendingPathComponent("contacts-\(rows).csv")
                var csv = "channel,channel_phone_number,contact_phone_number,contact_name,meta_data.source\n"
                for i in 0..<rows { csv += "whatsapp,+56 2 2345 6789,+5699\(1_000_000 + i),\"Pérez, María \(i)\",export\n" }
                try csv.write(to: file, atomically: true, encoding: .utf8)
                // The child's own peak resident set, from the kernel (ru_maxrss of a child alone).
                let measured = try await ChildProcess.run(
                    "/usr/bin/python3",
                    ["-c", "import resource,subprocess,sys; r=subprocess.run(sys.argv[1:]).returncode; "
                        + "print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'status', r)",
                     TestBinaries.upsertWorker, "enqueue", file.path, "--queue", "test", "--no-check", "--database-url",
                     database.connectionString])
                let words = measured.output.split(whereSeparator: \.isWhitespace)
                let peak = words.firstIndex(of: "peak").flatMap { Int(words[words.index(after: $0)]) }
                #expect(measured.output.contains("status 0") && measured.output.contains("enqueued \(rows) job(s)"), "\(measured.output)")
                peaks[rows] = try #require(peak, "\(measured.output)")
            }
            // Every row whole, across the reader's megabyte boundaries (quoted commas, an é).
            #expect(
                try await QueueTest.scalar(
                    "SELECT count(*) FROM queue.jobs WHERE payload ->> 'contact_name' ~ '^Pérez, María [0-9]+$'",
                    Int.self, on: connection) == 165_000)
            let small = peaks[15_000] ?? 0, large = peaks[150_000] ?? 0  // KiB
            // Holding the rows would add well over 100 MiB for the 135,000 more (1.7 KB a row before).
            #expect(large - small < 16 * 1024, "peak RSS \(small / 1024) MiB for 15,000 rows, \(large / 1024) MiB for 150,000")
        }
    }

    @Test("bad usage exits 2 with one line on stderr; a database failure exits 1")
    func exitStatuses() async throws {
        let usage = try await ChildProcess.run(TestBinaries.upsertWorker, ["run", "--concurrency", "0"],
                                               environment: ["DATABASE_URL": "postgresql://localhost/x"])
        #expect(usage.status == 2)
        #expect(usage.output.split(separator: "\n").count == 1)
        let noDatabase = try await ChildProcess.run(TestBinaries.upsertWorker, ["stats"], environment: ["DATABASE_URL": ""])
        #expect(noDatabase.status == 2)
        let unreachable = try await ChildProcess.run(
            TestBinaries.upsertWorker, ["stats", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/x"])
        #expect(unreachable.status == 1)
        #expect(!unreachable.output.contains("hunter2"))
        #expect(unreachable.output.split(separator: "\n").count == 1)
    }

    @Test("migrate run by three processes at once: all exit 0, one schema")
    func concurrentMigrateProcesses() async throws {
        try await TestDatabase.withScratch(migrated: false) { database in
            let children = try (0..<3).map { _ in
                try ChildProcess(TestBinaries.upsertWorker, ["migrate", "--database-url", database.connectionString])
            }
            for child in children {
                let status = await child.wait(timeout: .seconds(60))
                #expect(status == 0, "\(child.outputText)")
            }
            let connection = try await PostgresConnection.connect(database)
            let versions = try await QueueTest.scalar(
                "SELECT count(*) FROM queue.schema_migrations", Int.self, on: connection)
            #expect(versions == Schema.migrations.count)
            await connection.close()
        }
    }
}
