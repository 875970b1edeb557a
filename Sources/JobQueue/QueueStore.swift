#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import Postgres

/// The queue's SQL, one function per statement, each taking the connection it runs on.
///
/// Every statement binds its inputs as parameters. The claim reads the partial index of ready
/// jobs, so its cost depends on the batch, not on how many finished rows the table holds.
public enum QueueStore {
    /// What one claim took.
    public struct Claim: Sendable {
        /// The jobs, in id order.
        public var jobs: [Job]
        /// The most urgent priority among them; nil when there are none.
        public var priority: Int16?
        /// True when less urgent work was waiting too: the batch took only the urgent jobs.
        public var urgent: Bool
    }

    /// Claims up to `limit` ready jobs of `queues` for `worker` (the SQL function
    /// `queue.claim_jobs`, sql/0008, 0018 and 0020): in (priority, fair_seq, id) order, so that
    /// organizations take turns within a priority; one priority per batch, the most urgent first
    /// (skipping priorities up to `afterPriority` when it is given); never a job behind an
    /// unfinished earlier job of its ordering key (that earlier job is claimed instead when it is
    /// free, and a key head brings its following jobs along); a batch of urgent jobs taken while
    /// less urgent ones wait is topped up with those to `urgentFill`; with `aging`, part of a full
    /// batch of urgent jobs goes to less urgent ones that waited longer. Claimed jobs become
    /// `running`, leased to `worker` for `lease`, their attempt counted now, so that a job that
    /// crashes its worker cannot be retried forever.
    public static func claim(
        queues: [String], limit: Int, worker: String, lease: Duration, aging: Duration? = nil,
        afterPriority: Int16? = nil, urgentFill: Int? = nil, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Claim {
        // One statement per queue: with a single queue the claim walks the partial index in
        // claim order and stops after `limit` rows; `queue = ANY(…)` would sort every ready row.
        var claim = Claim(jobs: [], priority: nil, urgent: false)
        for queue in queues where claim.jobs.count < limit {
            // The wait is taken on the database's clock: from enqueueing, or from run_at when
            // later. (The function turns sequential scans off for its own statements.)
            let rows = try connection.query(
                """
                SELECT c.*, extract(epoch FROM clock_timestamp() - greatest(c.created_at, c.run_at))::float8 AS waited
                FROM queue.claim_jobs(\(queue), \(limit - claim.jobs.count), \(worker), \(lease.milliseconds),
                                      \(aging?.milliseconds), \(afterPriority), \(urgentFill)) c
                """)
            for row in rows {
                claim.jobs.append(try Job(row: row))
                let priority = try row.decode(Int16.self, "priority")
                claim.priority = min(claim.priority ?? priority, priority)
                if try row.decode(Bool.self, "urgent") { claim.urgent = true }
            }
        }
        claim.jobs.sort { $0.id < $1.id }
        return claim
    }

    /// Runs the sweeper (`queue.sweep`, sql/0008): jobs whose scheduled time came become
    /// claimable, and jobs held behind a key whose earlier jobs are all finished are released.
    /// One worker sweeps at a time; the others return at once. Returns how many it released.
    @discardableResult
    public static func sweep(on connection: isolated PostgresConnection) throws(PostgresError) -> Int {
        try connection.query("SELECT queue.sweep() AS released")[0].decode(Int.self, "released")
    }

    /// Locks the given jobs for the rest of the transaction and returns those still leased to
    /// `worker`. Once locked, no lease rescue can take them over until the transaction ends:
    /// this is the fence that keeps a worker whose lease was taken over from completing late.
    public static func lockOwned(
        ids: [Int64], worker: String, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Set<Int64> {
        try owned(sendLockOwned(ids: ids, worker: worker, on: connection), on: connection)
    }

    /// ``lockOwned(ids:worker:on:)`` sent ahead, to share a round trip with the statements
    /// after it (``PostgresConnection/sendAhead(keepingRows:)``); ``owned(_:on:)`` reads it.
    public static func sendLockOwned(
        ids: [Int64], worker: String, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> PostgresConnection.AheadRows {
        try sendIndexPlanned(
            """
            SELECT id FROM queue.jobs
            WHERE id = ANY(\(ids)::bigint[]) AND locked_by = \(worker) AND state = 'running'
            FOR UPDATE
            """, on: connection)
    }

    /// The jobs a ``sendLockOwned(ids:worker:on:)`` found still leased, and locked.
    public static func owned(
        _ sent: PostgresConnection.AheadRows, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Set<Int64> {
        try ids(of: sent, on: connection)
    }

    /// Takes transaction-scoped advisory locks for `keys`, in the order of their 64-bit hashes,
    /// which every worker shares, so that batches never wait on each other in a cycle. Sent
    /// ahead of the transaction's next statement (nobody reads its result): the locks are
    /// held before that statement runs, and a lock that cannot be taken is that statement's error.
    public static func lock(keys: [String], on connection: isolated PostgresConnection) throws(PostgresError) {
        guard !keys.isEmpty else { return }
        try connection.sendAhead(
            """
            SELECT count(pg_advisory_xact_lock(h))
            FROM (SELECT DISTINCT hashtextextended(k, 0) AS h FROM unnest(\(keys)::text[]) AS k ORDER BY 1) AS ordered
            """)
    }

    /// What became of one attempt.
    public enum Outcome: Sendable {
        case succeeded(JSONValue)
        case failed(JobFailure)
        case retry(JobFailure, after: Duration)
        /// Not run: an earlier job of its ordering key in the same batch will be retried. It
        /// goes back to ready, held behind that job, and the attempt does not count.
        case deferred

        /// The state the completion statement is given: the job's next state, or `deferred`
        /// (back to ready, held behind its key, the attempt not counted).
        var recordedState: String {
            switch self {
            case .succeeded: JobState.succeeded.rawValue
            case .failed: JobState.failed.rawValue
            case .retry: JobState.ready.rawValue
            case .deferred: "deferred"
            }
        }

        /// The result to store, for a success.
        var result: JSONValue? {
            if case .succeeded(let result) = self { return result }
            return nil
        }

        /// The failure to record, for a failure or a retry.
        var failure: JobFailure? {
            switch self {
            case .failed(let failure), .retry(let failure, _): failure
            case .succeeded, .deferred: nil
            }
        }

        /// How long a retry waits; zero otherwise.
        var delay: Duration {
            if case .retry(_, let delay) = self { return delay }
            return .zero
        }
    }

    /// Records the outcomes of a batch in one statement, fenced on `worker`'s lease: jobs no
    /// longer leased to it are left untouched. Returns the ids that were updated.
    @discardableResult
    public static func finish(
        _ outcomes: [(id: Int64, outcome: Outcome)], worker: String, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Set<Int64> {
        try recorded(sendFinish(outcomes, worker: worker, on: connection), on: connection)
    }

    /// ``finish(_:worker:on:)`` sent ahead: in a transaction, it rides with the `COMMIT`, one
    /// round trip for both. Read with ``recorded(_:on:)`` (after the commit, for that). Nil
    /// when there is nothing to record.
    public static func sendFinish(
        _ outcomes: [(id: Int64, outcome: Outcome)], worker: String, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> PostgresConnection.AheadRows? {
        guard !outcomes.isEmpty else { return nil }
        let ids = outcomes.map(\.id)
        let states = outcomes.map(\.outcome.recordedState)
        let delays = outcomes.map(\.outcome.delay.milliseconds)
        // Finishing a job also releases the next job of its key held behind it (when no other
        // earlier job of the key is still unfinished); a retry goes back to ready, held until
        // its backoff ends. The JSON columns travel as one JSON array each (null for none).
        let resultArray = JSONValue.array(outcomes.map { $0.outcome.result ?? .null })
        let errorArray = JSONValue.array(outcomes.map { $0.outcome.failure?.errorObject ?? .null })
        return try sendIndexPlanned(
            """
            WITH done AS (
            UPDATE queue.jobs j
            SET state = CASE WHEN u.state = 'deferred' THEN 'ready' ELSE u.state END,
                hold = CASE WHEN u.state = 'deferred' THEN 'ordering'
                            WHEN u.state = 'ready' AND u.delay > 0 THEN 'scheduled' END,
                attempts = CASE WHEN u.state = 'deferred' THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
                result = u.result,
                last_error = coalesce(u.error, j.last_error),
                errors = CASE WHEN u.error IS NULL THEN j.errors
                         ELSE j.errors || jsonb_build_array(jsonb_build_object(
                             'attempt', j.attempts, 'at', now(), 'status', u.error -> 'status',
                             'code', u.error -> 'code', 'message', u.error -> 'message')) END,
                run_at = CASE WHEN u.state = 'ready' THEN now() + u.delay * interval '1 millisecond'
                         ELSE j.run_at END,
                finished_at = CASE WHEN u.state IN ('ready', 'deferred') THEN NULL ELSE clock_timestamp() END,
                locked_by = NULL,
                locked_until = NULL
            FROM (SELECT r.id, r.state, nullif(r.result, 'null') AS result, nullif(r.error, 'null') AS error, r.delay
                  FROM ROWS FROM (unnest(\(ids)::bigint[]), unnest(\(states)::text[]),
                                  jsonb_array_elements(\(resultArray)::jsonb), jsonb_array_elements(\(errorArray)::jsonb),
                                  unnest(\(delays)::bigint[]))
                       AS r(id, state, result, error, delay)) u
            WHERE j.id = u.id AND j.locked_by = \(worker) AND j.state = 'running'
            RETURNING j.id, j.ordering_key, j.state,
                      CASE WHEN j.notify_finished AND j.state IN ('succeeded', 'failed')
                           THEN j.id || ' ' || j.state || ' ' || coalesce(j.last_error ->> 'status', '') || ' '
                                || (CASE WHEN j.state = 'succeeded' THEN j.result ELSE j.last_error END)::text
                      END AS announcement
            ), released AS (
                UPDATE queue.jobs n SET hold = NULL
                FROM (SELECT DISTINCT ordering_key FROM done
                      WHERE ordering_key IS NOT NULL AND state IN ('succeeded', 'failed')) k
                WHERE n.id = (SELECT h.id FROM queue.jobs h
                              WHERE h.ordering_key = k.ordering_key AND h.state = 'ready' AND h.hold = 'ordering'
                              ORDER BY h.id LIMIT 1)
                  AND NOT EXISTS (SELECT 1 FROM queue.jobs e
                                  WHERE e.ordering_key = k.ordering_key AND e.id < n.id
                                    AND e.state IN ('ready', 'running')
                                    AND NOT e.id IN (SELECT d.id FROM done d WHERE d.state IN ('succeeded', 'failed')))
                RETURNING n.id
            )
            -- Jobs someone waits for (notify_finished) are announced on queue_jobs_finished, one
            -- notification each, carrying the outcome as stored: "<id> <state> <status> <body>",
            -- or only the id when that would not fit in a notification (8000 bytes). Materialized:
            -- computed once, not once per finished row (a join let the planner rescan it for each
            -- one, 300 × 300 rows visited per batch, 13 µs a job).
            , announced AS MATERIALIZED (
                SELECT count(pg_notify('queue_jobs_finished',
                                       CASE WHEN octet_length(announcement) < 7900 THEN announcement
                                            ELSE id::text END)) AS sent
                FROM done WHERE announcement IS NOT NULL
            )
            SELECT d.id FROM done d CROSS JOIN announced
            """, on: connection)
    }

    /// The jobs a ``sendFinish(_:worker:on:)`` updated (those still leased to the worker).
    public static func recorded(
        _ sent: PostgresConnection.AheadRows?, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Set<Int64> {
        guard let sent else { return [] }
        return try ids(of: sent, on: connection)
    }

    /// The `id` column of a statement sent ahead, as a set.
    private static func ids(of sent: PostgresConnection.AheadRows, on connection: isolated PostgresConnection)
        throws(PostgresError) -> Set<Int64>
    {
        var ids = Set<Int64>()
        for row in try connection.rows(of: sent) { ids.insert(try row.decode(Int64.self, "id")) }
        return ids
    }

    /// Extends the leases of the jobs `ids` that `worker` still holds, skipping rows its own
    /// transactions have locked (they are fenced already). Returns how many were extended.
    @discardableResult
    public static func heartbeat(
        worker: String, ids: [Int64], lease: Duration, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Int {
        try indexPlanned(
            """
            UPDATE queue.jobs
            SET locked_until = now() + \(lease.milliseconds) * interval '1 millisecond'
            WHERE id IN (SELECT id FROM queue.jobs
                         WHERE id = ANY(\(ids)::bigint[]) AND locked_by = \(worker) AND state = 'running'
                         FOR UPDATE SKIP LOCKED)
            """, on: connection
        ).affectedRows
    }

    /// Puts running jobs whose lease ran out (their worker died or hung) back to `ready`, or
    /// to `failed` when they have used all their attempts, recording a `lease_expired` error.
    /// Returns the ids rescued.
    @discardableResult
    public static func rescueExpired(limit: Int = 1000, on connection: isolated PostgresConnection)
        throws(PostgresError) -> [Int64]
    {
        let rows = try indexPlanned(
            """
            WITH expired AS (
                SELECT id FROM queue.jobs
                WHERE state = 'running' AND locked_until < now()
                ORDER BY locked_until
                LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            ), rescued AS (
                UPDATE queue.jobs j
                SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'ready' END,
                    finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
                    run_at = now(),
                    last_error = jsonb_build_object(
                        'status', 500, 'code', 'lease_expired',
                        'message', 'the worker holding the job stopped renewing its lease',
                        'details', jsonb_build_object('worker', j.locked_by)),
                    errors = j.errors || jsonb_build_array(jsonb_build_object(
                        'attempt', j.attempts, 'at', now(), 'status', 500, 'code', 'lease_expired',
                        'message', 'the worker holding the job stopped renewing its lease')),
                    locked_by = NULL,
                    locked_until = NULL
                FROM expired e
                WHERE j.id = e.id
                RETURNING j.id, j.state
            )
            SELECT id, state, pg_notify('queue_jobs', '') IS NULL AS notified FROM rescued
            """, on: connection)
        return try rows.map { row throws(PostgresError) in try row.decode(Int64.self, "id") }
    }

    /// Puts the jobs `worker` still holds back to `ready` at once, without counting the attempt
    /// (used at shutdown, for jobs it claimed but will not run).
    @discardableResult
    public static func release(worker: String, on connection: isolated PostgresConnection)
        throws(PostgresError) -> Int
    {
        try connection.execute(
            """
            WITH released AS (
                UPDATE queue.jobs
                SET state = 'ready', attempts = greatest(attempts - 1, 0), locked_by = NULL, locked_until = NULL,
                    started_at = NULL
                WHERE locked_by = \(worker) AND state = 'running' AND locked_until IS NOT NULL  -- the lease index
                RETURNING id
            )
            SELECT id, pg_notify('queue_jobs', '') IS NULL AS notified FROM released
            """)
    }

    /// True while some job of `queues` is running, or ready with its time come.
    public static func hasPendingWork(queues: [String], on connection: isolated PostgresConnection)
        throws(PostgresError) -> Bool
    {
        try indexPlanned(
            """
            SELECT EXISTS (SELECT 1 FROM queue.jobs
                           WHERE state = 'running' AND locked_until IS NOT NULL AND queue = ANY(\(queues)::text[]))
                OR EXISTS (SELECT 1 FROM queue.jobs
                           WHERE state = 'ready' AND queue = ANY(\(queues)::text[]) AND run_at <= now()) AS pending
            """, on: connection)[0].decode(Bool.self, "pending")
    }
}

extension QueueStore {
    /// Runs one of the queue's statements with sequential scans off. They are index probes by
    /// design, but a plan made while the statistics of `queue.jobs` said it was empty (an
    /// ANALYZE after everything was pruned) scans the whole table instead, on every call
    /// until the next ANALYZE (sql/0012 does the same for the claim). The setting rides ahead
    /// of the statement in its round trip and is reset after it, so a handler's own statements
    /// in the same transaction are planned as usual.
    static func indexPlanned(_ query: PostgresQuery, on connection: isolated PostgresConnection)
        throws(PostgresError) -> PostgresRows
    {
        try connection.rows(of: sendIndexPlanned(query, on: connection))
    }

    /// ``indexPlanned(_:on:)`` sent ahead, its rows kept (``PostgresConnection/sendAhead(keepingRows:)``).
    static func sendIndexPlanned(_ query: PostgresQuery, on connection: isolated PostgresConnection)
        throws(PostgresError) -> PostgresConnection.AheadRows
    {
        try connection.sendAhead(keepingRows: query, with: .noSequentialScans)
    }
}

extension Duration {
    /// The duration in whole milliseconds.
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// The duration in whole microseconds.
    var microseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }
}
