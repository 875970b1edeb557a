#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms
import Postgres

/// Operator actions and the numbers behind `upsert-worker stats`.
public enum QueueAdmin {
    /// One row of `queue.stats`.
    public struct StateCount: Sendable, Hashable {
        public var queue: String
        public var state: JobState
        public var jobs: Int
        public var oldestCreatedAt: Date?
    }

    /// What an operator wants to know at a glance.
    public struct Stats: Sendable {
        /// Jobs per queue and state.
        public var counts: [StateCount]
        /// Age in seconds of the oldest job ready to run now, per queue.
        public var oldestReadyAgeSeconds: [String: Double]
        /// Jobs that reached a final state in the last minute, per queue.
        public var finishedLastMinute: [String: Int]
        /// The most frequent error codes among the latest failed jobs (``recentFailures`` per
        /// queue), with their counts.
        public var topErrorCodes: [(code: String, jobs: Int)]

        /// The stats as a JSON object (for `stats --json`).
        public var json: JSONValue {
            .object([
                "counts": .array(counts.map { count in
                    .object([
                        "queue": .string(count.queue), "state": .string(count.state.rawValue),
                        "jobs": .number(JSONNumber(count.jobs)),
                        "oldest_created_at": count.oldestCreatedAt.map { .string(TimestampText.format($0)) } ?? .null,
                    ])
                }),
                "oldest_ready_age_seconds": .object(oldestReadyAgeSeconds.mapValues { .number(JSONNumber($0)) }),
                "finished_last_minute": .object(finishedLastMinute.mapValues { .number(JSONNumber($0)) }),
                "top_error_codes": .array(topErrorCodes.map {
                    .object(["code": .string($0.code), "jobs": .number(JSONNumber($0.jobs))])
                }),
            ])
        }
    }

    /// Reads the monitoring numbers, folding the recorded count changes first (see
    /// ``foldCounts(on:)``). Every read is an index probe or a read of the count tables, so
    /// the cost does not grow with the finished jobs kept (docs/operations.md, "Counting").
    public static func stats(on connection: isolated PostgresConnection) throws(PostgresError) -> Stats {
        try foldCounts(on: connection)
        let counts = try connection.query(
            "SELECT queue, state, jobs, oldest_created_at FROM queue.stats ORDER BY queue, state"
        ).map { row throws(PostgresError) in
            StateCount(
                queue: try row.decode(String.self, "queue"), state: try row.decode(JobState.self, "state"),
                jobs: try row.decode(Int.self, "jobs"), oldestCreatedAt: try row.decode(Date?.self, "oldest_created_at"))
        }
        let (oldest, finished) = try queueGauges(on: connection)
        let top = try topErrorCodes(limit: 5, on: connection)
        return Stats(counts: counts, oldestReadyAgeSeconds: oldest, finishedLastMinute: finished, topErrorCodes: top)
    }

    /// How many of the latest failed jobs of each queue the top error codes are taken from.
    public static let recentFailures = 1000

    /// The `limit` most frequent error codes among the latest ``recentFailures`` failed jobs of
    /// each queue, with their counts (an index probe per queue that has failed jobs).
    public static func topErrorCodes(limit: Int, on connection: isolated PostgresConnection) throws(PostgresError)
        -> [(code: String, jobs: Int)]
    {
        try connection.query(
            """
            SELECT r.last_error ->> 'code' AS code, count(*) AS jobs
            FROM (SELECT DISTINCT queue FROM queue.job_counts_now WHERE state = 'failed' AND jobs > 0) q
            CROSS JOIN LATERAL (
                SELECT j.last_error FROM queue.jobs j WHERE j.queue = q.queue AND j.state = 'failed'
                ORDER BY j.created_at DESC LIMIT \(recentFailures)
            ) r
            GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT \(limit)
            """
        ).map { row throws(PostgresError) in
            (code: try row.decode(String?.self, "code") ?? "unknown", jobs: try row.decode(Int.self, "jobs"))
        }
    }

