import Foundation
import HTTPFront
import JSON
import JobQueue
import Logging
import Postgres
import Synchronization
import TestSupport
import Testing

/// What lets many requests share the database: shared statements, one key lookup at a time,
/// and a waiter that remembers what finished before anyone asked.
@Suite("The HTTP front's sharing")
struct SharingTests {
    @Test("concurrent callers share statements; each gets its own answers, in order, and a group is never split")
    func sharedStatements() async throws {
        try await TestDatabase.withScratch { database in
            let pool = PostgresConnectionPool(configuration: database, size: 2, logger: TestDatabase.quietLogger)
            let batches = Mutex<[Int]>([])
            let doubler = SharedStatement<Int, Int>(pool: pool, runners: 1, maximumInputs: 50) { inputs, c throws(PostgresError) in
                batches.withLock { $0.append(inputs.count) }
                return try c.query("SELECT x * 2 AS y FROM unnest(\(inputs)::int[]) WITH ORDINALITY AS u(x, n) ORDER BY n")
                    .map { row throws(PostgresError) in try row.decode(Int.self, "y") }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for caller in 0..<300 {
                    group.addTask {
                        let inputs = Array(caller * 10..<caller * 10 + 1 + caller % 3)
                        let outputs = try await doubler.run(inputs)
                        #expect(outputs == inputs.map { $0 * 2 })
                    }
                }
                try await group.waitForAll()
            }
            let sizes = batches.withLock { $0 }
            let expected = (0..<300).map { 1 + $0 % 3 }.reduce(0, +)
            #expect(sizes.reduce(0, +) == expected)
            #expect(sizes.count < 300, "every caller had a statement of its own: \(sizes.count)")
            #expect(sizes.max() ?? 0 <= 50)
            await pool.close()
        }
    }

    @Test("a failing statement fails every group of its batch, and the next batch runs")
    func sharedFailure() async throws {
        try await TestDatabase.withScratch { database in
            let pool = PostgresConnectionPool(configuration: database, size: 2, logger: TestDatabase.quietLogger)
            let statement = SharedStatement<Int, Int>(pool: pool) { inputs, c throws(PostgresError) in
                // Division by zero for a batch holding a 0.
                try c.query("SELECT 10 / x AS y FROM unnest(\(inputs)::int[]) WITH ORDINALITY AS u(x, n) ORDER BY n")
                    .map { row throws(PostgresError) in try row.decode(Int.self, "y") }
            }
            await #expect(throws: PostgresError.self) { try await statement.run([5, 0]) }
            let next = try await statement.run([5, 2])
            #expect(next == [2, 5])
            statement.close()
            await #expect(throws: PostgresError.self) { try await statement.run([1]) }
            await pool.close()
        }
    }

    @Test("an expired API key is looked up once for all the requests that need it at that moment")
    func keyLookupOnce() async throws {
        let cache = APIKeyCache(timeToLive: .milliseconds(100))
        let lookups = Atomic<Int>(0)
        let client = UUID()
        let lookup: @Sendable (String) async throws -> UUID? = { _ in
            lookups.add(1, ordering: .relaxed)
            try await Task.sleep(for: .milliseconds(50))
            return client
        }
        for round in 1...2 {
            try await withThrowingTaskGroup(of: UUID?.self) { group in
                for _ in 0..<100 { group.addTask { try await cache.client(for: "key-1", lookup: lookup) } }
                for try await answer in group { #expect(answer == client) }
            }
            #expect(lookups.load(ordering: .relaxed) == round)
            try await Task.sleep(for: .milliseconds(150))  // expired
        }
        // A failed lookup is not remembered.
        await #expect(throws: CancellationError.self) {
            try await cache.client(for: "key-2") { _ in throw CancellationError() }
        }
        #expect(try await cache.client(for: "key-2", lookup: lookup) == client)
    }

    @Test("a waiter takes the outcome its announcement carries, without a read; a bare id, a timeout or a stale ticket reads")
    func waiterRemembers() async throws {
        try await TestDatabase.withScratchConnection { database, connection in
            let waiter = JobWaiter(configuration: database, logger: TestDatabase.quietLogger)
            let listening = Task { try await waiter.run() }
            let up = await eventually(timeout: .seconds(10)) { waiter.isListening }
            try #require(up)
            func announce(_ payload: String) async throws {
                try await connection.run { c in _ = try c.execute("SELECT pg_notify('queue_jobs_finished', \(payload))") }
            }
            let reads = Atomic<Int>(0)
            let stored = JobOutcome(state: .succeeded, body: #"{"read": true}"#, status: nil)
            let read: @Sendable () async throws -> JobOutcome? = {
                reads.add(1, ordering: .relaxed)
                return stored
            }
            // Announced with its outcome while the request waits: no read.
            let started = ContinuousClock.now
            async let carried = waiter.wait(for: 43, ticket: waiter.ticket(), timeout: .seconds(5), read: read)
            try await Task.sleep(for: .milliseconds(200))
            try await announce(#"43 failed 422 {"code": "x", "status": 422}"#)
            #expect(try await carried == JobOutcome(state: .failed, body: #"{"code": "x", "status": 422}"#, status: 422))
            #expect(ContinuousClock.now - started < .seconds(2), "waited for the timeout")
            #expect(reads.load(ordering: .relaxed) == 0)
            // Bare ids (an older worker): woken, then one read.
            async let bare = waiter.wait(for: 42, ticket: waiter.ticket(), timeout: .seconds(5), read: read)
            try await Task.sleep(for: .milliseconds(200))
            try await announce("41,42")
            #expect(try await bare == stored)
            #expect(reads.load(ordering: .relaxed) == 1)
            // Announced before anyone waits: the table is read (a retry may have followed), at once.
            let again = ContinuousClock.now
            #expect(try await waiter.wait(for: 43, ticket: waiter.ticket(), timeout: .seconds(5), read: read) == stored)
            #expect(ContinuousClock.now - again < .seconds(2) && reads.load(ordering: .relaxed) == 2)
            // Not announced, and a ticket that cannot vouch for the time since: read first.
            let early = try await waiter.wait(for: 77, ticket: .lookFirst, timeout: .seconds(5), read: read)
            #expect(early == stored && reads.load(ordering: .relaxed) == 3)
            // Not announced, a good ticket: the job is not looked at until the timeout.
            let notYet = Atomic<Int>(0)
            let late = try await waiter.wait(for: 78, ticket: waiter.ticket(), timeout: .milliseconds(300)) {
                notYet.add(1, ordering: .relaxed)
                return JobOutcome(state: .running, body: nil, status: nil)
            }
            #expect(late == nil && notYet.load(ordering: .relaxed) == 1)
            listening.cancel()
            _ = await listening.result
        }
    }
}
