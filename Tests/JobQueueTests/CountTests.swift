import JSON
import JobQueue
import Postgres
import Testing

@Suite("Counting without scanning")
struct CountTests {
    /// What the table holds, counted the slow way.
    static func scanned(_ connection: PostgresConnection) async throws -> [String] {
        try await connection.run { c in
            try c.query("SELECT queue || ' ' || state || ' ' || count(*) AS line FROM queue.jobs GROUP BY queue, state ORDER BY 1")
                .map { row throws(PostgresError) in try row.decode(String.self, "line") }
        }
    }

    static func counted(_ connection: PostgresConnection) async throws -> [String] {
        try await connection.run { c in
            try QueueAdmin.jobCounts(on: c).filter { $0.jobs != 0 }.map { "\($0.queue) \($0.state.rawValue) \($0.jobs)" }.sorted()
        }
    }

    @Test("the counts match the table through inserts, COPY, claims, retries, failures, operator actions, folds, deletes and TRUNCATE")
    func countsStayExact() async throws {
        try await QueueTest.withDatabase { database, connection in
            let handler = ScriptedHandler { job, _ in
                switch job.payload["do"]?.stringValue {
                case "fail": throw Permanent()
                case "retry" where job.attempt < 2: throw Transient()
                default: return [:]
                }
            }
            var jobs: [NewJob] = []
            for (index, action) in ["ok", "fail", "retry", "ok", "fail", "ok"].enumerated() {
                jobs.append(NewJob(queue: index % 2 == 0 ? "test" : "other", kind: "test.scripted", payload: ["do": .string(action)]))
            }
            try await connection.run { [jobs] c in _ = try JobProducer.enqueueMany(jobs, on: c) }
            try await connection.run { c in
                try c.execute("INSERT INTO queue.jobs (queue, payload) SELECT 'bulk', '{}' FROM generate_series(1, 200)")
                _ = try c.copyFrom("COPY queue.jobs (queue, payload) FROM STDIN", rows: (0..<50).map { _ in ["bulk", "{}"] })
            }
            #expect(try await Self.counted(connection) == Self.scanned(connection))
            var configuration = QueueTest.configuration()
            configuration.queues = ["test", "other"]
            try await QueueTest.runWorker(configuration, database: database, handlers: [handler])
            #expect(try await Self.counted(connection) == Self.scanned(connection))
            // Two folds at once count every change once.
            async let first: Void = connection.run { c in try QueueAdmin.foldCounts(on: c) }
            let other = try await PostgresConnection.connect(database)
            try await other.run { c in try QueueAdmin.foldCounts(on: c) }
            try await first
            await other.close()
            #expect(try await Self.counted(connection) == Self.scanned(connection))
            let unfolded = try await QueueTest.scalar("SELECT count(*) FROM queue.job_count_changes", Int.self, on: connection)
            #expect(unfolded == 0)
            _ = try await connection.run { c in try QueueAdmin.retryFailed(on: c) }
            let ids = try await QueueTest.jobs(connection).map(\.id)
            _ = try await connection.run { c in try QueueAdmin.cancel(job: ids[1], on: c) }
            try await connection.run { c in
                try c.execute("UPDATE queue.jobs SET finished_at = now() - interval '2 days' WHERE state = 'succeeded'")
                _ = try QueueAdmin.prune(olderThan: .seconds(86_400), on: c)
                try c.execute("DELETE FROM queue.jobs WHERE queue = 'bulk' AND id % 3 = 0")
            }
            // A rolled-back write changes nothing.
            try await connection.run { c in
                try c.execute("BEGIN")
                try c.execute("DELETE FROM queue.jobs WHERE queue = 'bulk'")
                try c.execute("ROLLBACK")
            }
            #expect(try await Self.counted(connection) == Self.scanned(connection))
            #expect(try await Self.scanned(connection).contains("bulk ready 167"))
            try await connection.run { c in try c.execute("TRUNCATE queue.jobs") }
            #expect(try await Self.counted(connection) == [])
            try await connection.run { c in try c.execute("INSERT INTO queue.jobs (queue, payload) VALUES ('bulk', '{}')") }
            #expect(try await Self.counted(connection) == ["bulk ready 1"])
        }
    }

