import JobQueue
import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// Wakes the requests that wait for their jobs: one LISTEN connection on `queue_jobs_finished`
/// for the whole process (the completion announces jobs flagged `notify_finished`), never a
/// poll per request. An announcement carries the job's outcome as stored (see
/// ``JobOutcome/announced(_:)``), so a woken request needs no read.
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
        /// Announced (with its outcome when the announcement carried it), or timed out, before
        /// the waiter suspended.
        case woken(JobOutcome?)
        case suspended(CheckedContinuation<JobOutcome?, Never>)
    }

    /// The waits' deadlines, soonest first, and the one task that ends the waits that reach
    /// theirs. A task sleeping per request (and its timer in Dispatch, kept until it fired)
    /// cost `serve` about a tenth of its CPU per synchronous request.
    private struct Deadlines {
        struct Deadline {
            let at: ContinuousClock.Instant
            let id: Int64
            let token: Int
        }

        /// Sorted by `at`. Waits that ended early stay until their deadline comes (nothing to
        /// do for them then): at most the requests of one `--wait`.
        var pending: [Deadline] = []
        var head = 0
        /// When the expiry task will look next; nil when no task runs.
        var wakeAt: ContinuousClock.Instant?
        var task: Task<Void, Never>?

        mutating func insert(_ deadline: Deadline) {
            // Waits of one process share one timeout, so a new deadline is nearly always last.
            var index = pending.endIndex
            while index > head, pending[index - 1].at > deadline.at { index -= 1 }
            pending.insert(deadline, at: index)
        }

        /// Removes and returns the deadlines reached by `now`.
        mutating func due(by now: ContinuousClock.Instant) -> [Deadline] {
            let start = head
            while head < pending.endIndex, pending[head].at <= now { head += 1 }
            let due = Array(pending[start..<head])
            if head > 1024, head * 2 > pending.count {
                pending.removeFirst(head)
                head = 0
            }
            return due
        }

        var next: ContinuousClock.Instant? { head < pending.endIndex ? pending[head].at : nil }
    }

    private let configuration: PostgresConfiguration
    private let logger: Logger
    private let deadlines = Mutex(Deadlines())
    /// How late past its deadline a wait may end: the expiry task looks at most this often.
    private let expiryResolution = Duration.milliseconds(10)
    private let entries = Mutex<[Int64: [Int: Entry]]>([:])
    private let announced = Mutex(Announced())
    private let rememberedIDs = 100_000
    /// The listening session: a new number for every LISTEN that succeeds; nil while not listening.
    private let session = Mutex<Int?>(nil)
    private let sessions = Atomic<Int>(0)
    private let tokens = Atomic<Int>(0)
    private let listener = Mutex<PostgresConnection?>(nil)
    private let stopped = Atomic<Bool>(false)
    /// Set by ``stopWaiting()``: no request waits any more.
    private let closing = Atomic<Bool>(false)

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

    /// Waits until job `id` is announced finished, or `timeout` passes, and returns its
    /// outcome (nil: not finished): the one its announcement carried, else what `read` finds.
    /// When the job may have finished unannounced to this waiter since `ticket` was taken,
    /// `read` is asked first.
    public func wait(
        for id: Int64, ticket: Ticket, timeout: Duration, read: @Sendable () async throws -> JobOutcome?
    ) async throws -> JobOutcome? {
        let token = tokens.add(1, ordering: .relaxed).newValue
        entries.withLock { $0[id, default: [:]][token] = .pending }
        let alreadyAnnounced = announced.withLock { $0.ids.contains(id) }
        let mayHaveMissed = ticket.session == nil || session.withLock { $0 } != ticket.session
        if alreadyAnnounced || mayHaveMissed {
            // What was announced may predate a retry: the table says.
            if let early = try await read(), early.state.isFinished {
                remove(id, token)
                return early
            }
        }
        expire(id, token: token, at: .now + timeout)
        let carried = await withCheckedContinuation { continuation in
            let woken = entries.withLock { entries -> JobOutcome?? in
                switch entries[id]?[token] {
                case .pending? where closing.load(ordering: .sequentiallyConsistent):
                    return .some(nil)  // shutting down: the job as it stands now
                case .pending?:
                    entries[id]?[token] = .suspended(continuation)
                    return .none
                case .woken(let outcome)?: return .some(outcome)
                default: return .some(nil)
                }
            }
            if let woken { continuation.resume(returning: woken) }
        }
        remove(id, token)
        if let carried { return carried }
        guard let stored = try await read(), stored.state.isFinished else { return nil }
        return stored
    }

    /// Ends the wait `token` for `id` at `instant` unless it ended before.
    private func expire(_ id: Int64, token: Int, at instant: ContinuousClock.Instant) {
        deadlines.withLock { deadlines in
            deadlines.insert(.init(at: instant, id: id, token: token))
            // A task runs and will look by then (give or take the resolution): nothing to do.
            if let wakeAt = deadlines.wakeAt, wakeAt <= instant + expiryResolution { return }
            deadlines.task?.cancel()
            deadlines.wakeAt = instant
            deadlines.task = Task { await self.expireLoop(firstAt: instant) }
        }
    }

    /// Sleeps until the next deadline, wakes the waits that reached theirs, until none is left.
    private func expireLoop(firstAt first: ContinuousClock.Instant) async {
        var wakeAt = first
        while true {
            do {
                try await Task.sleep(until: wakeAt, tolerance: expiryResolution, clock: .continuous)
            } catch {
                return  // replaced by a task that must look sooner
            }
            let now = ContinuousClock.now
            let (due, goOn) = deadlines.withLock { deadlines -> ([Deadlines.Deadline], Bool) in
                guard !Task.isCancelled else { return ([], false) }
                let due = deadlines.due(by: now)
                guard let next = deadlines.next else {
                    deadlines.wakeAt = nil
                    deadlines.task = nil
                    return (due, false)
                }
                wakeAt = max(next, now + expiryResolution)
                deadlines.wakeAt = wakeAt
                return (due, true)
            }
            for deadline in due { wake(deadline.id, token: deadline.token) }
            if !goOn { return }
        }
    }

    private func remove(_ id: Int64, _ token: Int) {
        entries.withLock { entries in
            entries[id]?[token] = nil
            if entries[id]?.isEmpty == true { entries[id] = nil }
        }
    }

    /// Wakes one waiter of `id`, or all of them, handing them `outcome` when known.
    private func wake(_ id: Int64, token: Int? = nil, outcome: JobOutcome? = nil) {
        let continuations = entries.withLock { entries -> [CheckedContinuation<JobOutcome?, Never>] in
            guard var waiters = entries[id] else { return [] }
            var woken: [CheckedContinuation<JobOutcome?, Never>] = []
            for (key, entry) in waiters where token == nil || key == token {
                if case .suspended(let continuation) = entry { woken.append(continuation) }
                waiters[key] = .woken(outcome)
            }
            entries[id] = waiters
            return woken
        }
        for continuation in continuations { continuation.resume(returning: outcome) }
    }

    /// Remembers and wakes the ids of one notification: one job with its outcome
    /// ("12 succeeded  {...}"), or bare ids ("12,13,20").
    private func announce(_ payload: String) {
        let jobs = JobOutcome.announced(payload)
        announced.withLock { announced in
            for job in jobs { announced.insert(job.id, keeping: rememberedIDs) }
        }
        for job in jobs { wake(job.id, outcome: job.outcome) }
    }

    /// Ends every wait now, and any later one at once: each request reads its job once and is
    /// answered 200 (or the job's error) if it finished, 202 otherwise. `serve` calls it when it
    /// begins to shut down, so that the requests in flight do not wait out `--wait` (10 s by
    /// default, perhaps longer than the orchestrator's grace period) before the process may exit.
    public func stopWaiting() {
        closing.store(true, ordering: .sequentiallyConsistent)
        wakeAll()
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

/// A finished job's outcome as stored: its state, and its result (succeeded) or error object
/// (failed, cancelled) as the text PostgreSQL gives for the stored `jsonb`, with the error's
/// HTTP status.
public struct JobOutcome: Sendable, Equatable {
    public let state: JobState
    public let body: String?
    public let status: Int?

    public init(state: JobState, body: String?, status: Int?) {
        self.state = state
        self.body = body
        self.status = status
    }

    /// The jobs a `queue_jobs_finished` payload names. The completion sends one notification
    /// per job, `<id> <state> <status> <body>` (status empty for a success; the body is
    /// `result::text` or `last_error::text`, byte for byte), or only `<id>` when that would not
    /// fit in a notification; older workers sent comma-separated ids. Parts that do not parse
    /// are skipped.
    public static func announced(_ payload: String) -> [(id: Int64, outcome: JobOutcome?)] {
        let parts = payload.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4 else {
            return payload.split(separator: ",").compactMap { part in Int64(part).map { ($0, nil) } }
        }
        guard let id = Int64(parts[0]) else { return [] }
        guard let state = JobState(rawValue: String(parts[1])), state.isFinished else { return [(id, nil)] }
        let outcome = JobOutcome(state: state, body: String(parts[3]), status: Int(parts[2]))
        return [(id, outcome)]
    }
}
