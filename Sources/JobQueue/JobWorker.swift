#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import Logging
import Postgres
import ServiceLifecycle
import Synchronization

/// How a ``JobWorker`` works; every field has a documented default.
public struct WorkerConfiguration: Sendable {
    /// The queues served. Default: `["contacts"]`.
    public var queues: [String] = ["contacts"]
    /// Batches in flight at once, each on its own connection. Default: 4.
    public var concurrency: Int = 4
    /// The most jobs claimed and run in one transaction. Default: 300. Each claim asks for
    /// fewer when little is waiting: the size starts small, doubles while claims come back
    /// full, and falls back to twice what the last claim found (see ``BatchSizer``).
    public var batchSize: Int = 300
    /// Adapt each claim's size to what is ready (see ``batchSize``); false claims `batchSize`
    /// every time. Default: true.
    public var adaptiveBatchSize = true
    /// How long a ready job of a less urgent priority may wait behind a steady stream of more
    /// urgent ones before part of each full batch goes to it. Default: 60 s; nil: never.
    public var aging: Duration? = .seconds(60)
    /// How long a claimed job stays leased without a heartbeat. Default: 60 s.
    public var lease: Duration = .seconds(60)
    /// The fallback poll for lost notifications and scheduled retries. Default: 1 s.
    public var pollInterval: Duration = .seconds(1)
    /// Exit once no job of the queues is ready to run now or running. Default: false.
    public var drain: Bool = false
    /// On shutdown, how long in-flight batches may take to finish. Default: 30 s.
    public var shutdownGracePeriod: Duration = .seconds(30)
    /// Delays between attempts after transient failures.
    public var retryPolicy = RetryPolicy()
    /// Immediate re-runs of a job that lost a race (unique or foreign-key violation, deadlock,
    /// serialization failure) before the failure counts. Default: 3.
    public var immediateRetries: Int = 3
    /// This worker's identity in `locked_by`. Default: host, process id and a random suffix.
    public var workerID: String = WorkerConfiguration.defaultWorkerID()
    /// The server's `statement_timeout` for the worker's sessions. Default (nil): the lease;
    /// `.zero` leaves the server's own.
    public var statementTimeout: Duration? = nil
    /// After how long without one successful round trip with PostgreSQL the worker logs a
    /// warning (and again every 5 s while it lasts). Default: 10 s.
    public var stallWarning: Duration = .seconds(10)

    public init() {}

    /// The bounds every session of the worker runs under, derived from the lease: a peer that
    /// stops answering is given up after half the lease (at least 2 s), on both ends; a
    /// statement may run, and a transaction stay idle, for at most a lease. So a worker host
    /// that vanishes holds its batch's row locks for about a lease, not for hours, and a call
    /// that can never complete fails instead of blocking its slot forever.
    public var liveness: PostgresLiveness {
        let statement = statementTimeout ?? lease
        return PostgresLiveness(
            deadPeerTimeout: max(.seconds(2), lease / 2),
            statementTimeout: statement == .zero ? nil : statement,
            idleInTransactionTimeout: lease)
    }

    /// `host:pid:random`, unique per process.
    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName
        let pid = ProcessInfo.processInfo.processIdentifier
        return "\(host):\(pid):\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    }
}