    /// The age of the longest-waiting due ready job and the jobs finished in the last minute,
    /// per queue: two reads of a few rows.
    public static func queueGauges(on connection: isolated PostgresConnection) throws(PostgresError)
        -> (oldestReadyAgeSeconds: [String: Double], finishedLastMinute: [String: Int])
    {
        var oldest: [String: Double] = [:]
        for row in try connection.query("SELECT queue, age_seconds FROM queue.oldest_ready") {
            oldest[try row.decode(String.self, "queue")] = max(0, try row.decode(Double.self, "age_seconds"))
        }
        var finished: [String: Int] = [:]
        for row in try connection.query("SELECT queue, jobs FROM queue.finished_recently(60)") {
            finished[try row.decode(String.self, "queue")] = try row.decode(Int.self, "jobs")
        }
        return (oldest, finished)
    }

    /// How long the oldest transaction holding a snapshot on this database has been open, in
    /// seconds (0: none). While it stays open PostgreSQL removes no row version written since it
    /// began, and the claims step over every job worked meanwhile (docs/operations.md, "Long
    /// transactions elsewhere"). Other roles' sessions are visible only to a role with
    /// `pg_read_all_stats`.
    public static func oldestSnapshotAge(on connection: isolated PostgresConnection) throws(PostgresError) -> Double {
        try connection.query(
            """
            SELECT coalesce(extract(epoch FROM clock_timestamp() - min(xact_start)), 0)::float8 AS age
            FROM pg_stat_activity
            WHERE datname = current_database() AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
            """)[0].decode(Double.self, "age")
    }

    /// The exact number of jobs per queue and state, from the count tables.
    public static func jobCounts(on connection: isolated PostgresConnection) throws(PostgresError)
        -> [(queue: String, state: JobState, jobs: Int)]
    {
        try connection.query("SELECT queue, state, jobs FROM queue.job_counts_now ORDER BY queue, state").map {
            row throws(PostgresError) in
            (try row.decode(String.self, "queue"), try row.decode(JobState.self, "state"), try row.decode(Int.self, "jobs"))
        }
    }

    /// Moves the count changes that writers recorded into the totals (`queue.fold_counts()`),
    /// so that reading a count stays a read of a few rows. Workers do it every few seconds.
    public static func foldCounts(on connection: isolated PostgresConnection) throws(PostgresError) {
        try connection.execute("SELECT queue.fold_counts()")
    }

    /// Moves one failed or cancelled job back to `ready`, with a fresh set of attempts.
    /// Returns false when the job does not exist or is not failed/cancelled.
    public static func retry(job id: Int64, on connection: isolated PostgresConnection) throws(PostgresError) -> Bool {
        try connection.execute(
            """
            WITH retried AS (
                UPDATE queue.jobs SET state = 'ready', attempts = 0, run_at = now(), finished_at = NULL
                WHERE id = \(id) AND state IN ('failed', 'cancelled') RETURNING id
            )
            SELECT id, pg_notify('queue_jobs', '') IS NULL FROM retried
            """) == 1
    }

    /// Moves every failed job back to `ready`; returns how many.
    public static func retryFailed(on connection: isolated PostgresConnection) throws(PostgresError) -> Int {
        try connection.execute(
            """
            WITH retried AS (
                UPDATE queue.jobs SET state = 'ready', attempts = 0, run_at = now(), finished_at = NULL
                WHERE state = 'failed' RETURNING id
            )
            SELECT id, pg_notify('queue_jobs', '') IS NULL FROM retried
            """)
    }

    /// Cancels a job that has not finished. A running job is cancelled too: its worker's
    /// fenced completion then changes nothing. Returns false when there was nothing to cancel.
    public static func cancel(job id: Int64, on connection: isolated PostgresConnection) throws(PostgresError) -> Bool {
        try connection.execute(
            """
            UPDATE queue.jobs SET state = 'cancelled', finished_at = now(), locked_by = NULL, locked_until = NULL
            WHERE id = \(id) AND state IN ('ready', 'running')
            """) == 1
    }

    /// Deletes finished jobs (succeeded, failed, cancelled) that finished more than `age` ago,
    /// in chunks so that no long transaction holds the table. Returns how many were deleted.
    public static func prune(olderThan age: Duration, on connection: isolated PostgresConnection)
        throws(PostgresError) -> Int
    {
        var total = 0
        while true {
            let deleted = try connection.execute(
                """
                DELETE FROM queue.jobs WHERE id IN (
                    SELECT id FROM queue.jobs
                    WHERE state IN ('succeeded', 'failed', 'cancelled')
                      AND finished_at < now() - \(age.milliseconds) * interval '1 millisecond'
                    LIMIT 10000)
                """)
            total += deleted
            if deleted < 10_000 { return total }
        }
    }
}
