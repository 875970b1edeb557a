import Foundation
import JSON
import JobQueue
import Postgres
import Testing

@Suite("What a claim returns")
struct ClaimRowsTests {
    @Test("a claimed job's wait runs from its enqueueing, or from its run_at when that is later")
    func waitedFromTheLaterOfCreatedAndRunAt() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await connection.run { c in
                try c.executeScript(
                    """
                    INSERT INTO queue.jobs (queue, kind, payload, created_at, run_at) VALUES
                        ('test', 'test.scripted', '{"n": 1}', now() - interval '10 minutes', now() - interval '2 minutes'),
                        ('test', 'test.scripted', '{"n": 2}', now() - interval '5 minutes', now() - interval '8 minutes')
                    """)
            }
            let claim = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 10, worker: "w", lease: .seconds(60), on: c)
            }
            let waited = Dictionary(uniqueKeysWithValues: claim.jobs.map { ($0.payload["n"], $0.waitedSeconds) })
            #expect(claim.jobs.count == 2)
            // Scheduled to run 2 minutes ago, enqueued 10: it waited 2 minutes.
            #expect((120.0..<130.0).contains(waited[1] ?? 0), "waited \(String(describing: waited[1])) s")
            // Enqueued 5 minutes ago with a run_at before that: it waited 5 minutes.
            #expect((300.0..<310.0).contains(waited[2] ?? 0), "waited \(String(describing: waited[2])) s")
        }
    }

    @Test("queue.claim keeps its columns for a worker of the previous version, and still claims")
    func previousWorkersClaim() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await QueueTest.enqueue(3, on: connection)
            let columns = try await connection.run { c in
                let rows = try c.query("SELECT * FROM queue.claim('test', 2, 'old-worker', 60000)")
                #expect(rows.count == 2)
                return rows.columns
            }
            #expect(
                columns == [
                    "id", "queue", "kind", "payload", "client_id", "attempts", "max_attempts", "ordering_key",
                    "fairness_key", "priority", "created_at", "urgent",
                ])
            let running = try await QueueTest.scalar(
                "SELECT count(*)::int FROM queue.jobs WHERE state = 'running' AND locked_by = 'old-worker' AND attempts = 1",
                Int.self, on: connection)
            #expect(running == 2)
        }
    }
}
