import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

/// Workers as separate processes: killed, signalled, and several at once.
@Suite("Worker processes", .serialized)
struct ProcessTests {
    func startWorkers(_ count: Int, _ database: PostgresConfiguration, _ arguments: [String]) throws -> [ChildProcess] {
        try (0..<count).map { _ in
            try ChildProcess(TestBinaries.testWorker, [database.connectionString] + arguments)
        }
    }

    func waitUntil(_ condition: PostgresQuery, on connection: PostgresConnection, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !connection.run({ c in try c.query(condition)[0].decode(Bool.self) }) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for: \(condition)")
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test("a worker killed with SIGKILL mid-batch: its jobs are rescued after the lease and done once")
    func sigkillMidBatch() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(200, kind: "test.record", payload: ["ms": 20], on: connection)
            let victim = try ChildProcess(
                TestBinaries.testWorker,
                [database.connectionString, "--concurrency", "4", "--batch-size", "10", "--lease", "2"])
            try await waitUntil("SELECT count(*) >= 20 FROM queue.jobs WHERE state = 'running'", on: connection)
            victim.signal(SIGKILL)
            _ = await victim.wait(timeout: .seconds(10))
            // A claim the victim sent just before it died may still run, and commit, in its
            // PostgreSQL session (the server learns of the closed socket only after the
            // statement): count what it holds once its sessions are gone.
            try await waitUntil(
                "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                on: connection)
            let held = try await QueueTest.scalar(
                "SELECT count(*) FROM queue.jobs WHERE state = 'running'", Int.self, on: connection)
            #expect(held > 0, "the victim held jobs when it died")
            let rescuer = try ChildProcess(
                TestBinaries.testWorker,
                [database.connectionString, "--concurrency", "4", "--batch-size", "10", "--lease", "2", "--drain"])
            let status = await rescuer.wait(timeout: .seconds(60))
            #expect(status == 0, "\(rescuer.outputText)")
            // Every job succeeded, and every job's effect committed exactly once.
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs WHERE state = 'succeeded'", Int.self, on: connection) == 200)
            #expect(try await QueueTest.scalar("SELECT count(DISTINCT job_id) FROM test_runs", Int.self, on: connection) == 200)
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs", Int.self, on: connection) == 200)
            let rescued = try await QueueTest.scalar(
                "SELECT count(*) FROM queue.jobs WHERE errors @> '[{\"code\": \"lease_expired\"}]'", Int.self,
                on: connection)
            #expect(rescued == held, "every job the victim held was rescued through its lease")
        }
    }

    @Test("20,000 jobs, 4 processes at concurrency 4: every job succeeds exactly once")
    func manyProcesses() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(20_000, kind: "test.record", on: connection)
            let workers = try startWorkers(
                4, database, ["--concurrency", "4", "--batch-size", "25", "--drain"])
            for worker in workers {
                let status = await worker.wait(timeout: .seconds(300))
                #expect(status == 0, "\(worker.outputText.suffix(2000))")
            }
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs WHERE state = 'succeeded'", Int.self, on: connection) == 20_000)
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs", Int.self, on: connection) == 20_000)
            #expect(try await QueueTest.scalar("SELECT count(DISTINCT job_id) FROM test_runs", Int.self, on: connection) == 20_000)
            #expect(try await QueueTest.scalar("SELECT count(DISTINCT worker) FROM test_runs", Int.self, on: connection) == 4)
        }
    }

    @Test("SIGTERM with jobs in flight: exit 0 within the grace period, nothing left running")
    func sigtermInFlight() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await QueueTest.enqueue(100, kind: "test.record", payload: ["ms": 300], on: connection)
            let worker = try ChildProcess(
                TestBinaries.testWorker,
                [database.connectionString, "--concurrency", "4", "--batch-size", "5", "--grace-period", "10"])
            try await waitUntil("SELECT count(*) > 0 FROM test_runs", on: connection)
            try await Task.sleep(for: .milliseconds(200))
            let (status, took) = await worker.signalAndWait(SIGTERM, timeout: .seconds(15))
            #expect(status == 0, "\(worker.outputText.suffix(2000))")
            #expect(took < .seconds(10), "shutdown took \(took)")
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs WHERE state = 'running'", Int.self, on: connection) == 0)
            let succeeded = try await QueueTest.scalar(
                "SELECT count(*) FROM queue.jobs WHERE state = 'succeeded'", Int.self, on: connection)
            let ready = try await QueueTest.scalar(
                "SELECT count(*) FROM queue.jobs WHERE state = 'ready' AND attempts = 0", Int.self, on: connection)
            #expect(succeeded > 0)
            #expect(succeeded + ready == 100, "finished jobs plus untouched ones account for all")
            #expect(try await QueueTest.scalar("SELECT count(*) FROM test_runs", Int.self, on: connection) == succeeded)
        }
    }
}
