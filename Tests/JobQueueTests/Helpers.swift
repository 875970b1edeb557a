import Foundation
import JSON
import JobQueue
import Logging
import Postgres
import TestSupport
import Testing

/// A handler whose behaviour each test chooses, recording every committed run in `test_runs`.
struct ScriptedHandler: JobHandler {
    typealias Work = Void
    let kind: String
    let body: @Sendable (Job, isolated PostgresConnection) async throws -> JSONValue

    init(kind: String = "test.scripted", body: @escaping @Sendable (Job, isolated PostgresConnection) async throws -> JSONValue) {
        self.kind = kind
        self.body = body
    }

    func handle(_ decoded: DecodedJob<Void>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        let job = decoded.job
        let run = try connection.query(
            "INSERT INTO test_runs (job_id, worker) VALUES (\(job.id), \("in-process")) RETURNING id")[0].decode(Int64.self, "id")
        let result = try await body(job, connection)
        try connection.execute("UPDATE test_runs SET ended = clock_timestamp() WHERE id = \(run)")
        return result
    }
}

struct Permanent: JobFailureConvertible {
    var jobFailure: JobFailure {
        JobFailure(status: 400, code: "bad_job", message: "this job can never succeed", isRetryable: false)
    }
}

struct Transient: JobFailureConvertible {
    var jobFailure: JobFailure {
        JobFailure(status: 500, code: "internal", message: "try again later", isRetryable: true)
    }
}

enum QueueTest {
    static let logger = TestDatabase.quietLogger

    /// A migrated scratch database with a `test_runs` table for handlers to record into.
    static func withDatabase<T: Sendable>(_ body: (PostgresConfiguration, PostgresConnection) async throws -> T)
        async throws -> T
    {
        try await TestDatabase.withScratchConnection { configuration, connection in
            try await connection.run { c in
                try c.executeScript(
                    """
                    CREATE TABLE test_runs (
                        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        job_id bigint NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),
                        ended timestamptz)
                    """)
            }
            return try await body(configuration, connection)
        }
    }

    static func configuration(
        concurrency: Int = 2, batchSize: Int = 10, drain: Bool = true, lease: Duration = .seconds(30)
    ) -> WorkerConfiguration {
        var configuration = WorkerConfiguration()
        configuration.queues = ["test"]
        configuration.concurrency = concurrency
        configuration.batchSize = batchSize
        configuration.drain = drain
        configuration.lease = lease
        configuration.pollInterval = .milliseconds(200)
        configuration.retryPolicy = RetryPolicy(base: .milliseconds(10), maximum: .milliseconds(50), jitter: 0)
        return configuration
    }

    /// Runs a worker until it drains, or until the SQL condition `until` holds; after
    /// `timeout` the worker is stopped and the test fails (a broken worker never hangs a test).
    static func runWorker(
        _ configuration: WorkerConfiguration, database: PostgresConfiguration, handlers: [any JobHandler],
        until condition: PostgresQuery? = nil, timeout: Duration = .seconds(60)
    ) async throws {
        let worker = JobWorker(configuration: configuration, database: database, handlers: handlers, logger: logger)
        let task = Task { try await worker.run() }
        let deadline = ContinuousClock.now + timeout
        let watchdog = Task {
            try await Task.sleep(until: deadline)
            worker.stop()
            Issue.record("the worker did not finish within \(timeout)")
        }
        if let condition {
            let watcher = try await PostgresConnection.connect(database)
            while try await !watcher.run({ c in try c.query(condition)[0].decode(Bool.self) }),
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            await watcher.close()
            worker.stop()
        }
        try await task.value
        watchdog.cancel()
    }

    static func enqueue(
        _ count: Int, kind: String = "test.scripted", payload: JSONValue = [:], orderingKey: String? = nil,
        maxAttempts: Int = 10, on connection: PostgresConnection
    ) async throws {
        let jobs = (0..<count).map { _ in
            NewJob(queue: "test", kind: kind, payload: payload, orderingKey: orderingKey, maxAttempts: maxAttempts)
        }
        try await connection.run { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
    }

    struct JobRow: Sendable {
        let id: Int64
        let state: String
        let attempts: Int
        let result: JSONValue?
        let lastError: JSONValue?
        let errors: JSONValue
        let lockedBy: String?
    }

    static func jobs(_ connection: PostgresConnection) async throws -> [JobRow] {
        try await connection.run { c in
            try c.query("SELECT id, state, attempts, result, last_error, errors, locked_by FROM queue.jobs ORDER BY id")
                .map { row in
                    JobRow(
                        id: try row.decode(Int64.self, "id"), state: try row.decode(String.self, "state"),
                        attempts: try row.decode(Int.self, "attempts"), result: try row.decode(JSONValue?.self, "result"),
                        lastError: try row.decode(JSONValue?.self, "last_error"),
                        errors: try row.decode(JSONValue.self, "errors"), lockedBy: try row.decode(String?.self, "locked_by"))
                }
        }
    }

    static func scalar<T: PostgresDecodable>(_ query: PostgresQuery, _ type: T.Type = T.self, on connection: PostgresConnection)
        async throws -> T
    {
        try await connection.run { c in
            guard let row = try c.query(query).first else { throw TestSetupError(message: "no row from: \(query)") }
            return try row.decode(T.self)
        }
    }
}
