import Foundation
import JSON
import JobQueue
import Logging
import Postgres
import TestSupport
import Testing

/// A set-based handler: one INSERT for the whole batch, recording how it ran. Jobs whose
/// payload says `"bad": true` fail on their own; with `"clash": true` the set statement hits
/// a unique violation (as a race with another worker would), so the worker must fall back.
struct SetHandler: JobHandler {
    typealias Work = Void
    let kind = "test.set"

    func handle(_ decoded: DecodedJob<Void>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        let job = decoded.job
        if job.payload["bad"] == true { throw Permanent() }
        try connection.execute("INSERT INTO test_runs (job_id, worker) VALUES (\(job.id), 'one')")
        return ["mode": "one"]
    }

    func handleBatch(_ decoded: [DecodedJob<Void>], on connection: isolated PostgresConnection, logger: Logger)
        async throws -> [Result<JSONValue, any Error>]
    {
        let jobs = decoded.map(\.job)
        let good = jobs.filter { $0.payload["bad"] != true }
        var ids = good.map(\.id)
        if jobs.contains(where: { $0.payload["clash"] == true }), let first = ids.first { ids.append(first) }
        try connection.execute(
            "INSERT INTO test_runs (job_id, worker) SELECT unnest(\(ids)::bigint[]), 'set'")
        return jobs.map { job in job.payload["bad"] == true ? .failure(Permanent()) : .success(["mode": "set"]) }
    }
}

@Suite("Set-based handlers")
struct SetBasedTests {
    @Test("a set-based handler gets the batch at once; one job's failure touches no other")
    func setBased() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in
                try c.execute("CREATE UNIQUE INDEX ON test_runs (job_id)")
                for i in 0..<20 {
                    _ = try JobProducer.enqueue(
                        NewJob(queue: "test", kind: "test.set", payload: ["bad": .bool(i % 7 == 3)]), on: c)
                }
            }
            try await QueueTest.runWorker(
                QueueTest.configuration(concurrency: 1, batchSize: 20), database: database, handlers: [SetHandler()])
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.filter { $0.state == "succeeded" }.count == 17)
            #expect(jobs.filter { $0.state == "failed" }.allSatisfy { $0.lastError?["code"] == "bad_job" })
            #expect(jobs.filter { $0.state == "succeeded" }.allSatisfy { $0.result == ["mode": "set"] })
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs WHERE worker = 'set'", Int.self, on: connection) == 17)
        }
    }

    @Test("a database error in the set rolls it back and runs the same jobs one by one")
    func fallback() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in
                try c.execute("CREATE UNIQUE INDEX ON test_runs (job_id)")
                for i in 0..<8 {
                    _ = try JobProducer.enqueue(
                        NewJob(queue: "test", kind: "test.set", payload: ["clash": .bool(i == 5), "bad": .bool(i == 6)]),
                        on: c)
                }
            }
            // One batch of all eight (the first claim of a worker asks for at most 8).
            try await QueueTest.runWorker(
                QueueTest.configuration(concurrency: 1, batchSize: 8), database: database, handlers: [SetHandler()])
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.map(\.state) == Array(repeating: "succeeded", count: 6) + ["failed", "succeeded"])
            #expect(jobs.filter { $0.state == "succeeded" }.allSatisfy { $0.result == ["mode": "one"] && $0.attempts == 1 })
            // Nothing of the failed set remains: each job's row was written once, one by one.
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs WHERE worker = 'set'", Int.self, on: connection) == 0)
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs WHERE worker = 'one'", Int.self, on: connection) == 7)
        }
    }
}

/// A set-based handler whose jobs with `"failFirst": true` fail transiently on their first
/// attempt; the others record their run in `test_runs`, inside the set.
struct KeyedSetHandler: JobHandler {
    typealias Work = Void
    let kind = "test.keyed"

    func handle(_ decoded: DecodedJob<Void>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        try await handleBatch([decoded], on: connection, logger: logger)[0].get()
    }

    func handleBatch(_ decoded: [DecodedJob<Void>], on connection: isolated PostgresConnection, logger: Logger)
        async throws -> [Result<JSONValue, any Error>]
    {
        var results: [Result<JSONValue, any Error>] = []
        for item in decoded {
            let job = item.job
            if job.payload["failFirst"] == true, job.attempt == 1 {
                results.append(.failure(Transient()))
                continue
            }
            try connection.execute("INSERT INTO test_runs (job_id, worker) VALUES (\(job.id), 'keyed')")
            results.append(.success(["attempt": .number(JSONNumber(job.attempt))]))
        }
        return results
    }
}

@Suite("Set-based handlers and ordering keys")
struct SetOrderingTests {
    @Test("a later job of a key whose earlier job will be retried leaves nothing of its run in the set")
    func retryAheadInSet() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in
                _ = try JobProducer.enqueueMany(
                    [
                        NewJob(queue: "test", kind: "test.keyed", payload: ["failFirst": true], orderingKey: "person-1"),
                        NewJob(queue: "test", kind: "test.keyed", payload: [:], orderingKey: "person-1"),
                    ], on: c)
            }
            try await QueueTest.runWorker(
                QueueTest.configuration(concurrency: 1, batchSize: 8, drain: false), database: database,
                handlers: [KeyedSetHandler()],
                until: "SELECT count(*) = 2 FROM queue.jobs WHERE state = 'succeeded'")
            let jobs = try await QueueTest.jobs(connection)
            #expect(jobs.map(\.attempts) == [2, 1])
            // The second job ran once, after the first succeeded: its run in the first batch's
            // set was rolled back with the set.
            let runs = try await connection.run { c in
                try c.query("SELECT job_id FROM test_runs ORDER BY id").map { row throws(PostgresError) in
                    try row.decode(Int64.self, "job_id")
                }
            }
            #expect(runs == [jobs[0].id, jobs[1].id])
        }
    }
}
