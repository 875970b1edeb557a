#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms
import Postgres

/// What the live page of `serve` (`GET /dashboard`) shows, read in a few bounded queries:
/// the counts by state, the recent throughput and latency, the error codes, the newest failed
/// jobs and the ready jobs that have waited longest. Every read is a count-table read or an
/// index probe with a limit, so its cost does not grow with the history kept
/// (docs/operations.md, "The live page").
public struct QueueOverview: Sendable {
    /// One point of the recent series: jobs finished in a bucket, and the 99th percentiles of
    /// the latest ``Window/sample`` jobs finished in it.
    public struct Point: Sendable, Hashable {
        /// When the bucket starts.
        public var start: Date
        /// Seconds the bucket covers: its width, or for the newest one the part gone by.
        public var seconds: Double
        /// Jobs that reached a final state in the bucket.
        public var finished: Int
        /// How many jobs the percentiles are taken from (at most ``Window/sample``).
        public var sampled: Int
        /// 99th percentile, in seconds, from due (enqueued, or `run_at` for a retry or a
        /// scheduled job) to finished; nil when no job was sampled.
        public var latencyP99: Double?
        /// 99th percentile, in seconds, from claimed to finished.
        public var runP99: Double?
    }

    /// A job in one of the overview's lists.
    public struct JobSummary: Sendable, Hashable {
        public var id: Int64
        public var queue: String
        public var kind: String
        public var clientID: UUID?
        public var attempts: Int
        public var maxAttempts: Int
        public var createdAt: Date
        /// When it finished (failed jobs) or became due (ready jobs).
        public var at: Date?
        /// The stored error object (failed jobs); nil for ready jobs without one.
        public var lastError: JSONValue?
    }

    /// The span of the recent series.
    public struct Window: Sendable, Hashable {
        /// Seconds per bucket.
        public var bucketSeconds: Int
        /// Buckets, newest last; the newest is the current one, not complete yet.
        public var buckets: Int
        /// The most jobs per bucket whose times are read for the percentiles.
        public var sample: Int

        public init(bucketSeconds: Int = 20, buckets: Int = 30, sample: Int = 400) {
            self.bucketSeconds = bucketSeconds
            self.buckets = buckets
            self.sample = sample
        }
    }

    /// Jobs per queue and state (exact, from the count tables).
    public var counts: [(queue: String, state: JobState, jobs: Int)]
    /// Age in seconds of the longest-waiting due ready job, per queue.
    public var oldestReadyAgeSeconds: [String: Double]
    /// The recent series, oldest bucket first.
    public var series: [Point]
    /// The window the series covers.
    public var window: Window
    /// The most frequent error codes among the latest failed jobs of each queue.
    public var topErrorCodes: [(code: String, jobs: Int)]
    /// The newest failed jobs, newest first.
    public var latestFailed: [JobSummary]
    /// The due ready jobs that have waited longest, longest first.
    public var longestWaiting: [JobSummary]
    /// The database's clock when it was read.
    public var readAt: Date

