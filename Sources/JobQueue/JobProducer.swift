#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import Postgres

/// Puts jobs into `queue.jobs`.
///
/// Workers wake at once: the table's statement-level trigger sends one `NOTIFY` per INSERT or
/// COPY, however many rows it wrote.
public enum JobProducer {
    /// Enqueues one job and returns its id; with an idempotency key already used in the same
    /// queue, enqueues nothing and returns the first job's id.
    public static func enqueue(_ job: NewJob, on connection: isolated PostgresConnection) throws(PostgresError)
        -> Int64
    {
        let inserted = try connection.query(
            """
            INSERT INTO queue.jobs (queue, kind, payload, client_id, idempotency_key, ordering_key, priority,
                                    run_at, max_attempts)
            VALUES ($1, $2, $3::jsonb, $4::uuid, $5, $6, $7, coalesce($8::timestamptz, now()), $9)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,
            [job.queue, job.kind, job.payload, job.clientID, job.idempotencyKey, job.orderingKey, job.priority,
             job.runAt, job.maxAttempts])
        if let row = inserted.first { return try row.decode(Int64.self, "id") }
        let existing = try connection.query(
            "SELECT id FROM queue.jobs WHERE queue = $1 AND idempotency_key = $2", [job.queue, job.idempotencyKey])
        guard let row = existing.first else {
            throw PostgresError(code: .protocolViolation, message: "the job was neither inserted nor found")
        }
        return try row.decode(Int64.self, "id")
    }

    /// Enqueues many jobs with `COPY` and returns how many were inserted.
    ///
    /// Without idempotency keys the rows stream straight into `queue.jobs`. With keys they go
    /// through a temporary table and one `INSERT … ON CONFLICT DO NOTHING` in input order, so
    /// a repeated key (in the input or already in the queue) keeps the first job. Run it
    /// inside a transaction to make the whole input one unit.
    @discardableResult
    public static func enqueueMany(_ jobs: [NewJob], on connection: isolated PostgresConnection)
        throws(PostgresError) -> Int
    {
        guard !jobs.isEmpty else { return 0 }
        let columns = "queue, kind, payload, client_id, idempotency_key, ordering_key, priority, run_at, max_attempts"
        let rows = jobs.lazy.map { job -> [String?] in
            [job.queue, job.kind, job.payload.jsonText, job.clientID?.postgresText, job.idempotencyKey,
             job.orderingKey, String(job.priority), job.runAt?.postgresText ?? "now", String(job.maxAttempts)]
        }
        if !jobs.contains(where: { $0.idempotencyKey != nil }) {
            return try connection.copyFrom("COPY queue.jobs (\(columns)) FROM STDIN", rows: rows)
        }
        try connection.executeScript(
            """
            CREATE TEMPORARY TABLE IF NOT EXISTS enqueue_staging (
                seq bigint GENERATED ALWAYS AS IDENTITY, queue text, kind text, payload jsonb, client_id uuid,
                idempotency_key text, ordering_key text, priority smallint, run_at timestamptz, max_attempts int
            );
            TRUNCATE enqueue_staging;
            """)
        try connection.copyFrom("COPY enqueue_staging (\(columns)) FROM STDIN", rows: rows)
        let inserted = try connection.execute(
            """
            INSERT INTO queue.jobs (\(columns))
            SELECT \(columns) FROM enqueue_staging ORDER BY seq
            ON CONFLICT DO NOTHING
            """)
        try connection.executeScript("TRUNCATE enqueue_staging")
        return inserted
    }
}