/// Claims and runs jobs until shut down (or, with `drain`, until no work is left).
///
/// `concurrency` slots each claim a batch with `FOR UPDATE SKIP LOCKED` (one slot at a time,
/// see ``ClaimGate``), run it in one transaction and record every outcome with one fenced
/// statement in that same transaction. Jobs of a set-based handler run together in one
/// savepoint, the others each in their own (or none, for handlers that fail before writing),
/// so one job's failure never touches another. Idle slots sleep until
/// a `NOTIFY` on `queue_jobs`, the fallback poll, or shutdown. A housekeeping task extends the
/// leases this worker holds and rescues jobs whose worker died.
///
/// On graceful shutdown (SIGTERM/SIGINT through swift-service-lifecycle) the slots stop
/// claiming, finish the batch in hand within the grace period, and any job still held goes
/// back to `ready`.
public final class JobWorker: Service, Sendable {
    public let configuration: WorkerConfiguration
    let pool: PostgresConnectionPool
    let handlers: [String: any JobHandler]
    let logger: Logger
    let bell = Doorbell()
    let claimGate = ClaimGate()
    let urgent = UrgentSlot()
    private let stopping = Atomic<Bool>(false)
    /// The jobs this worker holds in memory right now: the only leases its heartbeat extends.
    /// A job whose claim result or failure record was lost with the connection is not here, so
    /// its lease runs out and any worker rescues it.
    private let held = Mutex<Set<Int64>>([])
    private let listenerBox = Mutex<PostgresConnection?>(nil)
    let health = WorkerHealth()

    /// A worker over `database`, with one pooled connection per slot plus one for
    /// housekeeping, and a dedicated one for LISTEN.
    public init(
        configuration: WorkerConfiguration, database: PostgresConfiguration, handlers: [any JobHandler],
        logger: Logger
    ) {
        self.configuration = configuration
        self.pool = PostgresConnectionPool(
            configuration: database.with(liveness: configuration.liveness), size: configuration.concurrency + 1,
            acquireTimeout: max(configuration.lease, .seconds(10)), logger: logger)
        var byKind: [String: any JobHandler] = [:]
        for handler in handlers { byKind[handler.kind] = handler }
        self.handlers = byKind
        self.logger = logger
    }

