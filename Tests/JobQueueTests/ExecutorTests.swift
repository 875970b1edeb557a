import Foundation
import JSON
@testable import JobQueue
import Logging
import Postgres
import TestSupport
import Testing

/// A handler whose decode refuses payloads with `"unreadable": true`, recording every run.
struct DecodingHandler: JobHandler {
    let kind = "test.decoding"

    func decode(_ job: Job) throws -> Int {
        if job.payload["unreadable"] == true { throw Permanent() }
        if case .number(let n)? = job.payload["n"], let value = n.intValue { return value }
        return 0
    }

    func handle(_ job: DecodedJob<Int>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        try connection.execute("INSERT INTO test_runs (job_id, worker) VALUES (\(job.job.id), 'decoding')")
        return ["n": .number(JSONNumber(job.work))]
    }
}

struct PlainSwiftError: Error {}

/// A handler that reads one thing per batch and runs no statement per job, with a lock per job:
/// what is left is the executor's own round trips.
struct PreparingHandler: JobHandler {
    let kind = "test.preparing"

    func decode(_ job: Job) throws -> Int64 { job.id }

    func lockKeys(for work: Int64) -> [String] { ["test.preparing:\(work)"] }

    func prepareBatch(_ jobs: [DecodedJob<Int64>], on connection: isolated PostgresConnection) async throws {
        _ = try connection.query("SELECT 1 AS prepared")
    }

    func handle(_ job: DecodedJob<Int64>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        ["id": .number(JSONNumber(Int(job.work)))]
    }
}

