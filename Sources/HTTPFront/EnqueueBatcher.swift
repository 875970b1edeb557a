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

    public init(pool: PostgresConnectionPool, window: Duration = .milliseconds(3), maximumJobs: Int = 500) {
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
                try JobProducer.enqueueReturningIDs(groups.flatMap(\.jobs), on: connection)
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
}
