import NIOCore
import NIOPosix
import Postgres
import Synchronization
import TestSupport
import Testing

@testable import HTTPFront

/// Resuming callers on the event loops they ran on (`HomeLoops`), and the shared statement's
/// callers on event loops.
@Suite("Resuming callers on their own event loops")
struct HomeLoopsTests {
    /// An actor whose code runs on one event loop's thread, as a request's handler does in `serve`.
    actor OnLoop {
        let loop: any EventLoop
        nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }

        init(_ loop: any EventLoop) { self.loop = loop }

        func current() -> (any EventLoop)? { HomeLoops.current }

        func run(_ statement: SharedStatement<Int, Int>, _ inputs: [Int]) async throws -> [Int] {
            try await statement.run(inputs)
        }
    }

    @Test("the current loop is the one the caller runs on, and none off the loops")
    func current() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let (first, second) = (group.next(), group.next())
        #expect(first !== second)
        #expect(await OnLoop(first).current() === first)
        #expect(await OnLoop(second).current() === second)
        #expect(HomeLoops.current == nil)
        try await group.shutdownGracefully()
    }

    @Test("each item runs on its own loop, in order; an item with no loop runs at once, here")
    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = [group.next(), group.next()]
        let seen = Mutex<[(item: Int, loop: Int?)]>([])
        let done = Atomic<Int>(0)
        let items: [(home: (any EventLoop)?, item: Int)] = (0..<30).map { ($0 % 3 == 2 ? nil : loops[$0 % 3], $0) }
        HomeLoops.run(items) { item in
            let on = loops.firstIndex { $0.inEventLoop }
            seen.withLock { $0.append((item, on)) }
            done.add(1, ordering: .sequentiallyConsistent)
        }
        // The items without a loop ran before `run` returned.
        let atOnce = seen.withLock { $0 }.filter { $0.item % 3 == 2 }
        #expect(atOnce.count == 10)
        #expect(atOnce.allSatisfy { $0.loop == nil })
        while done.load(ordering: .sequentiallyConsistent) < 30 { try await Task.sleep(for: .milliseconds(1)) }
        let all = seen.withLock { $0 }
        for index in 0..<2 {
            let onLoop = all.filter { $0.item % 3 == index }
            #expect(onLoop.map(\.item) == Array(stride(from: index, to: 30, by: 3)))
            #expect(onLoop.allSatisfy { $0.loop == index }, "items of loop \(index) ran elsewhere: \(onLoop)")
        }
        try await group.shutdownGracefully()
    }

    @Test("callers on event loops share statements and get their own answers and failures")
    func sharedFromLoops() async throws {
        try await TestDatabase.withScratch { database in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            let callers = [OnLoop(group.next()), OnLoop(group.next())]
            let pool = PostgresConnectionPool(configuration: database, size: 2, logger: TestDatabase.quietLogger)
            let statement = SharedStatement<Int, Int>(pool: pool, runners: 1, maximumInputs: 40) { inputs, c throws(PostgresError) in
                // Division by zero for a batch holding a 0.
                try c.query("SELECT 100 / x AS y FROM unnest(\(inputs)::int[]) WITH ORDINALITY AS u(x, n) ORDER BY n")
                    .map { row throws(PostgresError) in try row.decode(Int.self, "y") }
            }
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for caller in 1...200 {
                    tasks.addTask {
                        let inputs = [caller, caller + 1]
                        let outputs = try await callers[caller % 2].run(statement, inputs)
                        #expect(outputs == inputs.map { 100 / $0 })
                    }
                }
                try await tasks.waitForAll()
            }
            await #expect(throws: PostgresError.self) { try await callers[0].run(statement, [5, 0]) }
            #expect(try await callers[1].run(statement, [50]) == [2])
            await pool.close()
            try await group.shutdownGracefully()
        }
    }
}
