import JSON
import JobQueue
import Logging
import Postgres

/// Inserts the jobs of concurrent requests together: one multi-row INSERT, one commit and one
/// notification for everything that arrived within a short window, so that throughput is not
/// bounded by one commit per request.
///
/// A request hands over its jobs as a group (a whole webhook notification, say); a group is
/// always inserted by one statement, so it is committed whole or not at all. The first group to
/// arrive opens a window of `window`; a flush also starts at once when `maximumJobs` are waiting.
/// Each group gets back its job ids, in order: for a job whose idempotency key was already used
/// in its queue, the first job's id.
public actor EnqueueBatcher {
    private struct Group {
        let jobs: [NewJob]
        let continuation: CheckedContinuation<[Int64], any Error>
    }

    private let pool: PostgresConnectionPool
    private let window: Duration
    private let maximumJobs: Int
    private var pending: [Group] = []
    private var pendingJobs = 0
    private var flushScheduled = false

    public init(pool: PostgresConnectionPool, window: Duration = .milliseconds(1), maximumJobs: Int = 500) {
        self.pool = pool
        self.window = window
        self.maximumJobs = maximumJobs
    }

    /// Enqueues `jobs` with the others of its window; returns their ids once committed.
    public func enqueue(_ jobs: [NewJob]) async throws -> [Int64] {
        guard !jobs.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            pending.append(Group(jobs: jobs, continuation: continuation))
            pendingJobs += jobs.count
            if pendingJobs >= maximumJobs {
                let groups = takePending()
                Task { await Self.flush(groups, pool: pool) }
            } else if !flushScheduled {
                flushScheduled = true
                Task {
                    try? await Task.sleep(for: window)
                    let groups = self.takePending()
                    await Self.flush(groups, pool: self.pool)
                }
            }
        }
    }

    private func takePending() -> [Group] {
        let groups = pending
        pending = []
        pendingJobs = 0
        flushScheduled = false
        return groups
    }

    private static func flush(_ groups: [Group], pool: PostgresConnectionPool) async {
        guard !groups.isEmpty else { return }
        do {
            let ids = try await pool.withConnection { connection in
                try insert(groups.flatMap(\.jobs), on: connection)
            }
            var offset = 0
            for group in groups {
                group.continuation.resume(returning: Array(ids[offset..<offset + group.jobs.count]))
                offset += group.jobs.count
            }
        } catch {
            for group in groups { group.continuation.resume(throwing: error) }
        }
    }

    /// One statement for all the jobs; ids taken from the table's sequence first, so that each
    /// row maps back to its job. A repeated idempotency key inserts nothing and yields the id of
    /// the job that holds it (within the batch, the first one).
    static func insert(_ jobs: [NewJob], on connection: isolated PostgresConnection) throws(PostgresError) -> [Int64] {
        var firstOfKey: [String: Int] = [:]
        var unique: [Int] = []
        var sameAs = Array(0..<jobs.count)
        for (index, job) in jobs.enumerated() {
            if let key = job.idempotencyKey {
                let slot = job.queue + "\u{0}" + key
                if let first = firstOfKey[slot] {
                    sameAs[index] = first
                    continue
                }
                firstOfKey[slot] = index
            }
            unique.append(index)
        }
        let rows = unique.map { jobs[$0] }
        let result = try connection.query(
            """
            WITH input AS (
                SELECT nextval('queue.jobs_id_seq') AS id, i.*
                FROM unnest(\(rows.map(\.queue))::text[], \(rows.map(\.kind))::text[],
                            \(rows.map(\.clientID))::uuid[], \(rows.map(\.idempotencyKey))::text[],
                            \(rows.map(\.orderingKey))::text[], \(rows.map { Int($0.priority) })::int[],
                            \(rows.map(\.maxAttempts))::int[], \(rows.map(\.notifyFinished))::bool[],
                            \(rows.map { $0.fairnessKey ?? "" })::text[])
                     WITH ORDINALITY AS i(queue, kind, client_id, idempotency_key, ordering_key, priority, max_attempts,
                                          notify_finished, fairness_key, ord)
            ), payloads AS (
                SELECT p.payload, p.ord FROM jsonb_array_elements(\(JSONValue.array(rows.map(\.payload)))::jsonb)
                                        WITH ORDINALITY AS p(payload, ord)
            ), ins AS (
                INSERT INTO queue.jobs (id, queue, kind, payload, client_id, idempotency_key, ordering_key, priority,
                                        max_attempts, notify_finished, fairness_key)
                OVERRIDING SYSTEM VALUE
                SELECT i.id, i.queue, i.kind, p.payload, i.client_id, i.idempotency_key, i.ordering_key, i.priority,
                       i.max_attempts, i.notify_finished, i.fairness_key
                FROM input i JOIN payloads p USING (ord)
                ORDER BY i.ord
                ON CONFLICT DO NOTHING
                RETURNING id
            )
            SELECT i.ord, coalesce(ins.id, (SELECT j.id FROM queue.jobs j
                                            WHERE j.queue = i.queue AND j.idempotency_key = i.idempotency_key)) AS id
            FROM input i LEFT JOIN ins ON ins.id = i.id
            ORDER BY i.ord
            """)
        var uniqueIDs: [Int64] = []
        uniqueIDs.reserveCapacity(rows.count)
        for row in result {
            guard let id = try row.decode(Int64?.self, "id") else {
                throw PostgresError(code: .decoding, message: "a job was neither inserted nor found by its idempotency key")
            }
            uniqueIDs.append(id)
        }
        guard uniqueIDs.count == rows.count else {
            throw PostgresError(code: .decoding, message: "the insert returned \(uniqueIDs.count) ids for \(rows.count) jobs")
        }
        var idOfIndex = [Int64](repeating: 0, count: jobs.count)
        for (position, index) in unique.enumerated() { idOfIndex[index] = uniqueIDs[position] }
        return (0..<jobs.count).map { idOfIndex[sameAs[$0]] }
    }
}
