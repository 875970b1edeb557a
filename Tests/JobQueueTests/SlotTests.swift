import Foundation
import JSON
@testable import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Slots joining each other")
struct SlotTests {
    /// Pairs of runs whose times overlap: jobs that ran at the same time, in different slots
    /// (the jobs of one batch run one after another).
    static let overlaps: PostgresQuery = """
        SELECT count(*)::int FROM test_runs a JOIN test_runs b ON a.id < b.id AND a.at < b.ended AND b.at < a.ended
        """

    @Test("the rule: stand by while another slot's claim is young, unless a claim left work behind")
    func rule() {
        let activity = SlotActivity(joinAfter: .milliseconds(50))
        let start = ContinuousClock.now
        func at(_ milliseconds: Int) -> ContinuousClock.Instant { start + .milliseconds(milliseconds) }
        #expect(activity.mayClaim(0, now: at(0)), "nobody is busy: claim")
        #expect(!activity.mayClaim(1, now: at(1)), "slot 0 is claiming")
        activity.claimed(by: 0, jobs: 5, leftMore: false)
        #expect(activity.isBusy(0, since: at(0)))
        #expect(!activity.mayClaim(1, now: at(10)), "slot 0's batch is young")
        #expect(activity.mayClaim(1, now: at(60)), "slot 0's batch ran past joinAfter")
        activity.claimed(by: 1, jobs: 8, leftMore: true)
        #expect(activity.mayClaim(2, now: at(61)), "a full claim: a backlog, the others join")
        activity.claimed(by: 2, jobs: 0, leftMore: false)
        #expect(!activity.mayClaim(3, now: at(62)), "the backlog is gone, slot 1's batch is young")
        #expect(!activity.mayClaim(0, now: at(63)), "slot 0, its batch done, stands by behind slot 1's young one")
        #expect(!activity.isBusy(0, since: at(0)), "standing by, slot 0 is not busy")
        activity.idle(1)
        #expect(activity.mayClaim(3, now: at(64)), "nobody is busy any more")
        #expect(!activity.mayClaim(2, now: at(65)), "slot 3 is claiming")
        #expect(activity.mayClaim(3, now: at(66)), "a slot is never held back by itself")
        let never = SlotActivity(joinAfter: .zero)
        #expect(never.mayClaim(0, now: at(0)))
        never.claimed(by: 0, jobs: 3, leftMore: false)
        #expect(never.mayClaim(1, now: at(0)), "joinAfter zero: never stand by")
    }

    @Test("the claim gate: one claim at a time, and every waiter gets its turn")
    func claimGate() async throws {
        let gate = ClaimGate()
        let inside = Counter()
        let overlaps = Counter()
        let entered = Counter()
        await gate.enter()  // held while the others line up
        // 50 claimers, 40 turns each: turns handed to waiters and turns taken by a claimer
        // coming back meet all the time.
        let tasks = (0..<50).map { _ in
            Task {
                for _ in 0..<40 {
                    await gate.enter()
                    inside.add()
                    if inside.count > 1 { overlaps.add() }
                    await Task.yield()
                    inside.subtract()
                    entered.add()
                    gate.leave()
                    await Task.yield()
                }
            }
        }
        try await Task.sleep(for: .milliseconds(200))  // let the first ones wait
        gate.leave()
        let finished = await eventually(timeout: .seconds(20)) { entered.count == 2000 }
        #expect(finished, "\(2000 - entered.count) turn(s) never came")
        #expect(overlaps.count == 0, "two claims at once")
        if finished {
            for task in tasks { await task.value }
        }
    }

    @Test("single jobs at random moments, four slots: each runs at once, none waits for a poll", arguments: 1...3)
    func noWakeUpLost(seed: Int) async throws {
        try await QueueTest.withDatabase { database, connection in
            var random = SeededGenerator(state: UInt64(seed))
            let handler = ScriptedHandler { job, _ in
                if case .number(let pause)? = job.payload["pause_ms"], let pause = pause.intValue { try await Task.sleep(for: .milliseconds(pause)) }
                return [:]
            }
            var configuration = QueueTest.configuration(concurrency: 4, batchSize: 1000, drain: false)
            configuration.pollInterval = .seconds(30)  // its tick would wake a slot: far beyond the bound
            configuration.joinAfter = .milliseconds(20)
            let pauses = (0..<150).map { _ in (job: Int(random.next() % 5), gap: Int(random.next() % 9)) }
            let feeder = Task {
                for pause in pauses {
                    try await QueueTest.enqueue(1, payload: ["pause_ms": .number(JSONNumber(pause.job))], on: connection)
                    try await Task.sleep(for: .milliseconds(pause.gap))
                }
            }
            try await QueueTest.runWorker(
                configuration, database: database, handlers: [handler],
                until: "SELECT count(*) = 150 FROM queue.jobs WHERE state = 'succeeded'", timeout: .seconds(20))
            try await feeder.value
            let slowest = try await QueueTest.scalar(
                "SELECT max(extract(epoch FROM finished_at - created_at))::float8 FROM queue.jobs", Double.self, on: connection)
            // A wake-up lost shows as a wait for the poll (30 s); 3 s leaves room for a busy machine.
            #expect(slowest < 3.0, "a job waited \(slowest) s from its enqueue to its end")
        }
    }