    /// Asks the worker to stop claiming and return once in-flight batches are done.
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        listenerBox.withLock { $0 }?.wakeUp()
        Task { await bell.ringAll() }
    }

    var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    public func run() async throws {
        var workerLogger = self.logger
        workerLogger[metadataKey: "worker.id"] = "\(configuration.workerID)"
        let logger = workerLogger
        logger.info(
            "worker started",
            metadata: [
                "worker.queues": "\(configuration.queues.joined(separator: ","))",
                "worker.concurrency": "\(configuration.concurrency)",
                "worker.batch_size": "\(configuration.batchSize)",
                "worker.drain": "\(configuration.drain)",
            ])
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.work(logger: logger)
            } onGracefulShutdown: {
                logger.info("shutdown requested: finishing in-flight jobs")
                self.stop()
            }
        } onCancel: {
            // Cancellation (a service group giving up on a graceful shutdown) stops the slots
            // too: idle ones wait on the doorbell, not on a cancellable sleep.
            self.stop()
        }
        do {
            let released = try await pool.withConnection { [configuration] connection in
                try QueueStore.release(worker: configuration.workerID, on: connection)
            }
            if released > 0 { logger.notice("released unfinished jobs", metadata: ["jobs.released": "\(released)"]) }
        } catch {
            logger.warning("could not release held jobs; their leases will expire", metadata: ["error": "\(error)"])
        }
        await pool.close()
        logger.info("worker stopped")
    }

    private func work(logger: Logger) async {
        await withTaskGroup(of: Void.self) { background in
            background.addTask { await self.listenLoop(logger: logger) }
            background.addTask { await self.housekeepingLoop(logger: logger) }
            background.addTask { await self.watchdogLoop(logger: logger) }
            await withTaskGroup(of: Void.self) { slots in
                for slot in 0..<max(1, configuration.concurrency) {
                    slots.addTask { await self.slotLoop(slot: slot, logger: logger) }
                }
                let grace = Task {
                    while !self.isStopping { try await Task.sleep(for: .milliseconds(50)) }
                    try await Task.sleep(for: self.configuration.shutdownGracePeriod)
                    logger.error("grace period over with batches still running; their leases will expire")
                }
                await slots.waitForAll()
                grace.cancel()
            }
            stop()
            background.cancelAll()
        }
    }

    // MARK: Slots

    private func slotLoop(slot: Int, logger: Logger) async {
        var failures = 0
        var sizer = BatchSizer(maximum: configuration.batchSize, adaptive: configuration.adaptiveBatchSize)
        while !isStopping {
            let seen = await bell.generation
            let jobs: [Job]
            do {
                let limit = sizer.next
                let claimed = try await self.pool.withConnection { [configuration, claimGate, urgent] connection in
                    await claimGate.enter()
                    do {
                        let claimed = try QueueStore.claim(
                            queues: configuration.queues, limit: limit, worker: configuration.workerID,
                            lease: configuration.lease, aging: configuration.aging,
                            afterPriority: urgent.skip(for: slot), urgentFill: max(8, configuration.batchSize / 2),
                            on: connection)
                        urgent.claimed(claimed, by: slot)
                        await claimGate.leave()
                        return claimed
                    } catch {
                        await claimGate.leave()
                        throw error
                    }
                }
                if !claimed.urgent { sizer.claimed(claimed.jobs.count, of: limit) }
                jobs = claimed.jobs
                failures = 0
                health.succeeded()
            } catch {
                failures += 1
                health.failed(error)
                logger.warning(
                    "claim failed; retrying", metadata: ["error": "\(error)", "worker.slot": "\(slot)"])
                await pause(afterFailures: failures)
                continue
            }
            if jobs.isEmpty {
                if configuration.drain {
                    let pending = try? await pool.withConnection { [configuration] connection in
                        try QueueStore.hasPendingWork(queues: configuration.queues, on: connection)
                    }
                    if pending == false {
                        logger.info("drained: no job ready to run or running")
                        stop()
                        return
                    }
                }
                await bell.wait(after: seen)
                continue
            }
            held.withLock { $0.formUnion(jobs.map(\.id)) }
            await bell.ring()  // there may be more: the next idle slot looks
            await process(jobs, logger: logger)
            held.withLock { $0.subtract(jobs.map(\.id)) }
            urgent.finished(by: slot)
            await bell.ring()
        }
    }

    private func pause(afterFailures failures: Int) async {
        let milliseconds = min(5000, 100 << min(failures, 6))
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        while !isStopping, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Runs one claimed batch in one transaction and records every outcome in it.
    func process(_ jobs: [Job], logger: Logger) async {
        let started = ContinuousClock.now
        let configuration = self.configuration
        let handlers = self.handlers
        // The jobs run one by one go without savepoints when every handler allows it; after a
        // database error, again with them. (Set-based jobs have a savepoint of their own.)
        let fast = jobs.allSatisfy { job in
            guard let handler = handlers[job.kind] else { return true }
            return handler.handlesBatches || handler.failsBeforeWriting
        }
        do {
            var result: BatchResult
            do {
                result = try await runBatch(jobs, savepoints: !fast, logger: logger)
            } catch is NeedsSavepoints {
                result = try await runBatch(jobs, savepoints: true, logger: logger)
            }
            health.succeeded()
            for id in result.skipped {
                logger.warning("lease lost before the job ran; left to its new owner", metadata: ["job.id": "\(id)"])
            }
            let byID = Dictionary(jobs.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            for (id, outcome, duration) in result.finished {
                guard let job = byID[id] else { continue }
                guard result.recorded.contains(id) else {
                    logger.warning("lease lost while the job ran; its outcome was discarded", metadata: ["job.id": "\(id)"])
                    continue
                }
                log(job, outcome, duration: duration, batchDuration: ContinuousClock.now - started, logger: logger)
            }
        } catch {
            health.failed(error)
            // The transaction itself failed (connection lost, commit failed): nothing of it
            // was written. Record a retry for each job in a fresh transaction if possible;
            // otherwise the leases expire and the jobs are rescued.
            let failure = JobFailure.classify(error)
            let outcomes = jobs.map { job in
                (id: job.id, outcome: Self.outcome(for: failure, job: job, policy: configuration.retryPolicy))
            }
            logger.warning(
                "batch transaction failed", metadata: ["error": "\(error)", "jobs.count": "\(jobs.count)"])
            do {
                try await pool.withConnection { connection in
                    _ = try QueueStore.finish(outcomes, worker: configuration.workerID, on: connection)
                }
            } catch {
                logger.warning(
                    "could not record the failed batch; leases will expire", metadata: ["error": "\(error)"])
            }
        }
    }

    struct BatchResult: Sendable {
        var finished: [(id: Int64, outcome: QueueStore.Outcome, duration: Duration)]
        /// The jobs whose outcome the fenced completion recorded.
        var recorded: Set<Int64>
        var skipped: [Int64]
    }

    /// A database error inside a batch run without savepoints: roll back, run it again with them.
    struct NeedsSavepoints: Error {}

    private func runBatch(_ jobs: [Job], savepoints: Bool, logger: Logger) async throws -> BatchResult {
        let configuration = self.configuration
        let handlers = self.handlers
        return try await pool.withConnection { connection in
            try await connection.withTransaction { connection in
                let owned = try QueueStore.lockOwned(
                    ids: jobs.map(\.id), worker: configuration.workerID, on: connection)
                let ownedJobs = jobs.filter { owned.contains($0.id) }
                let lockKeys = ownedJobs.flatMap { job in handlers[job.kind]?.lockKeys(for: job) ?? [] }
                try QueueStore.lock(keys: lockKeys, on: connection)
                for (kind, handler) in handlers {
                    let ofKind = ownedJobs.filter { $0.kind == kind }
                    if !ofKind.isEmpty { try await handler.prepareBatch(ofKind, on: connection) }
                }
                var finished: [(id: Int64, outcome: QueueStore.Outcome, duration: Duration)] = []
                // Jobs of set-based handlers wait for their group; the rest run one by one.
                var groups: [String: [Job]] = [:]
                var retried = RetriedKeys()
                for job in ownedJobs {
                    if let handler = handlers[job.kind], handler.handlesBatches, job.payloadProblem == nil {
                        groups[job.kind, default: []].append(job)
                        continue
                    }
                    if retried.blocks(job) {
                        finished.append((job.id, .deferred, .zero))
                        continue
                    }
                    let jobStarted = ContinuousClock.now
                    let outcome = try await Self.run(
                        job, handler: handlers[job.kind], configuration: configuration, savepoint: savepoints,
                        on: connection, logger: logger)
                    retried.note(job, outcome)
                    finished.append((job.id, outcome, ContinuousClock.now - jobStarted))
                }
                for kind in groups.keys.sorted() {
                    guard let group = groups[kind], let handler = handlers[kind] else { continue }
                    finished += try await Self.runSetBased(
                        group, handler: handler, configuration: configuration, on: connection, logger: logger)
                }
                let recorded = try QueueStore.finish(
                    finished.map { ($0.id, $0.outcome) }, worker: configuration.workerID, on: connection)
                return BatchResult(
                    finished: finished, recorded: recorded, skipped: jobs.map(\.id).filter { !owned.contains($0) })
            }
        }
    }

    /// Runs jobs of one kind through the handler's set-based ``JobHandler/handleBatch(_:on:logger:)``
    /// in one savepoint; after a database error, rolls it back and runs them one by one.
    static func runSetBased(
        _ jobs: [Job], handler: any JobHandler, configuration: WorkerConfiguration,
        on connection: isolated PostgresConnection, logger: Logger
    ) async throws -> [(id: Int64, outcome: QueueStore.Outcome, duration: Duration)] {
        let started = ContinuousClock.now
        do {
            let results = try await connection.withSavepoint { connection in
                try await handler.handleBatch(jobs, on: connection, logger: logger)
            }
            guard results.count == jobs.count else {
                throw JobFailure(
                    status: 500, code: "internal",
                    message: "\(handler.kind) returned \(results.count) results for \(jobs.count) jobs",
                    details: nil, isRetryable: true)
            }
            let share = (ContinuousClock.now - started) / jobs.count
            let finished = zip(jobs, results).map { job, result in
                switch result {
                case .success(let value): return (id: job.id, outcome: QueueStore.Outcome.succeeded(value), duration: share)
                case .failure(let error):
                    return (job.id, outcome(for: JobFailure.classify(error), job: job, policy: configuration.retryPolicy), share)
                }
            }
            // A job that will be retried must not have later jobs of its key run before it:
            // if the set ran any, it is rolled back and its jobs run one by one.
            var retried = RetriedKeys()
            for (job, item) in zip(jobs, finished) {
                if retried.blocks(job) { throw RetryAheadInSet() }
                retried.note(job, item.outcome)
            }
            return finished
        } catch let error as PostgresError where error.code == .connection || error.code == .transactionAborted {
            throw error
        } catch {
            logger.debug(
                "set-based run failed; running its jobs one by one",
                metadata: ["error": "\(error)", "jobs.count": "\(jobs.count)", "job.kind": "\(handler.kind)"])
            var finished: [(id: Int64, outcome: QueueStore.Outcome, duration: Duration)] = []
            var retried = RetriedKeys()
            for job in jobs {
                if retried.blocks(job) {
                    finished.append((job.id, .deferred, .zero))
                    continue
                }
                let jobStarted = ContinuousClock.now
                let outcome = try await run(
                    job, handler: handler, configuration: configuration, savepoint: true, on: connection, logger: logger)
                retried.note(job, outcome)
                finished.append((job.id, outcome, ContinuousClock.now - jobStarted))
            }
            return finished
        }
    }

    /// A set ran a job of a key after an earlier job of that key that will be retried.
    struct RetryAheadInSet: Error {}

    /// The ordering keys of a batch's jobs that will be retried: a later job of such a key
    /// must not run in this batch (it would overtake the retry); it goes back to wait.
    struct RetriedKeys {
        private var keys = Set<String>()

        func blocks(_ job: Job) -> Bool { job.orderingKey.map(keys.contains) ?? false }

        mutating func note(_ job: Job, _ outcome: QueueStore.Outcome) {
            guard let key = job.orderingKey else { return }
            switch outcome {
            case .retry, .deferred: keys.insert(key)
            case .succeeded, .failed: break
            }
        }
    }

    /// Runs one job, in a savepoint unless `savepoint` is false, re-running it at once after a
    /// lost race.
    static func run(
        _ job: Job, handler: (any JobHandler)?, configuration: WorkerConfiguration, savepoint: Bool = true,
        on connection: isolated PostgresConnection, logger: Logger
    ) async throws -> QueueStore.Outcome {
        guard let handler else { return .failed(.unknownKind(job.kind)) }
        if let problem = job.payloadProblem {
            return .failed(
                JobFailure(
                    status: 400, code: "invalid_payload", message: "the payload cannot be read: \(problem)",
                    details: nil, isRetryable: false))
        }
        var jobLogger = logger
        jobLogger[metadataKey: "job.id"] = "\(job.id)"
        if !savepoint {
            do {
                return .succeeded(try await handler.handle(job, on: connection, logger: jobLogger))
            } catch is PostgresError {
                throw NeedsSavepoints()
            } catch {
                return outcome(for: JobFailure.classify(error), job: job, policy: configuration.retryPolicy)
            }
        }
        var attempt = 0
        while true {
            do {
                let result = try await connection.withSavepoint { connection in
                    try await handler.handle(job, on: connection, logger: jobLogger)
                }
                return .succeeded(result)
            } catch let error as PostgresError where error.code == .connection || error.code == .transactionAborted {
                throw error
            } catch {
                if Self.isLostRace(error), attempt < configuration.immediateRetries {
                    attempt += 1
                    jobLogger.debug("lost a race; running the job again", metadata: ["error": "\(error)"])
                    continue
                }
                return outcome(for: JobFailure.classify(error), job: job, policy: configuration.retryPolicy)
            }
        }
    }

    static func outcome(for failure: JobFailure, job: Job, policy: RetryPolicy) -> QueueStore.Outcome {
        if failure.isRetryable, job.attempt < job.maxAttempts {
            return .retry(failure, after: policy.delay(afterAttempt: job.attempt))
        }
        return .failed(failure)
    }

    static func isLostRace(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError, let state = error.sqlState else { return false }
        return [SQLState.uniqueViolation, .foreignKeyViolation, .deadlockDetected, .serializationFailure]
            .contains(state)
    }

    private func log(
        _ job: Job, _ outcome: QueueStore.Outcome, duration: Duration, batchDuration: Duration, logger: Logger
    ) {
        // Every line below is at info: build nothing when it would be dropped.
        guard logger.logLevel <= .info else { return }
        var metadata: Logger.Metadata = [
            "job.id": "\(job.id)", "job.kind": "\(job.kind)", "job.attempt": "\(job.attempt)",
            "job.duration_ms": "\(Double(duration.microseconds / 10) / 100)",
            "batch.duration_ms": "\(batchDuration.milliseconds)",
        ]
        switch outcome {
        case .succeeded:
            metadata["job.outcome"] = "succeeded"
            logger.info("job finished", metadata: metadata)
        case .failed(let failure):
            metadata["job.outcome"] = "failed"
            metadata["job.error"] = "\(failure.code)"
            logger.info("job finished", metadata: metadata)
        case .retry(let failure, let delay):
            metadata["job.outcome"] = "retry"
            metadata["job.error"] = "\(failure.code)"
            metadata["job.retry_in_ms"] = "\(delay.milliseconds)"
            logger.info("job finished", metadata: metadata)
        case .deferred:
            logger.info("job deferred behind an earlier job of its key that will be retried", metadata: metadata)
        }
    }

    // MARK: Background

    private func listenLoop(logger: Logger) async {
        var failures = 0
        while !isStopping {
            do {
                let listener = try await PostgresConnection.connect(pool.configuration, logger: logger)
                listenerBox.withLock { $0 = listener }
                try await listener.listen("queue_jobs")
                failures = 0
                await bell.ring()  // anything enqueued while we were not listening
                while !isStopping {
                    let received = try await listener.waitForNotifications(timeout: configuration.pollInterval)
                    let reconnected = await listener.reconnects > 0
                    if received.contains(where: { self.concerns($0.payload) }) || reconnected {
                        await bell.ring()
                    }
                }
                await listener.close()
            } catch {
                failures += 1
                health.failed(error)
                logger.warning("listener failed; reconnecting", metadata: ["error": "\(error)"])
                await pause(afterFailures: failures)
            }
        }
        listenerBox.withLock { $0 = nil }
    }

    private func concerns(_ payload: String) -> Bool {
        payload.isEmpty || payload.split(separator: ",").contains { configuration.queues.contains(String($0)) }
    }

    private func housekeepingLoop(logger: Logger) async {
        let heartbeatEvery = configuration.lease / 3
        var lastHeartbeat = ContinuousClock.now
        var lastRescue = ContinuousClock.now - .seconds(3600)
        let rescueEvery = min(configuration.lease / 2, .seconds(5))
        let tick = min(configuration.pollInterval, heartbeatEvery)
        while !isStopping {
            try? await Task.sleep(for: tick)
            if isStopping { return }
            await bell.ring()
            let now = ContinuousClock.now
            do {
                if now - lastHeartbeat >= heartbeatEvery {
                    lastHeartbeat = now
                    let ids = Array(held.withLock { $0 })
                    if !ids.isEmpty {
                        try await pool.withConnection { [configuration] connection in
                            _ = try QueueStore.heartbeat(
                                worker: configuration.workerID, ids: ids, lease: configuration.lease, on: connection)
                        }
                        health.succeeded()
                    }
                }
                let released = try await pool.withConnection { connection in try QueueStore.sweep(on: connection) }
                health.succeeded()
                if released > 0 {
                    logger.debug("released held jobs", metadata: ["jobs.released": "\(released)"])
                }
                if now - lastRescue >= rescueEvery {
                    lastRescue = now
                    let rescued = try await pool.withConnection { connection in
                        try QueueStore.rescueExpired(on: connection)
                    }
                    health.succeeded()
                    if !rescued.isEmpty {
                        logger.notice(
                            "rescued jobs whose lease expired",
                            metadata: ["jobs.rescued": "\(rescued.count)", "jobs.ids": "\(rescued.prefix(20))"])
                    }
                }
            } catch {
                health.failed(error)
                logger.warning("housekeeping failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Warns while no round trip with PostgreSQL succeeds: after `stallWarning`, then every
    /// 5 s, naming the latest error and what the worker's sessions wait for on the server
    /// (asked on a connection of its own, so a hanging pool cannot silence it).
    private func watchdogLoop(logger: Logger) async {
        var lastWarning = ContinuousClock.now - .seconds(3600)
        while !isStopping {
            try? await Task.sleep(for: .seconds(1))
            let state = health.snapshot
            let now = ContinuousClock.now
            let stalled = now - state.lastSuccess
            guard stalled >= configuration.stallWarning, now - lastWarning >= .seconds(5) else { continue }
            lastWarning = now
            var metadata: Logger.Metadata = [
                "worker.stalled_s": "\(stalled.components.seconds)",
                "worker.failures": "\(state.failuresSinceSuccess)",
            ]
            if let error = state.lastError { metadata["error"] = "\(error)" }
            if let waits = await diagnoseWaits() { metadata["postgres.waits"] = "\(waits)" }
            logger.warning("no progress: no round trip with PostgreSQL has succeeded for a while", metadata: metadata)
        }
    }

    /// What the worker's own sessions are doing on the server, from `pg_stat_activity`; with
    /// a hint when commits wait for a synchronous standby that is not there. Nil when the
    /// server cannot be asked.
    private func diagnoseWaits() async -> String? {
        let pids = await pool.backendPIDs
        let configuration = await pool.configuration.with("connect_timeout", "2").with(setting: "statement_timeout", "2000")
        guard let connection = try? await PostgresConnection.connect(configuration, logger: logger) else { return nil }
        let text = try? await connection.run { connection in
            let rows = try connection.query(
                """
                SELECT coalesce(string_agg(a.state || coalesce(' waiting on ' || a.wait_event_type || ':' || a.wait_event, '')
                                           || ' for ' || round(extract(epoch FROM now() - a.state_change)) || ' s', '; '), 'none')
                           AS sessions,
                       bool_or(a.wait_event = 'SyncRep') AS sync_rep,
                       current_setting('synchronous_standby_names') AS standby_names,
                       (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')) AS sync_standbys
                FROM pg_stat_activity a WHERE a.pid = ANY(\(pids.map(Int.init))::int[]) AND a.state <> 'idle'
                """)
            guard let row = rows.first else { return "none" }
            var text = try row.decode(String.self, "sessions")
            if try row.decode(Bool?.self, "sync_rep") == true {
                text += "; commits wait for synchronous replication (synchronous_standby_names = '"
                    + (try row.decode(String.self, "standby_names")) + "', "
                    + String(try row.decode(Int.self, "sync_standbys"))
                    + " synchronous standby connected): give this primary a standby or clear the setting"
            }
            return text
        }
        await connection.close()
        return text
    }
}