@Suite("The batch executor")
struct ExecutorTests {
    @Test("a job whose lease another worker took over before the batch ran is left to it: no handler runs for it")
    func ownershipFilter() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(3, on: connection)
            let claimed = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 3, worker: "A", lease: .seconds(30), on: c).jobs
            }
            #expect(claimed.count == 3)
            // Worker A stalls; its lease runs out and worker B takes two of the jobs.
            let taken = claimed.prefix(2).map(\.id)
            try await connection.run { c in
                try c.execute("UPDATE queue.jobs SET locked_by = 'B' WHERE id = ANY(\(taken)::bigint[])")
            }
            var configuration = QueueTest.configuration()
            configuration.workerID = "A"
            let handler = ScriptedHandler { _, _ in ["ok": true] }
            let pool = PostgresConnectionPool(configuration: database, size: 1)
            let executor = BatchExecutor(
                configuration: configuration, handlers: [handler.kind: handler], pool: pool, health: WorkerHealth(), metrics: WorkerMetrics())
            await executor.process(claimed, logger: QueueTest.logger)
            await pool.close()

            let ran = try await connection.run { c in
                try c.query("SELECT job_id FROM test_runs ORDER BY job_id").map { row throws(PostgresError) in
                    try row.decode(Int64.self, "job_id")
                }
            }
            #expect(ran == [claimed[2].id], "only the job A still owned ran")
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.filter { taken.contains($0.id) }.allSatisfy { $0.state == "running" && $0.lockedBy == "B" })
            #expect(jobs.first { $0.id == claimed[2].id }?.state == "succeeded")
        }
    }

    @Test("a batch asks which jobs it still holds in its handler's first round trip, and records the outcomes in its COMMIT's")
    func roundTripsPerBatch() async throws {
        try await QueueTest.withDatabase { database, connection in
            var configuration = QueueTest.configuration()
            configuration.workerID = "A"
            let handler = PreparingHandler()
            let pool = PostgresConnectionPool(configuration: database, size: 1)
            let executor = BatchExecutor(
                configuration: configuration, handlers: [handler.kind: handler], pool: pool, health: WorkerHealth(),
                metrics: WorkerMetrics())
            var trips: [Int] = []
            for _ in 0..<2 {  // the first batch prepares its statements
                try await QueueTest.enqueue(3, kind: handler.kind, on: connection)
                let claimed = try await connection.run { c in
                    try QueueStore.claim(queues: ["test"], limit: 3, worker: "A", lease: .seconds(30), on: c).jobs
                }
                let before = try await pool.withConnection { c in c.roundTrips }
                await executor.process(claimed, logger: QueueTest.logger)
                trips.append(try await pool.withConnection { c in c.roundTrips } - before)
            }
            await pool.close()
            // BEGIN, the ownership lock, the advisory locks and the handler's statement; then
            // the outcomes and COMMIT. (It was four: ownership, the handler's statement, the
            // outcomes, COMMIT.)
            #expect(trips.last == 2, "round trips per batch: \(trips)")
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.count == 6)
            #expect(jobs.allSatisfy { $0.state == "succeeded" && $0.result?["id"] == .number(JSONNumber(Int($0.id))) })
        }
    }

    @Test("a batch whose session is lost mid-batch records a retry for each job on the same connection, reconnected")
    func lostSessionRecordsRetries() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(3, on: connection)
            var configuration = QueueTest.configuration()
            configuration.workerID = "A"
            // The handler's session ends under it: the transaction is lost, nothing of it stays.
            let handler = ScriptedHandler { _, c in
                _ = try c.query("SELECT pg_terminate_backend(pg_backend_pid())")
                return ["unreachable": true]
            }
            let pool = PostgresConnectionPool(configuration: database, size: 1)
            let executor = BatchExecutor(
                configuration: configuration, handlers: [handler.kind: handler], pool: pool, health: WorkerHealth(),
                metrics: WorkerMetrics())
            let claimed = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 3, worker: "A", lease: .seconds(30), on: c).jobs
            }
            await executor.process(claimed, logger: QueueTest.logger)
            await pool.close()
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.count == 3)
            for job in jobs {
                #expect(job.state == "ready", "job \(job.id): \(job.state)")
                #expect(job.lockedBy == nil)
                #expect(job.attempts == 1)
                #expect(job.lastError?["code"] == "internal")
                #expect(job.errors.arrayValue?.count == 1)
            }
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs", Int.self, on: connection) == 0)
        }
    }

    @Test("a plain Swift error is an internal, retryable failure: the job runs again and succeeds")
    func plainSwiftError() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in try c.executeScript("CREATE SEQUENCE tries") }
            try await QueueTest.enqueue(1, on: connection)
            let handler = ScriptedHandler { _, c in
                if try c.query("SELECT nextval('tries') AS n")[0].decode(Int.self, "n") == 1 { throw PlainSwiftError() }
                return ["ok": true]
            }
            // The retry waits out its backoff, which a draining worker would not: run until it is done.
            try await QueueTest.runWorker(
                QueueTest.configuration(drain: false), database: database, handlers: [handler],
                until: "SELECT count(*) = 0 FROM queue.jobs WHERE state IN ('ready', 'running')")
            let job = try #require(try await QueueTest.jobs(connection).first)
            #expect(job.state == "succeeded")
            #expect(job.attempts == 2)
            #expect(job.errors.arrayValue?.count == 1)
            #expect(job.errors.arrayValue?.first?["code"] == "internal")
            #expect(job.errors.arrayValue?.first?["status"] == 500)
        }
    }

    @Test("a job whose decode throws fails with what it threw, and its handler never runs; the others do")
    func decodeFailure() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in
                _ = try JobProducer.enqueueMany(
                    [
                        NewJob(queue: "test", kind: "test.decoding", payload: ["n": 1]),
                        NewJob(queue: "test", kind: "test.decoding", payload: ["unreadable": true]),
                        NewJob(queue: "test", kind: "test.decoding", payload: ["n": 3]),
                    ], on: c)
            }
            try await QueueTest.runWorker(QueueTest.configuration(), database: database, handlers: [DecodingHandler()])
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.map(\.state) == ["succeeded", "failed", "succeeded"])
            #expect(jobs[1].lastError?["code"] == "bad_job")
            #expect(jobs[1].attempts == 1)
            #expect(jobs[2].result == ["n": 3])
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs", Int.self, on: connection) == 2)
        }
    }
}
