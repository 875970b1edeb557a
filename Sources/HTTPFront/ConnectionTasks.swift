import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// The server's connections, each run as a task of its own rather than as a child of the
/// server's one task group.
///
/// Hummingbird runs every connection as a child task of one discarding task group, and the
/// Swift runtime removes a finished child by walking the group's list of children: every
/// connection that closes costs time in proportion to the connections still open. With 5,000
/// idle connections held open, `serve`'s CPU per short connection doubled (352 → 736 µs,
/// docs/http.md). Here the group's child only starts the connection's task and returns, so
/// the list stays short; the tasks are kept in a dictionary, and ``drain(timeout:)`` waits
/// for them at shutdown, as the task group did.
final class ConnectionTasks: Sendable {
    private struct Running {
        var next = 0
        var tasks: [Int: Task<Void, Never>] = [:]
    }

    private let running = Mutex(Running())

    /// The connections open now.
    var count: Int { running.withLock { $0.tasks.count } }

    /// Runs `body` (one connection) as a task of its own, remembered until it ends.
    func run(_ body: @escaping @Sendable () async -> Void) {
        running.withLock { running in
            let id = running.next
            running.next += 1
            // The task cannot remove itself before it is stored: the removal takes this lock.
            running.tasks[id] = Task {
                await body()
                self.finished(id)
            }
        }
    }

    private func finished(_ id: Int) {
        _ = running.withLock { $0.tasks.removeValue(forKey: id) }
    }

    /// Waits until every connection has ended (the server, shutting down, closes idle ones and
    /// lets the others finish their requests), at most `timeout`; then cancels what is left
    /// and returns how many that was.
    func drain(timeout: Duration) async -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            let open = running.withLock { Array($0.tasks.values) }
            if open.isEmpty { return 0 }
            if ContinuousClock.now >= deadline {
                for task in open { task.cancel() }
                return open.count
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// A child channel that hands each connection to ``ConnectionTasks`` (see there).
struct SeparateConnections<Inner: ServerChildChannel>: ServerChildChannel {
    typealias Value = Inner.Value

    let inner: Inner
    let tasks: ConnectionTasks

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        inner.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        tasks.run { await inner.handle(value: value, logger: logger) }
    }
}
