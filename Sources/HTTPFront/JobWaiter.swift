import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// Wakes the requests that wait for their jobs: one LISTEN connection on `queue_jobs_finished`
/// for the whole process (the completion announces jobs flagged `notify_finished`), never a
/// poll per request.
///
/// A job can finish before its request starts waiting (between the insert's commit and the
/// registration). The waiter remembers the ids announced lately, so such a request needs no
/// read to find out; only when the listener was not listening the whole time since before the
/// insert (a ``Ticket`` taken then tells) does the request look at the job first.
public final class JobWaiter: Service, Sendable {
    /// Taken before a job is inserted: which listening session was up then, if one was.
    public struct Ticket: Sendable {
        let session: Int?

        /// A ticket that makes the waiter look at the job before waiting.
        public static let lookFirst = Ticket(session: nil)
    }

    /// The ids announced lately, the oldest forgotten first.
    private struct Announced {
        var ids: Set<Int64> = []
        var order: [Int64] = []
        var head = 0

        mutating func insert(_ id: Int64, keeping capacity: Int) {
            guard ids.insert(id).inserted else { return }
            if order.count < capacity {
                order.append(id)
            } else {
                ids.remove(order[head])
                order[head] = id
                head = (head + 1) % capacity
            }
        }
    }

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
    private let announced = Mutex(Announced())
    private let rememberedIDs = 100_000
    /// The listening session: a new number for every LISTEN that succeeds; nil while not listening.
    private let session = Mutex<Int?>(nil)
    private let sessions = Atomic<Int>(0)
    private let tokens = Atomic<Int>(0)
    private let listener = Mutex<PostgresConnection?>(nil)
    private let stopped = Atomic<Bool>(false)

    public init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Whether the listener is listening now.
    public var isListening: Bool { session.withLock { $0 } != nil }

    /// A ticket to take before inserting a job that will be waited for.
    public func ticket() -> Ticket {
        Ticket(session: session.withLock { $0 })
    }

    /// Waits until job `id` is announced finished, or `timeout` passes, and returns what
    /// `outcome` makes of the job then (nil: not finished). When the job may have finished
    /// unannounced to this waiter since `ticket` was taken, `outcome` is asked first.
    public func wait<Outcome: Sendable>(
        for id: Int64, ticket: Ticket, timeout: Duration, outcome: @Sendable () async throws -> Outcome?
    ) async throws -> Outcome? {
        let token = tokens.add(1, ordering: .relaxed).newValue
        entries.withLock { $0[id, default: [:]][token] = .pending }
        let alreadyAnnounced = announced.withLock { $0.ids.contains(id) }
        let mayHaveMissed = ticket.session == nil || session.withLock { $0 } != ticket.session
        if alreadyAnnounced || mayHaveMissed {
            if let early = try await outcome() {
                remove(id, token)
                return early
            }
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

    /// Remembers and wakes the ids of one notification ("12,13,20").
    private func announce(_ payload: String) {
        var ids: [Int64] = []
        for part in payload.split(separator: ",") {
            if let id = Int64(part) { ids.append(id) }
        }
        announced.withLock { announced in
            for id in ids { announced.insert(id, keeping: rememberedIDs) }
        }
        for id in ids { wake(id) }
    }

    private func wakeAll() {
        for id in entries.withLock({ Array($0.keys) }) { wake(id) }
    }

    /// Listens until shut down (or cancelled), reconnecting after failures; then wakes every
    /// waiter.
    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.listen()
        } onGracefulShutdown: {
            self.stopped.store(true, ordering: .sequentiallyConsistent)
            self.listener.withLock { $0 }?.wakeUp()
        }
        wakeAll()
    }

    private var isStopped: Bool { stopped.load(ordering: .sequentiallyConsistent) || Task.isCancelled }

    private func listen() async {
        while !isStopped {
            do {
                let connection = try await PostgresConnection.connect(configuration, logger: logger)
                listener.withLock { $0 = connection }
                try await connection.listen("queue_jobs_finished")
                let number = sessions.add(1, ordering: .relaxed).newValue
                session.withLock { $0 = number }
                // Whatever finished while nobody listened: every waiter looks again.
                wakeAll()
                while !isStopped {
                    for notification in try await connection.waitForNotifications(timeout: .seconds(1)) {
                        announce(notification.payload)
                    }
                }
                session.withLock { $0 = nil }
                listener.withLock { $0 = nil }
                await connection.close()
            } catch {
                session.withLock { $0 = nil }
                logger.warning("job listener failed; reconnecting", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }
}