    /// Reads the overview, folding the recorded count changes first.
    public static func read(
        window: Window = Window(), listed: Int = 20, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> QueueOverview {
        try QueueAdmin.foldCounts(on: connection)
        let readAt = try connection.query("SELECT now() AS now")[0].decode(Date.self, "now")
        let counts = try QueueAdmin.jobCounts(on: connection).filter { $0.jobs > 0 }
        let (oldest, _) = try QueueAdmin.queueGauges(on: connection)
        let series = try readSeries(window, on: connection)
        let codes = try QueueAdmin.topErrorCodes(limit: 10, on: connection)
        let failed = try connection.query(
            """
            SELECT j.id, j.queue, j.kind, j.client_id, j.attempts, j.max_attempts, j.created_at,
                   j.finished_at AS at, j.last_error
            FROM (SELECT DISTINCT queue FROM queue.job_counts_now WHERE state = 'failed' AND jobs > 0) q
            CROSS JOIN LATERAL (
                SELECT * FROM queue.jobs j WHERE j.queue = q.queue AND j.state = 'failed'
                ORDER BY j.created_at DESC LIMIT \(listed)
            ) j
            ORDER BY j.created_at DESC, j.id DESC LIMIT \(listed)
            """
        ).map(summary)
        let waiting = try connection.query(
            """
            SELECT j.id, j.queue, j.kind, j.client_id, j.attempts, j.max_attempts, j.created_at,
                   j.run_at AS at, j.last_error
            FROM (SELECT DISTINCT queue FROM queue.job_counts_now WHERE state = 'ready' AND jobs > 0) q
            CROSS JOIN LATERAL (
                SELECT * FROM queue.jobs j WHERE j.queue = q.queue AND j.state = 'ready' AND j.run_at <= now()
                ORDER BY j.run_at LIMIT \(listed)
            ) j
            ORDER BY j.run_at, j.id LIMIT \(listed)
            """
        ).map(summary)
        return QueueOverview(
            counts: counts, oldestReadyAgeSeconds: oldest, series: series, window: window, topErrorCodes: codes,
            latestFailed: failed, longestWaiting: waiting, readAt: readAt)
    }

    /// The buckets of the window, the current one last (`queue.recent_series`): finished
    /// counts from `queue.finished_per_second`, percentiles from the latest `sample` jobs of
    /// each bucket through `jobs_finished_idx`.
    static func readSeries(_ window: Window, on connection: isolated PostgresConnection) throws(PostgresError) -> [Point] {
        try connection.query(
            """
            SELECT start, seconds, finished, sampled, latency_p99, run_p99
            FROM queue.recent_series(\(max(1, window.bucketSeconds)), \(max(1, window.buckets)), \(max(1, window.sample)))
            """
        ).map { row throws(PostgresError) in
            Point(
                start: try row.decode(Date.self, "start"), seconds: try row.decode(Double.self, "seconds"), finished: try row.decode(Int.self, "finished"),
                sampled: try row.decode(Int.self, "sampled"), latencyP99: try row.decode(Double?.self, "latency_p99"),
                runP99: try row.decode(Double?.self, "run_p99"))
        }
    }

    private static func summary(_ row: PostgresRow) throws(PostgresError) -> JobSummary {
        JobSummary(
            id: try row.decode(Int64.self, "id"), queue: try row.decode(String.self, "queue"),
            kind: try row.decode(String.self, "kind"), clientID: try row.decode(UUID?.self, "client_id"),
            attempts: try row.decode(Int.self, "attempts"), maxAttempts: try row.decode(Int.self, "max_attempts"),
            createdAt: try row.decode(Date.self, "created_at"), at: try row.decode(Date?.self, "at"),
            lastError: try row.decode(JSONValue?.self, "last_error"))
    }

    /// The overview as the live page reads it (`GET /dashboard/data.json`).
    public var json: JSONValue {
        func time(_ date: Date?) -> JSONValue { date.map { .string(TimestampText.format($0)) } ?? .null }
        func number(_ value: Double?) -> JSONValue { value.map { .number(JSONNumber($0)) } ?? .null }
        func job(_ job: JobSummary) -> JSONValue {
            .object([
                "id": .number(JSONNumber(Int(job.id))), "queue": .string(job.queue), "kind": .string(job.kind),
                "client_id": job.clientID.map { .string(UUIDText.string($0)) } ?? .null,
                "attempts": .number(JSONNumber(job.attempts)), "max_attempts": .number(JSONNumber(job.maxAttempts)),
                "created_at": time(job.createdAt), "at": time(job.at), "error": job.lastError ?? .null,
            ])
        }
        return .object([
            "read_at": time(readAt),
            "counts": .array(counts.map {
                .object(["queue": .string($0.queue), "state": .string($0.state.rawValue), "jobs": .number(JSONNumber($0.jobs))])
            }),
            "oldest_ready_age_seconds": .object(oldestReadyAgeSeconds.mapValues { .number(JSONNumber($0)) }),
            "window": .object([
                "bucket_seconds": .number(JSONNumber(window.bucketSeconds)),
                "buckets": .number(JSONNumber(window.buckets)), "sample": .number(JSONNumber(window.sample)),
            ]),
            "series": .array(series.map {
                .object([
                    "start": time($0.start), "seconds": .number(JSONNumber($0.seconds)), "finished": .number(JSONNumber($0.finished)),
                    "sampled": .number(JSONNumber($0.sampled)), "latency_p99": number($0.latencyP99),
                    "run_p99": number($0.runP99),
                ])
            }),
            "top_error_codes": .array(topErrorCodes.map {
                .object(["code": .string($0.code), "jobs": .number(JSONNumber($0.jobs))])
            }),
            "latest_failed": .array(latestFailed.map(job)),
            "longest_waiting": .array(longestWaiting.map(job)),
        ])
    }
}
