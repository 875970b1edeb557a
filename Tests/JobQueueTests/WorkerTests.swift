import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Running jobs")
struct WorkerTests {
    @Test("retry delays grow exponentially, stay within the cap, and jitter only shortens them")
    func retryBounds() {
        let policy = RetryPolicy(base: .seconds(1), maximum: .seconds(60), jitter: 0.5)
        #expect(policy.delay(afterAttempt: 1, random: 0) == .seconds(1))
        #expect(policy.delay(afterAttempt: 2, random: 0) == .seconds(2))
        #expect(policy.delay(afterAttempt: 5, random: 0) == .seconds(16))
        #expect(policy.delay(afterAttempt: 7, random: 0) == .seconds(60))
        #expect(policy.delay(afterAttempt: 1000, random: 0) == .seconds(60))
        #expect(policy.delay(afterAttempt: 3, random: 1) == .seconds(2))
        for attempt in 1...30 {
            let delay = policy.delay(afterAttempt: attempt)
            #expect(delay >= .milliseconds(500) && delay <= .seconds(60))
        }
    }

    @Test("a successful job commits its writes together with its result")
    func success() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(3, payload: ["n": 7], on: connection)
            let handler = ScriptedHandler { job, _ in ["echo": job.payload["n"] ?? nil] }
            try await QueueTest.runWorker(QueueTest.configuration(), database: database, handlers: [handler])
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.map(\.state) == ["succeeded", "succeeded", "succeeded"])
            #expect(jobs.allSatisfy { $0.result == ["echo": 7] && $0.attempts == 1 && $0.lockedBy == nil })
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs", Int.self, on: connection) == 3)
        }
    }

    @Test("after the queue was analyzed while empty, a drain still reads jobs by index only, never by scanning")
    func indexPlansAfterEmptyAnalyze() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in try c.executeScript("ANALYZE queue.jobs") }  // an empty table's statistics
            let handler = ScriptedHandler { _, _ in [:] }
            // The worker plans its statements while the queue is all but empty (a trickle of
            // jobs, enough for the cached generic plans), then the queue fills up.
            let feeder = Task {
                for _ in 0..<12 {
                    try await QueueTest.enqueue(3, on: connection)
                    try await Task.sleep(for: .milliseconds(60))
                }
                try await connection.run { c in
                    try c.execute("SELECT pg_stat_reset_single_table_counters('queue.jobs'::regclass)")
                }
                for _ in 0..<10 { try await QueueTest.enqueue(1000, on: connection) }
            }
            try await QueueTest.runWorker(
                QueueTest.configuration(concurrency: 2, batchSize: 50, drain: false), database: database,
                handlers: [handler], until: "SELECT count(*) = 10036 FROM test_runs")  // not a query of queue.jobs
            try await feeder.value
            // The worker's sessions have ended, so their counters are in.
            let scanned = try await connection.run { c in
                try c.execute("SELECT pg_stat_clear_snapshot()")
                return try c.query("SELECT seq_tup_read::int AS n FROM pg_stat_user_tables WHERE relid = 'queue.jobs'::regclass")[0]
                    .decode(Int.self, "n")
            }
            #expect(scanned == 0, "the drain read \(scanned) job rows by scanning the table")
        }
    }

    /// A transaction left open elsewhere (a report, a backup) keeps every row version written
    /// after it began, and every index entry pointing at one. The lease index then holds an
    /// entry for each job that was ever running; a batch's statements that name their jobs by id
    /// (the lock of the rows it owns, the completion, the heartbeat) once read it whole instead of
    /// probing the primary key: each batch read every job claimed since, and a drain slowed down
    /// as it went (a third slower over 100,000 no-op jobs, quadratic beyond).
    @Test("a long transaction elsewhere does not make each batch read every job claimed since")
    func longTransactionElsewhere() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(3000, on: connection)
            let report = try await PostgresConnection.connect(database)
            try await report.run { c in
                try c.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ")
                _ = try c.query("SELECT count(*) AS n FROM queue.jobs")  // its snapshot, held from now on
            }
            try await connection.run { c in
                try c.execute("SELECT pg_stat_reset_single_table_counters('queue.jobs'::regclass)")
            }
            try await QueueTest.runWorker(
                QueueTest.configuration(concurrency: 2, batchSize: 50, drain: false), database: database,
                handlers: [ScriptedHandler { _, _ in [:] }], until: "SELECT count(*) = 3000 FROM test_runs")
            try await report.run { c in try c.executeScript("ROLLBACK") }
            // The worker's sessions have ended, so their counters are in.
            let read = try await connection.run { c in
                try c.execute("SELECT pg_stat_clear_snapshot()")
                return try c.query(
                    """
                    SELECT idx_tup_read::int AS n FROM pg_stat_user_indexes
                    WHERE indexrelid = 'queue.jobs_lease_idx'::regclass
                    """)[0].decode(Int.self, "n")
            }
            // Only the lease sweep (nothing expired here) and the worker's release at shutdown read
            // that index; the release walks it once, at most an entry per job while the report's
            // snapshot keeps them (3,000 measured). Read by each of the 60 batches, it was 192,448.
            #expect(read <= 3000, "the drain read \(read) entries of the lease index")
        }
    }

    @Test("a permanent error fails the job on its first attempt and rolls back its writes only")
    func permanentFailure() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(4, on: connection)
            let handler = ScriptedHandler { job, _ in
                if job.id % 2 == 0 { throw Permanent() }
                return ["ok": true]
            }
            try await QueueTest.runWorker(QueueTest.configuration(concurrency: 1), database: database, handlers: [handler])
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.map(\.state) == ["succeeded", "failed", "succeeded", "failed"])
            let failed = jobs[1]
            #expect(failed.attempts == 1)
            #expect(failed.lastError?["code"] == "bad_job")
            #expect(failed.lastError?["status"] == 400)
            #expect(failed.errors.arrayValue?.count == 1)
            #expect(failed.errors.arrayValue?.first?["attempt"] == 1)
            // Only the succeeded jobs' writes remain (the failed ones' savepoints rolled back).
            let runs = try await connection.run { c in
                try c.query("SELECT job_id FROM test_runs ORDER BY job_id").map { try $0.decode(Int64.self, "job_id") }
            }
            #expect(runs == [jobs[0].id, jobs[2].id])
        }
    }

    @Test("transient errors retry with backoff until max_attempts, recording every attempt")
    func maxAttempts() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(1, maxAttempts: 3, on: connection)
            let handler = ScriptedHandler { _, _ in throw Transient() }
            try await QueueTest.runWorker(
                QueueTest.configuration(drain: false), database: database, handlers: [handler],
                until: "SELECT count(*) = 1 FROM queue.jobs WHERE state = 'failed'")
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "failed")
            #expect(job.attempts == 3)
            #expect(job.errors.arrayValue?.map { $0["attempt"] } == [1, 2, 3])
            #expect(job.lastError?["code"] == "internal")
        }
    }

    @Test("a job that fails once then succeeds keeps the failed attempt in its history")
    func retryThenSucceed() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(1, on: connection)
            let handler = ScriptedHandler { job, _ in
                if job.attempt == 1 { throw Transient() }
                return ["attempt": .number(JSONNumber(job.attempt))]
            }
            try await QueueTest.runWorker(
                QueueTest.configuration(drain: false), database: database, handlers: [handler],
                until: "SELECT count(*) = 1 FROM queue.jobs WHERE state = 'succeeded'")
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "succeeded")
            #expect(job.result == ["attempt": 2])
            #expect(job.errors.arrayValue?.count == 1)
        }
    }

    @Test("an unknown kind fails at once with code unknown_kind")
    func unknownKind() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(1, kind: "no.such.kind", on: connection)
            try await QueueTest.runWorker(QueueTest.configuration(), database: database, handlers: [NoopHandler()])
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "failed")
            #expect(job.lastError?["code"] == "unknown_kind")
            #expect(job.lastError?["details"]?["kind"] == "no.such.kind")
        }
    }

    @Test(
        "a lost race re-runs the job at once, without using an attempt",
        arguments: ["the database's unique violation", "the handler's LostRace"])
    func lostRace(signal: String) async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in
                try c.executeScript("CREATE TABLE once (k int PRIMARY KEY); CREATE SEQUENCE tries")
            }
            try await QueueTest.enqueue(1, on: connection)
            let handler = ScriptedHandler { _, c in
                // A sequence survives the savepoint's rollback: it counts the runs.
                let run = try c.query("SELECT nextval('tries') AS n")[0].decode(Int.self, "n")
                if run < 3, signal.contains("LostRace") { throw LostRace("another worker took the row first") }
                if run < 3 {
                    try c.execute("INSERT INTO once VALUES (1)")
                    try c.execute("INSERT INTO once VALUES (1)")  // 23505, as when another worker won
                }
                return ["runs": .number(JSONNumber(run))]
            }
            try await QueueTest.runWorker(QueueTest.configuration(), database: database, handlers: [handler])
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "succeeded")
            #expect(job.attempts == 1)
            #expect(job.result == ["runs": 3])
            #expect(job.errors.arrayValue?.isEmpty == true)
        }
    }

    @Test("60 jobs with one ordering key run one at a time, in id order, at concurrency 8, across a retry")
    func orderingKey() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(60, orderingKey: "person-1", on: connection)
            try await QueueTest.enqueue(20, on: connection)
            let tenth = try await QueueTest.scalar(
                "SELECT id FROM queue.jobs WHERE ordering_key = 'person-1' ORDER BY id OFFSET 9 LIMIT 1", Int64.self,
                on: connection)
            let handler = ScriptedHandler { job, c in
                // The tenth job of the key fails once: the jobs after it must wait for its retry.
                if job.id == tenth, job.attempt == 1 { throw Transient() }
                try c.execute("SELECT pg_sleep(0.002)")
                return [:]
            }
            try await QueueTest.runWorker(
                QueueTest.configuration(concurrency: 8, batchSize: 5), database: database, handlers: [handler])
            let ordered = try await connection.run { c in
                try c.query(
                    """
                    SELECT r.job_id FROM test_runs r JOIN queue.jobs j ON j.id = r.job_id
                    WHERE j.ordering_key = 'person-1' ORDER BY r.at, r.id
                    """
                ).map { try $0.decode(Int64.self, "job_id") }
            }
            #expect(ordered.count == 60)
            #expect(ordered == ordered.sorted())
            // Never two at once: in id order, each committed run started after the previous one ended.
            let overlaps = try await QueueTest.scalar(
                """
                SELECT count(*) FROM (
                    SELECT r.at, lag(r.ended) OVER (ORDER BY r.job_id) AS previous_ended
                    FROM test_runs r JOIN queue.jobs j ON j.id = r.job_id WHERE j.ordering_key = 'person-1') x
                WHERE x.at < x.previous_ended
                """, Int.self, on: connection)
            #expect(overlaps == 0)
            #expect(try await QueueTest.scalar("SELECT attempts FROM queue.jobs WHERE id = \(tenth)", Int.self, on: connection) == 2)
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs WHERE state <> 'succeeded'", Int.self, on: connection) == 0)
        }
    }

    @Test("an idle worker starts each new job on its notification, long before any poll could")
    func notifyWakesIdleWorker() async throws {
        try await QueueTest.withDatabase { database, connection in
            var configuration = QueueTest.configuration(drain: false)
            // Neither the fallback poll nor housekeeping (a third of the lease) comes round in
            // the time allowed below: only the notification can wake the worker. How fast it
            // does is the bench's to measure (`bench`: idle enqueue-to-start).
            configuration.pollInterval = .seconds(60)
            configuration.lease = .seconds(60)
            let worker = JobWorker(
                configuration: configuration, database: database, handlers: [NoopHandler()], logger: QueueTest.logger)
            let running = Task { try await worker.run() }
            try await Task.sleep(for: .milliseconds(300))
            for n in 1...5 {
                try await QueueTest.enqueue(1, kind: "queue.noop", on: connection)
                let started = try await eventually(timeout: .seconds(3)) {
                    try await QueueTest.scalar(
                        "SELECT count(*) FROM queue.jobs WHERE state = 'succeeded'", Int.self, on: connection) == n
                }
                #expect(started, "job \(n) was not worked within 3 s of its INSERT")
            }
            worker.stop()
            try await running.value
        }
    }

    @Test("a completion after the lease was taken over changes nothing")
    func fencedCompletion() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await QueueTest.enqueue(1, kind: "queue.noop", on: connection)
            let (first, second) = try await connection.run { c -> ([Job], [Job]) in
                let first = try QueueStore.claim(queues: ["test"], limit: 1, worker: "A", lease: .milliseconds(1), on: c).jobs
                _ = try c.query("SELECT pg_sleep(0.05)")
                _ = try QueueStore.rescueExpired(on: c)
                let second = try QueueStore.claim(queues: ["test"], limit: 1, worker: "B", lease: .seconds(30), on: c).jobs
                return (first, second)
            }
            #expect(first.map(\.id) == second.map(\.id))
            #expect(second.first?.attempt == 2)
            let id = try #require(first.first?.id)
            let (lateOwned, lateUpdated) = try await connection.run { c in
                try await c.withTransaction { c in
                    let owned = try QueueStore.lockOwned(ids: [id], worker: "A", on: c)
                    let updated = try QueueStore.finish([(id, .succeeded(["late": true]))], worker: "A", on: c)
                    return (owned, updated)
                }
            }
            #expect(lateOwned.isEmpty)
            #expect(lateUpdated.isEmpty)
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "running")
            #expect(job.lockedBy == "B")
            #expect(job.errors.arrayValue?.first?["code"] == "lease_expired")
        }
    }

    @Test("a job whose worker died with its last attempt is failed by the lease rescue, not retried forever")
    func crashLoopStops() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await QueueTest.enqueue(1, kind: "queue.noop", maxAttempts: 2, on: connection)
            for worker in ["A", "B"] {
                try await connection.run { c in
                    _ = try QueueStore.claim(queues: ["test"], limit: 1, worker: worker, lease: .milliseconds(1), on: c)
                    _ = try c.query("SELECT pg_sleep(0.02)")
                    _ = try QueueStore.rescueExpired(on: c)
                }
            }
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "failed")
            #expect(job.attempts == 2)
            #expect(job.lastError?["code"] == "lease_expired")
        }
    }

    @Test("a job left held behind a key that is no longer busy runs when a batch ends, not at the next sweep")
    func heldFollowerReleasedAfterABatch() async throws {
        try await QueueTest.withDatabase { database, connection in
            // A batch runs; meanwhile the other job of another key is held behind the head of
            // its key, which is then cancelled: nothing is left to release the held one but the
            // sweep. (Two claims racing a finish leave the same state: the claim's hold
            // commits after the finish looked for holds to release.)
            try await QueueTest.enqueue(1, orderingKey: "person-a", on: connection)
            try await QueueTest.enqueue(2, orderingKey: "person-b", on: connection)
            let ids = try await connection.run { c in
                try c.query("SELECT id FROM queue.jobs ORDER BY id").map { row throws(PostgresError) in try row.decode(Int64.self) }
            }
            let handler = ScriptedHandler { job, _ in
                guard job.id == ids[0] else { return [:] }
                let other = try await PostgresConnection.connect(database)
                try await other.run { c in
                    try c.execute("UPDATE queue.jobs SET hold = 'ordering' WHERE id = \(ids[2])")
                    try c.execute("UPDATE queue.jobs SET state = 'cancelled', finished_at = now() WHERE id = \(ids[1])")
                }
                await other.close()
                return [:]
            }
            var configuration = QueueTest.configuration(concurrency: 1, batchSize: 1)  // the first job alone
            configuration.pollInterval = .seconds(10)  // the periodic sweep: far beyond the test's limit
            let started = ContinuousClock.now
            try await QueueTest.runWorker(configuration, database: database, handlers: [handler], timeout: .seconds(30))
            let elapsed = ContinuousClock.now - started
            #expect(try await QueueTest.scalar("SELECT state FROM queue.jobs WHERE id = \(ids[2])", String.self, on: connection) == "succeeded")
            #expect(elapsed < .seconds(5), "the held job waited for the periodic sweep: \(elapsed)")
        }
    }
}

