import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// Wakes the requests that wait for their jobs: one LISTEN connection on `queue_jobs_finished`
/// for the whole process (the completion announces jobs flagged `notify_finished`), never a
/// poll per request.
public final class JobWaiter: Service, Sendable {
    private enum Entry {
        /// Registered; not announced yet, nobody suspended yet.
        case pending
        /// Announced (or timed out) before the waiter suspended.
        case woken
        case suspended(CheckedContinuation<Void, Never>)
    }

    private let configuration: PostgresConfiguration
    private let logger: Logger
    private let entries = Mutex<[Int64: [Int: Entry]]>([:])
    private let tokens = Atomic<Int>(0)
    private let listener = Mutex<PostgresConnection?>(nil)
    private let stopped = Atomic<Bool>(false)

    public init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Waits until job `id` is announced finished, or `timeout` passes, and returns what
    /// `outcome` makes of the job then (nil: not finished). `outcome` is also asked once right
    /// after registering: the job may have finished before.
    public func wait<Outcome: Sendable>(
        for id: Int64, timeout: Duration, outcome: @Sendable () async throws -> Outcome?
    ) async throws -> Outcome? {
        let token = tokens.add(1, ordering: .relaxed).newValue
        entries.withLock { $0[id, default: [:]][token] = .pending }
        if let early = try await outcome() {
            remove(id, token)
            return early
        }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.wake(id, token: token)
        }
        await withCheckedContinuation { continuation in
            let resumeNow = entries.withLock { entries -> Bool in
                guard case .pending? = entries[id]?[token] else { return true }
                entries[id]?[token] = .suspended(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
        timer.cancel()
        remove(id, token)
        return try await outcome()
    }

    private func remove(_ id: Int64, _ token: Int) {
        entries.withLock { entries in
            entries[id]?[token] = nil
            if entries[id]?.isEmpty == true { entries[id] = nil }
        }
    }

    /// Wakes one waiter of `id`, or all of them.
    private func wake(_ id: Int64, token: Int? = nil) {
        let continuations = entries.withLock { entries -> [CheckedContinuation<Void, Never>] in
            guard var waiters = entries[id] else { return [] }
            var woken: [CheckedContinuation<Void, Never>] = []
            for (key, entry) in waiters where token == nil || key == token {
                if case .suspended(let continuation) = entry { woken.append(continuation) }
                waiters[key] = .woken
            }
            entries[id] = waiters
            return woken
        }
        for continuation in continuations { continuation.resume() }
    }

    private func wakeAll() {
        for id in entries.withLock({ Array($0.keys) }) { wake(id) }
    }

    /// Listens until shut down, reconnecting after failures; then wakes every waiter.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.listen()
        } onGracefulShutdown: {
            self.stopped.store(true, ordering: .sequentiallyConsistent)
            self.listener.withLock { $0 }?.wakeUp()
        }
        wakeAll()
    }

    private var isStopped: Bool { stopped.load(ordering: .sequentiallyConsistent) }

    private func listen() async {
        while !isStopped {
            do {
                let connection = try await PostgresConnection.connect(configuration, logger: logger)
                listener.withLock { $0 = connection }
                try await connection.listen("queue_jobs_finished")
                // Whatever finished while nobody listened: every waiter looks again.
                wakeAll()
                while !isStopped {
                    for notification in try await connection.waitForNotifications(timeout: .seconds(1)) {
                        for part in notification.payload.split(separator: ",") {
                            if let id = Int64(part) { wake(id) }
                        }
                    }
                }
                listener.withLock { $0 = nil }
                await connection.close()
            } catch {
                logger.warning("job listener failed; reconnecting", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}
