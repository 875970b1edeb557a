@testable import HTTPFront
import Synchronization
import Testing

/// The server's connections as tasks of their own: each is remembered until it ends, and the
/// drain at shutdown waits for them, cancelling what outlives its timeout.
@Suite("The server's connection tasks")
struct ConnectionTasksTests {
    @Test("every connection is counted while it runs and forgotten when it ends; the drain waits for all")
    func drainWaits() async throws {
        let tasks = ConnectionTasks()
        let ended = Atomic<Int>(0)
        for n in 0..<200 {
            tasks.run {
                try? await Task.sleep(for: .milliseconds(50 + n % 50))
                ended.add(1, ordering: .relaxed)
            }
        }
        #expect(tasks.count > 0)
        #expect(await tasks.drain(timeout: .seconds(10)) == 0)
        let count = ended.load(ordering: .relaxed)
        #expect(count == 200)
        #expect(tasks.count == 0)
    }

    @Test("a connection that outlives the drain's timeout is cancelled and counted as cut")
    func drainCuts() async throws {
        let tasks = ConnectionTasks()
        let cancelled = Atomic<Bool>(false)
        tasks.run {
            try? await Task.sleep(for: .seconds(60))
            cancelled.store(Task.isCancelled, ordering: .relaxed)
        }
        tasks.run {}
        let started = ContinuousClock.now
        #expect(await tasks.drain(timeout: .milliseconds(300)) == 1)
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(await tasks.drain(timeout: .seconds(5)) == 0)
        let wasCancelled = cancelled.load(ordering: .relaxed)
        #expect(wasCancelled)
    }
}