    @Test("queue.stats and queue.oldest_ready are exact whatever a ready job's run_at: due, scheduled, retried, backdated")
    func oldestIsExact() async throws {
        try await QueueTest.withDatabase { _, connection in
            // Rows of the view that differ from the table counted the slow way, and whether the
            // longest wait is the slow way's, both read in one statement (one now()).
            let differences: PostgresQuery = """
                SELECT (SELECT count(*) FROM queue.stats s
                        FULL JOIN (SELECT queue, state, count(*) AS jobs, min(created_at) AS oldest
                                   FROM queue.jobs GROUP BY 1, 2) b USING (queue, state)
                        WHERE s.jobs IS DISTINCT FROM b.jobs OR s.oldest_created_at IS DISTINCT FROM b.oldest)
                     + (SELECT count(*) FROM (SELECT DISTINCT queue FROM queue.jobs WHERE state = 'ready') q
                        WHERE (SELECT o.age_seconds FROM queue.oldest_ready o WHERE o.queue = q.queue)
                              IS DISTINCT FROM (SELECT extract(epoch FROM now() - min(j.run_at))::float8 FROM queue.jobs j
                                                WHERE j.queue = q.queue AND j.state = 'ready' AND j.run_at <= now()))
                """
            try await connection.run { c in
                try c.execute("SELECT setseed(0.15)")
                // Enqueued now or earlier (run_at = created_at), retried (due later than created),
                // scheduled (due in the future), backdated by the producer (due before created),
                // stamped by a producer's clock (a microsecond apart), in two queues.
                try c.execute(
                    """
                    INSERT INTO queue.jobs (queue, payload, created_at, run_at)
                    SELECT CASE WHEN g % 7 = 0 THEN 'b' ELSE 'a' END, '{}', t.created,
                           CASE g % 5 WHEN 0 THEN t.created WHEN 1 THEN t.created
                                      WHEN 2 THEN t.created + random() * interval '30 minutes'
                                      WHEN 3 THEN now() + random() * interval '1 hour'
                                      ELSE CASE WHEN g % 2 = 0 THEN t.created - random() * interval '2 hours'
                                                ELSE t.created + interval '1 microsecond' END END
                    FROM generate_series(1, 400) g
                    CROSS JOIN LATERAL (SELECT now() - random() * interval '3 hours' - g * interval '0 s' AS created) t
                    """)
            }
            #expect(try await QueueTest.scalar(differences, Int.self, on: connection) == 0)
            // Jobs leave the ready state, the oldest first half the time, and come back retried.
            for step in 0..<12 {
                try await connection.run { c in
                    let oldestFirst = step % 2 == 0
                    let state = ["succeeded", "failed", "cancelled", "running"][step % 4]
                    try c.execute(
                        """
                        UPDATE queue.jobs SET state = \(state),
                               locked_by = CASE WHEN \(state) = 'running' THEN 'test' END,
                               locked_until = CASE WHEN \(state) = 'running' THEN now() + interval '1 minute' END,
                               finished_at = CASE WHEN \(state) <> 'running' THEN now() END
                        WHERE id IN (SELECT id FROM queue.jobs WHERE state = 'ready'
                                     ORDER BY CASE WHEN \(oldestFirst) THEN extract(epoch FROM created_at) ELSE random() END
                                     LIMIT 25)
                        """)
                    if state == "running" {
                        try c.execute(
                            """
                            UPDATE queue.jobs SET state = 'ready', locked_by = NULL, locked_until = NULL,
                                   run_at = now() - random() * interval '10 minutes'
                            WHERE state = 'running' AND id % 2 = 0
                            """)
                    }
                }
                #expect(try await QueueTest.scalar(differences, Int.self, on: connection) == 0, "after step \(step)")
            }
        }
    }

    @Test("stats, the view and the gauges read no finished job: 200,000 of them cost nothing to count")
    func statsReadNoHistory() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await connection.run { c in
                try c.execute(
                    """
                    INSERT INTO queue.jobs (queue, payload, state, attempts, finished_at, last_error, created_at)
                    SELECT 'test', '{}', CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 1,
                           now() - g * interval '1 second',
                           CASE WHEN g % 50 = 0 THEN jsonb_build_object('code', 'code_' || (g / 50) % 5, 'status', 400) END,
                           now() - g * interval '1 second'
                    FROM generate_series(1, 200000) g
                    """)
                try c.execute("INSERT INTO queue.jobs (queue, payload) SELECT 'test', '{}' FROM generate_series(1, 20)")
                try c.execute("VACUUM ANALYZE queue.jobs")
                try c.execute("SELECT pg_stat_force_next_flush()")
                try c.execute("SELECT pg_stat_reset_single_table_counters('queue.jobs'::regclass)")
            }
            let stats = try await connection.run { c in try QueueAdmin.stats(on: c) }
            let viewRows = try await QueueTest.scalar("SELECT count(*) FROM queue.stats", Int.self, on: connection)
            try await connection.run { c in try c.execute("SELECT pg_stat_force_next_flush()") }
            let (scanned, fetched) = try await connection.run { c in
                let row = try c.query(
                    """
                    SELECT seq_tup_read::int AS s, coalesce(idx_tup_fetch, 0)::int AS f
                    FROM pg_stat_user_tables WHERE relid = 'queue.jobs'::regclass
                    """)[0]
                return (try row.decode(Int.self, "s"), try row.decode(Int.self, "f"))
            }
            #expect(stats.counts.map(\.jobs) == [4000, 20, 196_000])
            #expect(stats.counts.allSatisfy { $0.oldestCreatedAt != nil })
            #expect(viewRows == 3)
            #expect(stats.oldestReadyAgeSeconds["test"] ?? -1 >= 0)
            #expect(stats.topErrorCodes.map(\.jobs).reduce(0, +) == QueueAdmin.recentFailures)
            #expect(scanned == 0, "a sequential scan read \(scanned) rows")
            // The view's oldest rows, the waiting job and the latest failures: a few probes and
            // the bounded read of recent failures, never the 200,000 rows.
            #expect(fetched <= QueueAdmin.recentFailures + 100, "\(fetched) rows read through indexes")
        }
    }
}