@Suite("Cancellation")
struct CancellationTests {
    @Test("cancelling the worker's task stops an idle worker promptly")
    func cancelIdleWorker() async throws {
        try await QueueTest.withDatabase { database, _ in
            var configuration = QueueTest.configuration(drain: false)
            configuration.pollInterval = .seconds(30)
            let worker = JobWorker(
                configuration: configuration, database: database, handlers: [NoopHandler()], logger: QueueTest.logger)
            let task = Task { try await worker.run() }
            try await Task.sleep(for: .milliseconds(300))
            let start = ContinuousClock.now
            task.cancel()
            // Should cancellation not stop it, fail instead of hanging the suite.
            let watchdog = Task {
                try await Task.sleep(for: .seconds(10))
                Issue.record("cancellation did not stop the worker")
                worker.stop()
            }
            try await task.value
            watchdog.cancel()
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }
}

@Suite("A worker that cannot reach PostgreSQL")
struct StalledWorkerTests {
    @Test("keeps warning, every few seconds, that it makes no progress, and stops when told")
    func warnsWhileStalled() async throws {
        let logs = CapturedLogs()
        var configuration = QueueTest.configuration(drain: false)
        configuration.stallWarning = .seconds(1)
        let nowhere = try PostgresConfiguration("host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2")
        let worker = JobWorker(
            configuration: configuration, database: nowhere, handlers: [NoopHandler()], logger: logs.logger(level: .info))
        let run = Task { try await worker.run() }
        let warned = await eventually(timeout: .seconds(15)) { logs.matching("no progress").count >= 2 }
        worker.stop()
        try await run.value
        #expect(warned, "\(logs.matching("no progress").count) no-progress warning(s)")
        let warnings = logs.matching("no progress")
        #expect(warnings.allSatisfy { $0.level == .warning })
        #expect(warnings.first?.metadata["error"]?.contains("Connection refused") == true)
        #expect(logs.matching("claim failed").count > 0)
    }
}