    @Test("a steady trickle of jobs runs in one slot at a time, not split over idle slots")
    func trickleInOneSlot() async throws {
        try await QueueTest.withDatabase { database, connection in
            let handler = ScriptedHandler { _, _ in
                try await Task.sleep(for: .milliseconds(15))
                return [:]
            }
            // A claim never comes back full here (1,000 a claim), so only the rule under test
            // keeps the idle slots from claiming what each notification announces.
            var configuration = QueueTest.configuration(concurrency: 4, batchSize: 1000, drain: false)
            configuration.adaptiveBatchSize = false
            configuration.joinAfter = .seconds(10)
            let feeder = Task {
                for _ in 0..<50 {
                    try await QueueTest.enqueue(1, on: connection)
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            try await QueueTest.runWorker(
                configuration, database: database, handlers: [handler],
                until: "SELECT count(*) = 50 FROM queue.jobs WHERE state = 'succeeded'")
            try await feeder.value
            let overlapping = try await QueueTest.scalar(Self.overlaps, Int.self, on: connection)
            #expect(overlapping == 0, "\(overlapping) pairs of jobs ran at the same time in different slots")
        }
    }

    @Test("a batch that runs past joinAfter is joined: a new job does not wait for it", arguments: [0, 400])
    func slowBatchJoined(newJobAfterMilliseconds: Int) async throws {
        try await QueueTest.withDatabase { database, connection in
            let handler = ScriptedHandler { job, _ in
                if job.payload["slow"] == true { try await Task.sleep(for: .seconds(2)) }
                return [:]
            }
            var configuration = QueueTest.configuration(concurrency: 2, batchSize: 1000, drain: false)
            configuration.adaptiveBatchSize = false
            configuration.joinAfter = .milliseconds(200)
            configuration.pollInterval = .seconds(5)  // its tick would wake a slot standing by too
            let feeder = Task {
                try await QueueTest.enqueue(1, payload: ["slow": true], on: connection)
                while try await QueueTest.scalar("SELECT count(*) = 0 FROM queue.jobs WHERE state = 'running'", Bool.self, on: connection) {
                    try await Task.sleep(for: .milliseconds(5))
                }
                // At once (the join at joinAfter takes it), or after joinAfter (its notification
                // must wake a slot: the join happened already, and found nothing). 400 ms is for
                // a notification that would not wake a slot while another is busy: the quick
                // job would then wait for the slow batch.
                try await Task.sleep(for: .milliseconds(newJobAfterMilliseconds))
                try await QueueTest.enqueue(1, payload: ["slow": false], on: connection)
            }
            try await QueueTest.runWorker(
                configuration, database: database, handlers: [handler],
                until: "SELECT count(*) = 2 FROM queue.jobs WHERE state = 'succeeded'")
            try await feeder.value
            let quickFirst = try await QueueTest.scalar(
                """
                SELECT (SELECT finished_at FROM queue.jobs WHERE payload ->> 'slow' = 'false')
                     < (SELECT finished_at FROM queue.jobs WHERE payload ->> 'slow' = 'true')
                """, Bool.self, on: connection)
            #expect(quickFirst, "the quick job waited for the slow batch to end")
        }
    }

    @Test("a backlog is worked by several slots at once")
    func backlogUsesSlots() async throws {
        try await QueueTest.withDatabase { database, connection in
            let handler = ScriptedHandler { _, _ in
                try await Task.sleep(for: .milliseconds(3))
                return [:]
            }
            try await QueueTest.enqueue(300, on: connection)
            var configuration = QueueTest.configuration(concurrency: 4, batchSize: 10)
            configuration.joinAfter = .seconds(10)
            try await QueueTest.runWorker(configuration, database: database, handlers: [handler])
            #expect(try await QueueTest.scalar("SELECT count(*)::int FROM queue.jobs WHERE state = 'succeeded'", Int.self, on: connection) == 300)
            let overlapping = try await QueueTest.scalar(Self.overlaps, Int.self, on: connection)
            #expect(overlapping > 0, "no two slots ever ran at the same time")
        }
    }
}
