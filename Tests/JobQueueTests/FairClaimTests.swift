import Foundation
import JSON
import JobQueue
import Logging
import Postgres
import TestSupport
import Testing

/// Fair claiming: organizations take turns, one key's backlog is out of everyone's way, bulk
/// work ages, held jobs come back.
@Suite("Fair claiming")
struct FairClaimTests {
    static func enqueue(
        _ count: Int, group: String, priority: Int16 = 0, orderingKey: String? = nil, runAt: Date? = nil,
        on connection: PostgresConnection
    ) async throws {
        let jobs = (0..<count).map { _ in
            NewJob(
                queue: "test", kind: "test.scripted", payload: [:], orderingKey: orderingKey, priority: priority,
                runAt: runAt, fairnessKey: group)
        }
        try await connection.run { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
    }

    static func claim(_ limit: Int, aging: Duration? = nil, on connection: PostgresConnection) async throws -> [Job] {
        try await connection.run { c in
            try QueueStore.claim(queues: ["test"], limit: limit, worker: "w", lease: .seconds(30), aging: aging, on: c).jobs
        }
    }

    static func groups(_ jobs: [Job], on connection: PostgresConnection) async throws -> [String: Int] {
        try await connection.run { c in
            var counts: [String: Int] = [:]
            for row in try c.query("SELECT fairness_key FROM queue.jobs WHERE id = ANY(\(jobs.map(\.id))::bigint[])") {
                counts[try row.decode(String.self, "fairness_key"), default: 0] += 1
            }
            return counts
        }
    }

    @Test("with two organizations' backlogs, claims take turns between them, however late the second came")
    func interleave() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(500, group: "org-a", on: connection)
            _ = try await Self.claim(100, on: connection)  // A alone for a while
            try await Self.enqueue(100, group: "org-d", on: connection)
            for _ in 0..<5 {
                let batch = try await Self.claim(20, on: connection)
                let counts = try await Self.groups(batch, on: connection)
                #expect(counts == ["org-a": 10, "org-d": 10], "\(counts)")
            }
            // A third group arriving now gets its turn in the very next claim.
            try await Self.enqueue(3, group: "org-b", on: connection)
            let next = try await Self.groups(try await Self.claim(9, on: connection), on: connection)
            #expect(next["org-b"] == 3, "\(next)")
        }
    }

    @Test("one organization's flood of single INSERTs takes turns like an import does")
    func floodOfInserts() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(50, group: "org-a", on: connection)
            try await connection.run { c in
                for _ in 0..<200 {
                    try c.execute("INSERT INTO queue.jobs (queue, kind, payload, fairness_key) VALUES ('test', 'test.x', '{}', 'org-flood')")
                }
            }
            let counts = try await Self.groups(try await Self.claim(40, on: connection), on: connection)
            #expect(counts == ["org-a": 20, "org-flood": 20], "\(counts)")
        }
    }

    @Test("a multi-row insert places its jobs as the trigger would: each group after its own tail, turns with the rest")
    func multiRowInsertPlaces() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(40, group: "org-a", on: connection)
            // One statement for a burst of A's requests, one of B's and one job without a key.
            let burst = (0..<30).map { i in
                NewJob(queue: "test", kind: "test.scripted", payload: [:], fairnessKey: i == 7 ? "org-b" : "org-a")
            } + [NewJob(queue: "test", kind: "test.scripted", payload: [:])]
            let enqueued = try await connection.run { c in try JobProducer.enqueueReturning(burst, on: c) }
            #expect(Set(enqueued.map(\.state)) == [.ready] && Set(enqueued.map(\.id)).count == burst.count)
            let places = try await connection.run { c in
                try c.query("SELECT fairness_key, fair_seq FROM queue.jobs WHERE id = ANY(\(enqueued.map(\.id))::bigint[]) ORDER BY id")
                    .map { row throws(PostgresError) in (try row.decode(String.self, "fairness_key"), try row.decode(Int64.self, "fair_seq")) }
            }
            // A's new jobs continue after its 40 (0...39), one after another; B starts at the head.
            #expect(places.filter { $0.0 == "org-a" }.map(\.1) == Array(40..<69))
            #expect(places.filter { $0.0 == "org-b" }.map(\.1) == [0])
            // So the next claims alternate: B's job comes in the first.
            let first = try await Self.groups(try await Self.claim(4, on: connection), on: connection)
            #expect(first["org-b"] == 1, "\(first)")
        }
    }

    @Test("a hot key's backlog leaves the claim's path: held once, then drained a batch at a time, in id order")
    func hotKey() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(300, group: "org-a", orderingKey: "person-hot", on: connection)
            try await Self.enqueue(40, group: "org-b", on: connection)
            // The key's head brings its followers, in id order: an eighth of the batch, since
            // other work waits too.
            let first = try await Self.claim(48, on: connection)
            let hotIDs = try await connection.run { c in
                try c.query("SELECT id FROM queue.jobs WHERE ordering_key = 'person-hot' ORDER BY id").map {
                    try $0.decode(Int64.self, "id")
                }
            }
            let firstHot = first.filter { $0.orderingKey == "person-hot" }.map(\.id)
            #expect(firstHot == Array(hotIDs.prefix(7)))
            // The rest of the key left the claim's path in one go; other claims fill up with other work.
            #expect(try await QueueTest.scalar(
                "SELECT count(*) FROM queue.jobs WHERE hold = 'ordering'", Int.self, on: connection) == 300 - 7)
            let second = try await Self.claim(50, on: connection)
            #expect(second.allSatisfy { $0.orderingKey == nil })
            // Finishing the batch releases the next job of the key, which brings the next ones.
            try await connection.run { c in
                _ = try QueueStore.finish(first.map { ($0.id, .succeeded([:])) }, worker: "w", on: c)
            }
            let third = try await Self.claim(48, on: connection).filter { $0.orderingKey == "person-hot" }
            #expect(third.map(\.id) == Array(hotIDs.dropFirst(7).prefix(third.count)))
            #expect(third.count >= 2)
            // With nothing else waiting, a key's backlog comes in full batches.
            try await connection.run { c in
                _ = try QueueStore.finish(third.map { ($0.id, .succeeded([:])) }, worker: "w", on: c)
                try c.execute("DELETE FROM queue.jobs WHERE ordering_key IS NULL")
            }
            let alone = try await Self.claim(50, on: connection)
            #expect(alone.count == 50 && alone.allSatisfy { $0.orderingKey == "person-hot" })
        }
    }

    @Test("a live job of a person whose bulk job is pending takes that bulk job along, in order")
    func priorityInheritance() async throws {
        try await QueueTest.withDatabase { _, connection in
            // The person's bulk job is far back in the bulk backlog.
            try await Self.enqueue(100, group: "org-a", priority: 10, on: connection)
            try await Self.enqueue(1, group: "org-a", priority: 10, orderingKey: "person-1", on: connection)
            try await Self.enqueue(1, group: "org-a", priority: 0, orderingKey: "person-1", on: connection)
            let claimed = try await Self.claim(2, on: connection)
            #expect(claimed.map(\.orderingKey) == ["person-1", "person-1"])
            #expect(claimed.map(\.id) == claimed.map(\.id).sorted())
        }
    }

    @Test("urgent jobs with bulk work waiting: a small batch of them, topped up; other slots skip them meanwhile")
    func urgentBatches() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(100, group: "org-a", priority: 10, on: connection)
            try await Self.enqueue(3, group: "org-b", priority: 0, on: connection)
            let urgent = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 50, worker: "w", lease: .seconds(30), urgentFill: 5, on: c)
            }
            #expect(urgent.urgent && urgent.priority == 0)
            #expect(urgent.jobs.count == 5)
            try await Self.enqueue(3, group: "org-b", priority: 0, on: connection)
            let bulk = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 50, worker: "w", lease: .seconds(30), afterPriority: 0, on: c)
            }
            #expect(!bulk.urgent && bulk.priority == 10 && bulk.jobs.count == 50)
            // Without a top-up the urgent batch is the urgent jobs alone; then bulk alone is no
            // urgent work, and comes in a full batch.
            let live = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 50, worker: "w", lease: .seconds(30), on: c)
            }
            #expect(live.urgent && live.jobs.count == 3)
            let last = try await connection.run { c in
                try QueueStore.claim(queues: ["test"], limit: 50, worker: "w", lease: .seconds(30), on: c)
            }
            #expect(!last.urgent && last.jobs.count == 48)
        }
    }

    @Test("aging: under a full stream of urgent jobs, a bulk job that waited long gets part of the batch")
    func aging() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(
                3, group: "org-a", priority: 10, runAt: Date(timeIntervalSinceNow: -120), on: connection)
            try await Self.enqueue(100, group: "org-b", priority: 0, on: connection)
            let withoutAging = try await Self.claim(20, on: connection)
            #expect(withoutAging.allSatisfy { $0.queue == "test" } && withoutAging.count == 20)
            let priorities = try await QueueTest.scalar(
                "SELECT max(priority) FROM queue.jobs WHERE state = 'running'", Int.self, on: connection)
            #expect(priorities == 0, "without aging only the urgent priority runs")
            let aged = try await Self.claim(20, aging: .seconds(60), on: connection)
            let bulk = try await QueueTest.scalar(
                "SELECT count(*) FROM queue.jobs WHERE state = 'running' AND priority = 10", Int.self, on: connection)
            #expect(aged.count == 20)
            #expect(bulk == 2, "a tenth of the batch went to the bulk jobs that waited two minutes")
        }
    }

    @Test("scheduled jobs and retries are held until due, then the sweeper returns them; stranded holds are released")
    func sweeper() async throws {
        try await QueueTest.withDatabase { _, connection in
            try await Self.enqueue(2, group: "org-a", runAt: Date(timeIntervalSinceNow: 0.5), on: connection)
            #expect(try await QueueTest.scalar("SELECT count(*) FROM queue.jobs WHERE hold = 'scheduled'", Int.self, on: connection) == 2)
            #expect(try await Self.claim(10, on: connection).isEmpty)
            var swept = 0
            let due = try await eventually(timeout: .seconds(10)) {
                swept += try await connection.run { c in try QueueStore.sweep(on: c) }
                return swept == 2
            }
            #expect(due, "the sweeper returned \(swept) of the 2 jobs once due")
            #expect(try await Self.claim(10, on: connection).count == 2)

            // A hold whose reason is gone (its key has no earlier unfinished job) is released.
            try await Self.enqueue(1, group: "org-a", orderingKey: "person-2", on: connection)
            try await connection.run { c in try c.execute("UPDATE queue.jobs SET hold = 'ordering' WHERE ordering_key = 'person-2'") }
            #expect(try await Self.claim(10, on: connection).isEmpty)
            #expect(try await connection.run { c in try QueueStore.sweep(on: c) } == 1)
            #expect(try await Self.claim(10, on: connection).count == 1)
        }
    }

    @Test("the claim is index-driven with 10,000 organizations, 100,000 finished jobs and a 10,000-job hot key")
    func claimPlan() async throws {
        try await QueueTest.withDatabase { database, connection in
            try await connection.run { c in
                try c.executeScript(
                    """
                    INSERT INTO queue.jobs (queue, kind, payload, state, finished_at, fairness_key, fair_seq)
                    SELECT 'test', 'test.x', '{}', 'succeeded', now(), 'org-' || (g % 10000), g FROM generate_series(1, 100000) g;
                    INSERT INTO queue.jobs (queue, kind, payload, fairness_key, fair_seq)
                    SELECT 'test', 'test.x', '{}', 'org-' || (g % 10000), g / 10000 FROM generate_series(1, 30000) g;
                    INSERT INTO queue.jobs (queue, kind, payload, fairness_key, ordering_key, fair_seq)
                    SELECT 'test', 'test.x', '{}', 'org-hot', 'person-hot', -1 FROM generate_series(1, 10000) g;
                    ANALYZE queue.jobs;
                    """)
            }
            let logs = CapturedLogs()
            let explained = try await PostgresConnection.connect(database, logger: logs.logger(level: .debug))
            try await explained.run { c in
                try c.executeScript(
                    """
                    LOAD 'auto_explain';
                    SET auto_explain.log_min_duration = 0;
                    SET auto_explain.log_nested_statements = on;
                    SET auto_explain.log_level = 'notice';
                    SET client_min_messages = 'notice';
                    """)
                // The hot key is at the head of the queue: the first claim takes its head and a
                // few followers; then it and the next claims set the rest of it aside and come back full.
                let first = try QueueStore.claim(queues: ["test"], limit: 50, worker: "w", lease: .seconds(30), on: c).jobs
                #expect(first.count == 50 && first.filter { $0.orderingKey == "person-hot" }.count == 7)
                for _ in 0..<3 {
                    let claimed = try QueueStore.claim(queues: ["test"], limit: 50, worker: "w", lease: .seconds(30), on: c).jobs
                    #expect(claimed.count == 50)
                }
            }
            let plans = logs.all.map(\.message).filter { $0.contains("plan:") && $0.contains("queue.jobs") }
            #expect(plans.count >= 3)
            #expect(plans.allSatisfy { !$0.contains("Seq Scan on jobs") }, "\(plans.filter { $0.contains("Seq Scan on jobs") })")
            #expect(plans.contains { $0.contains("Index Scan using jobs_claim_idx") })
            #expect(plans.allSatisfy { !$0.contains("Sort Method") || !$0.contains("jobs_claim_idx") })
        }
    }
}
