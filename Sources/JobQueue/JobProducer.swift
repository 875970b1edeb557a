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
        // The first job of the key can vanish between the conflict and the lookup (an operator
        // purged it): the insert then wins on the next try.
        while true {
            let inserted = try connection.query(
                """
                INSERT INTO queue.jobs (queue, kind, payload, client_id, idempotency_key, ordering_key, priority,
                                        run_at, max_attempts, fairness_key)
                VALUES (\(job.queue), \(job.kind), \(job.payload)::jsonb, \(job.clientID)::uuid, \(job.idempotencyKey),
                        \(job.orderingKey), \(job.priority), coalesce(\(job.runAt)::timestamptz, now()), \(job.maxAttempts),
                        \(job.fairnessKey ?? ""))
                ON CONFLICT DO NOTHING
                RETURNING id
                """)
            if let row = inserted.first { return try row.decode(Int64.self, "id") }
            let existing = try connection.query(
                "SELECT id FROM queue.jobs WHERE queue = \(job.queue) AND idempotency_key = \(job.idempotencyKey)")
            if let row = existing.first { return try row.decode(Int64.self, "id") }
        }
    }

    /// Enqueues many jobs with one statement and returns each job's id and state, in order: for
    /// a job whose idempotency key is already used in its queue (or earlier in `jobs`), the id
    /// and current state of the job that holds it; a new job is `ready`. The ids are taken from
    /// the table's sequence inside the statement, so each row maps back to its job; the role
    /// needs `USAGE` on `queue.jobs_id_seq` (the `upsert_api` role has it). Jobs with a
    /// fairness key are placed by the statement (`queue.fair_start` once per group), not by
    /// the trigger per row. Idle workers are woken once, however many rows.
    public static func enqueueReturning(_ jobs: [NewJob], on connection: isolated PostgresConnection)
        throws(PostgresError) -> [EnqueuedJob]
    {
        // One row per distinct (queue, idempotency key); later jobs of a key share its answer.
        var firstOfKey: [String: Int] = [:]
        var sameAs = Array(jobs.indices)
        var unique: [Int] = []
        for (index, job) in jobs.enumerated() {
            if let key = job.idempotencyKey {
                if let first = firstOfKey[job.queue + "\u{0}" + key] {
                    sameAs[index] = first
                    continue
                }
                firstOfKey[job.queue + "\u{0}" + key] = index
            }
            unique.append(index)
        }
        var answers = [EnqueuedJob?](repeating: nil, count: jobs.count)
        // A key's holder can vanish between the conflict and the lookup (an operator purged
        // it): those rows are inserted again, and then win.
        var pending = unique
        while !pending.isEmpty {
            let found = try insertReturning(pending.map { jobs[$0] }, on: connection)
            var missing: [Int] = []
            for (index, answer) in zip(pending, found) {
                if let answer { answers[index] = answer } else { missing.append(index) }
            }
            pending = missing
        }
        // The loop above answered every index in `unique`, which `sameAs` points into.
        return jobs.indices.map { answers[sameAs[$0]] ?? EnqueuedJob(id: 0, state: .ready) }
    }

    /// One INSERT for `rows` (no idempotency key twice); nil where a key's holder was not found.
    private static func insertReturning(_ rows: [NewJob], on connection: isolated PostgresConnection)
        throws(PostgresError) -> [EnqueuedJob?]
    {
        try connection.query(
            """
            WITH input AS (
                SELECT nextval('queue.jobs_id_seq') AS id, i.*
                FROM unnest(\(rows.map(\.queue))::text[], \(rows.map(\.kind))::text[],
                            \(rows.map(\.clientID))::uuid[], \(rows.map(\.idempotencyKey))::text[],
                            \(rows.map(\.orderingKey))::text[], \(rows.map { Int($0.priority) })::smallint[],
                            \(rows.map(\.maxAttempts))::int[], \(rows.map(\.notifyFinished))::bool[],
                            \(rows.map(\.fairnessKey))::text[])
                     WITH ORDINALITY AS i(queue, kind, client_id, idempotency_key, ordering_key, priority, max_attempts,
                                          notify_finished, fairness_key, ord)
            ), starts AS (
                -- Each fairness group's next place, once; its jobs follow one another from there.
                -- Jobs without a key are placed by the table's trigger.
                SELECT g.queue, g.priority, g.fairness_key, queue.fair_start(g.queue, g.priority, g.fairness_key) AS start
                FROM (SELECT DISTINCT queue, priority, fairness_key FROM input WHERE fairness_key IS NOT NULL) g
            ), placed AS (
                SELECT i.*, s.start + row_number() OVER (PARTITION BY i.queue, i.priority, i.fairness_key ORDER BY i.ord)
                            - 1 AS fair_seq
                FROM input i LEFT JOIN starts s
                    ON s.queue = i.queue AND s.priority = i.priority AND s.fairness_key = i.fairness_key
            ), payloads AS (
                SELECT p.payload, p.ord FROM jsonb_array_elements(\(JSONValue.array(rows.map(\.payload)))::jsonb)
                                        WITH ORDINALITY AS p(payload, ord)
            ), ins AS (
                INSERT INTO queue.jobs (id, queue, kind, payload, client_id, idempotency_key, ordering_key, priority,
                                        max_attempts, notify_finished, fairness_key, fair_seq)
                OVERRIDING SYSTEM VALUE
                SELECT i.id, i.queue, i.kind, p.payload, i.client_id, i.idempotency_key, i.ordering_key, i.priority,
                       i.max_attempts, i.notify_finished, coalesce(i.fairness_key, ''), i.fair_seq
                FROM placed i JOIN payloads p USING (ord)
                ORDER BY i.ord
                ON CONFLICT DO NOTHING
                RETURNING id, state
            )
            SELECT coalesce(ins.id, held.id) AS id, coalesce(ins.state, held.state) AS state
            FROM input i LEFT JOIN ins ON ins.id = i.id
            -- LIMIT keeps this a per-row probe of the key's unique index, and only for rows that
            -- conflicted: without it the planner may join the whole table, and does, by a scan
            -- of every row, when the table's statistics were taken while it was empty.
            LEFT JOIN LATERAL (SELECT j.id, j.state FROM queue.jobs j
                               WHERE ins.id IS NULL AND j.queue = i.queue
                                 AND j.idempotency_key = i.idempotency_key
                               LIMIT 1) held ON true
            ORDER BY i.ord
            """
        ).map { row throws(PostgresError) in
            guard let id = try row.decode(Int64?.self, "id") else { return nil }
            return EnqueuedJob(id: id, state: try row.decode(JobState.self, "state"))
        }
    }

    /// Enqueues many jobs with `COPY` and returns how many were inserted.
    ///
    /// Jobs with a fairness key are placed here, in input order after their group's tail
    /// (one query per group), so that the table's placing trigger has nothing to do per row;
    /// the others are placed by the trigger. Without idempotency keys the rows stream straight
    /// into `queue.jobs`. With keys they go through a temporary table and one `INSERT … ON
    /// CONFLICT DO NOTHING` in input order, so a repeated key (in the input or already in the
    /// queue) keeps the first job. Run it inside a transaction to make the whole input one unit.
    ///
    /// `completing`, when given, fills in what a job still lacks (a key computed from its
    /// payload) just before its row is sent, so that this work overlaps with the server's
    /// insertion of the rows sent before instead of delaying the whole COPY. It runs after the
    /// jobs are placed: it must not change their queue, priority or fairness key.
    @discardableResult
    public static func enqueueMany(
        _ jobs: [NewJob], completing: ((inout NewJob) -> Void)? = nil, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Int {
        guard !jobs.isEmpty else { return 0 }
        let places = try places(for: jobs, on: connection)
        // An import's jobs carry its tag; other jobs' rows leave the two columns out.
        let tagged = jobs.contains { $0.importID != nil }
        let columns: StaticString =
            tagged
            ? "queue, kind, payload, client_id, idempotency_key, ordering_key, priority, run_at, max_attempts, fairness_key, fair_seq, import_id, import_line"
            : "queue, kind, payload, client_id, idempotency_key, ordering_key, priority, run_at, max_attempts, fairness_key, fair_seq"
        let rows = jobs.indices.lazy.map { i -> [String?] in
            var job = jobs[i]
            completing?(&job)
            var row = [job.queue, job.kind, job.payload.jsonText, job.clientID?.postgresText, job.idempotencyKey,
                    job.orderingKey, String(job.priority), job.runAt?.postgresText ?? "now", String(job.maxAttempts),
                    job.fairnessKey ?? "", places[i].map { String($0) }]
            if tagged { row += [job.importID?.postgresText, job.importLine.map { String($0) }] }
            return row
        }
        if !jobs.contains(where: { $0.idempotencyKey != nil }) {
            return try connection.copyFrom("COPY queue.jobs (\(columns)) FROM STDIN", rows: rows)
        }
        try connection.executeScript(
            """
            CREATE TEMPORARY TABLE IF NOT EXISTS enqueue_staging (
                seq bigint GENERATED ALWAYS AS IDENTITY, queue text, kind text, payload jsonb, client_id uuid,
                idempotency_key text, ordering_key text, priority smallint, run_at timestamptz, max_attempts int,
                fairness_key text NOT NULL DEFAULT '', fair_seq bigint, import_id uuid, import_line int
            );
            TRUNCATE enqueue_staging;
            """)
        try connection.copyFrom("COPY enqueue_staging (\(columns)) FROM STDIN", rows: rows)
        let inserted = try connection.execute(
            """
            INSERT INTO queue.jobs (\(sql: columns))
            SELECT \(sql: columns) FROM enqueue_staging ORDER BY seq
            ON CONFLICT DO NOTHING
            """)
        try connection.executeScript("TRUNCATE enqueue_staging")
        return inserted
    }

    /// The fair places of jobs with a fairness key: each group's next place, then one after
    /// another in input order. Nil for jobs without a key (the trigger places those).
    static func places(for jobs: [NewJob], on connection: isolated PostgresConnection) throws(PostgresError)
        -> [Int64?]
    {
        struct Group: Hashable {
            let queue: String
            let priority: Int16
            let key: String
        }
        var next: [Group: Int64] = [:]
        var places: [Int64?] = []
        places.reserveCapacity(jobs.count)
        for job in jobs {
            guard let key = job.fairnessKey else {
                places.append(nil)
                continue
            }
            let group = Group(queue: job.queue, priority: job.priority, key: key)
            let place: Int64
            if let known = next[group] {
                place = known
            } else {
                place = try connection.query(
                    "SELECT queue.next_fair_seq(\(group.queue), \(group.priority)::smallint, \(group.key)) AS place")[0].decode(Int64.self, "place")
            }
            places.append(place)
            next[group] = place + 1
        }
        return places
    }
}
