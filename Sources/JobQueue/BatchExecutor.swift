import JSON
import Logging
import Postgres

/// Runs one claimed batch: one transaction that runs its jobs and records every outcome.
///
/// The transaction first keeps only the jobs this worker still owns (a job whose lease another
/// worker took over is left to it, untouched), decodes each job once through its handler, takes
/// every advisory lock the batch names in one order, and then runs the jobs of each kind:
/// together through ``JobHandler/handleBatch(_:on:logger:)`` in one savepoint, or, when that
/// set fails with a database error or a ``LostRace``, one by one, each in a savepoint of its
/// own. The outcomes are recorded with one fenced statement in the same transaction.
///
/// (The worker's loops, claiming, heartbeats and shutdown, live in ``JobWorker``.)
struct BatchExecutor: Sendable {
    let configuration: WorkerConfiguration
    let handlers: [String: any JobHandler]
    let pool: PostgresConnectionPool
    let health: WorkerHealth
    let metrics: WorkerMetrics

    /// One job's outcome and the time spent on it.
    struct Finished: Sendable {
        let job: Job
        let outcome: QueueStore.Outcome
        let duration: Duration
    }

    /// What one batch transaction did.
    struct BatchResult: Sendable {
        var finished: [Finished]
        /// The jobs whose outcome the fenced completion recorded.
        var recorded: Set<Int64>
        /// The jobs whose lease another worker had taken over before the batch ran.
        var skipped: [Int64]
    }

    /// Runs `jobs` in one transaction on a connection of the pool (see ``process(_:on:logger:)``).
    func process(_ jobs: [Job], logger: Logger) async {
        do {
            try await pool.withConnection { connection in await process(jobs, on: connection, logger: logger) }
        } catch {
            // No connection for the batch: nothing of it ran, and nothing can be recorded.
            _ = failedOutcomes(jobs, error: error, logger: logger)
            logger.warning("could not record the failed batch; leases will expire", metadata: ["error": "\(error)"])
        }
    }

    /// Runs `jobs` in one transaction on `connection` (a slot's, which claimed them on it) and
    /// logs what happened. When the transaction itself fails (connection lost, commit failed),
    /// nothing of it was written: each job gets a retry, recorded in a fresh transaction on the
    /// same connection (which reconnects if it was lost) if possible; otherwise the leases
    /// expire and any worker rescues the jobs.
    func process(_ jobs: [Job], on connection: isolated PostgresConnection, logger: Logger) async {
        let started = ContinuousClock.now
        do {
            let result = try await runBatch(jobs, on: connection, logger: logger)
            health.succeeded()
            for id in result.skipped {
                logger.warning("lease lost before the job ran; left to its new owner", metadata: ["job.id": "\(id)"])
            }
            for finished in result.finished {
                guard result.recorded.contains(finished.job.id) else {
                    logger.warning(
                        "lease lost while the job ran; its outcome was discarded", metadata: ["job.id": "\(finished.job.id)"])
                    continue
                }
                metrics.finished(finished.job, outcome: finished.outcome, duration: finished.duration)
                Self.log(finished, batchDuration: ContinuousClock.now - started, logger: logger)
            }
        } catch {
            let outcomes = failedOutcomes(jobs, error: error, logger: logger)
            do {
                let recorded = try QueueStore.finish(
                    outcomes.map { ($0.job.id, $0.outcome) }, worker: configuration.workerID, on: connection)
                for (job, outcome) in outcomes where recorded.contains(job.id) {
                    metrics.finished(job, outcome: outcome, duration: .zero)
                }
            } catch {
                logger.warning("could not record the failed batch; leases will expire", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Counts and logs a batch whose transaction failed with `error`; each job's next step.
    private func failedOutcomes(_ jobs: [Job], error: any Error, logger: Logger)
        -> [(job: Job, outcome: QueueStore.Outcome)]
    {
        health.failed(error)
        metrics.batchFailed()
        logger.warning("batch transaction failed", metadata: ["error": "\(error)", "jobs.count": "\(jobs.count)"])
        let failure = JobFailure.classify(error)
        return jobs.map { ($0, Self.outcome(for: failure, job: $0, policy: configuration.retryPolicy)) }
    }

    /// The batch's transaction: ownership, decoding, locks, the jobs, and their outcomes.
    ///
    /// Five round trips for a batch of one kind whose handler reads one thing before its jobs
    /// (ownership, locks and the handler's first statement share the first; the outcomes
    /// share the last with the `COMMIT`), plus the handler's own statements.
    func runBatch(_ jobs: [Job], on connection: isolated PostgresConnection, logger: Logger) async throws
        -> BatchResult
    {
        let configuration = self.configuration
        let handlers = self.handlers
        let (finished, outcomes, skipped) = try await connection.withTransaction { connection in
            // Which jobs this worker still holds is asked first, and read only after the
            // locks and the handlers' preparation have been sent behind it: decoding needs
            // no answer, and a job whose lease was lost is dropped before anything runs.
            let ownership = try QueueStore.sendLockOwned(
                ids: jobs.map(\.id), worker: configuration.workerID, on: connection)
            var finished: [Finished] = []
            var kinds: [any KindBatch] = []
            for (kind, ofKind) in Self.byKind(jobs) {
                guard let handler = handlers[kind] else {
                    finished += ofKind.map { Finished(job: $0, outcome: .failed(.unknownKind(kind)), duration: .zero) }
                    continue
                }
                let decoded = Self.decode(ofKind, with: handler, policy: configuration.retryPolicy)
                finished += decoded.failed
                if let batch = decoded.batch { kinds.append(batch) }
            }
            try QueueStore.lock(keys: kinds.flatMap(\.lockKeys), on: connection)
            for batch in kinds { try await batch.prepare(on: connection) }
            let owned = try QueueStore.owned(ownership, on: connection)
            finished = finished.filter { owned.contains($0.job.id) }
            kinds = kinds.compactMap { $0.keeping(owned) }
            var retried = RetriedKeys()
            for item in finished { retried.note(item.job, item.outcome) }
            for batch in kinds {
                finished += try await batch.run(
                    retried: &retried, configuration: configuration, metrics: metrics, on: connection, logger: logger)
            }
            let outcomes = try QueueStore.sendFinish(
                finished.map { ($0.job.id, $0.outcome) }, worker: configuration.workerID, on: connection)
            return (finished, outcomes, jobs.map(\.id).filter { !owned.contains($0) })
        }
        // Committed: the outcomes were recorded in the commit's round trip.
        let recorded = try QueueStore.recorded(outcomes, on: connection)
        return BatchResult(finished: finished, recorded: recorded, skipped: skipped)
    }

    /// The jobs grouped by kind, kinds in name order, jobs in claim order.
    static func byKind(_ jobs: [Job]) -> [(kind: String, jobs: [Job])] {
        var groups: [String: [Job]] = [:]
        for job in jobs { groups[job.kind, default: []].append(job) }
        return groups.keys.sorted().map { ($0, groups[$0] ?? []) }
    }

    /// Decodes the jobs of one kind with their handler; those that cannot be read, or whose
    /// decode throws, are finished at once.
    static func decode<Handler: JobHandler>(_ jobs: [Job], with handler: Handler, policy: RetryPolicy)
        -> (batch: (any KindBatch)?, failed: [Finished])
    {
        var decoded: [DecodedJob<Handler.Work>] = []
        var failed: [Finished] = []
        for job in jobs {
            if let problem = job.payloadProblem {
                let failure = JobFailure(
                    status: 400, code: "invalid_payload", message: "the payload cannot be read: \(problem)",
                    details: nil, isRetryable: false)
                failed.append(Finished(job: job, outcome: .failed(failure), duration: .zero))
                continue
            }
            do {
                decoded.append(DecodedJob(job: job, work: try handler.decode(job)))
            } catch {
                let outcome = outcome(for: JobFailure.classify(error), job: job, policy: policy)
                failed.append(Finished(job: job, outcome: outcome, duration: .zero))
            }
        }
        return (decoded.isEmpty ? nil : HandlerBatch(handler: handler, jobs: decoded), failed)
    }

    static func outcome(for failure: JobFailure, job: Job, policy: RetryPolicy) -> QueueStore.Outcome {
        if failure.isRetryable, job.attempt < job.maxAttempts {
            return .retry(failure, after: policy.delay(afterAttempt: job.attempt))
        }
        return .failed(failure)
    }

    /// True for an error that says another transaction got there first.
    static func isLostRace(_ error: any Error) -> Bool {
        if error is LostRace { return true }
        guard let error = error as? PostgresError, let state = error.sqlState else { return false }
        return [SQLState.uniqueViolation, .foreignKeyViolation, .deadlockDetected, .serializationFailure]
            .contains(state)
    }

    /// True for an error after which the transaction cannot go on.
    static func endsTransaction(_ error: any Error) -> Bool {
        guard let error = error as? PostgresError else { return false }
        return error.code == .connection || error.code == .transactionAborted
    }

    private static func log(_ finished: Finished, batchDuration: Duration, logger: Logger) {
        // Every line below is at info: build nothing when it would be dropped.
        guard logger.logLevel <= .info else { return }
        let job = finished.job
        var metadata: Logger.Metadata = [
            "job.id": "\(job.id)", "job.kind": "\(job.kind)", "job.attempt": "\(job.attempt)",
            "job.duration_ms": "\(Double(finished.duration.microseconds / 10) / 100)",
            "batch.duration_ms": "\(batchDuration.milliseconds)",
        ]
        switch finished.outcome {
        case .succeeded:
            metadata["job.outcome"] = "succeeded"
        case .failed(let failure):
            metadata["job.outcome"] = "failed"
            metadata["job.error"] = "\(failure.code)"
        case .retry(let failure, let delay):
            metadata["job.outcome"] = "retry"
            metadata["job.error"] = "\(failure.code)"
            metadata["job.retry_in_ms"] = "\(delay.milliseconds)"
        case .deferred:
            logger.info("job deferred behind an earlier job of its key that will be retried", metadata: metadata)
            return
        }
        logger.info("job finished", metadata: metadata)
    }
}

/// The decoded jobs of one kind in a batch, whatever their handler's ``JobHandler/Work``.
protocol KindBatch: Sendable {
    /// Every advisory lock the jobs name.
    var lockKeys: [String] { get }
    /// The handler's ``JobHandler/prepareBatch(_:on:)``.
    func prepare(on connection: isolated PostgresConnection) async throws
    /// The same batch with only the jobs in `ids`; nil if none is.
    func keeping(_ ids: Set<Int64>) -> (any KindBatch)?
    /// Runs the jobs: the set first, one by one if the set fails. Jobs of a key in `retried`
    /// are deferred; keys of jobs that will be retried are added to it.
    func run(
        retried: inout RetriedKeys, configuration: WorkerConfiguration, metrics: WorkerMetrics,
        on connection: isolated PostgresConnection, logger: Logger
    ) async throws -> [BatchExecutor.Finished]
}

struct HandlerBatch<Handler: JobHandler>: KindBatch {
    typealias Finished = BatchExecutor.Finished
    let handler: Handler
    let jobs: [DecodedJob<Handler.Work>]

    var lockKeys: [String] { jobs.flatMap { handler.lockKeys(for: $0.work) } }

    func prepare(on connection: isolated PostgresConnection) async throws {
        try await handler.prepareBatch(jobs, on: connection)
    }

    func keeping(_ ids: Set<Int64>) -> (any KindBatch)? {
        let kept = jobs.filter { ids.contains($0.job.id) }
        guard !kept.isEmpty else { return nil }
        return kept.count == jobs.count ? self : HandlerBatch(handler: handler, jobs: kept)
    }

    func run(
        retried: inout RetriedKeys, configuration: WorkerConfiguration, metrics: WorkerMetrics,
        on connection: isolated PostgresConnection, logger: Logger
    ) async throws -> [Finished] {
        var finished: [Finished] = []
        var runnable: [DecodedJob<Handler.Work>] = []
        for job in jobs {
            if retried.blocks(job.job) {
                finished.append(Finished(job: job.job, outcome: .deferred, duration: .zero))
            } else {
                runnable.append(job)
            }
        }
        guard !runnable.isEmpty else { return finished }
        do {
            let set = try await runSet(runnable, retried: retried, policy: configuration.retryPolicy, on: connection, logger: logger)
            for item in set { retried.note(item.job, item.outcome) }
            return finished + set
        } catch where BatchExecutor.endsTransaction(error) {
            throw error
        } catch {
            if BatchExecutor.isLostRace(error) { metrics.lostRace(kind: handler.kind) }
            logger.debug(
                "set-based run failed; running its jobs one by one",
                metadata: ["error": "\(error)", "jobs.count": "\(runnable.count)", "job.kind": "\(handler.kind)"])
        }
        for job in runnable {
            if retried.blocks(job.job) {
                finished.append(Finished(job: job.job, outcome: .deferred, duration: .zero))
                continue
            }
            let started = ContinuousClock.now
            let outcome = try await runOne(
                job, configuration: configuration, metrics: metrics, on: connection, logger: logger)
            retried.note(job.job, outcome)
            finished.append(Finished(job: job.job, outcome: outcome, duration: ContinuousClock.now - started))
        }
        return finished
    }

    /// All the jobs through the handler's set, in one savepoint. A job that will be retried
    /// with a later job of its key already run in the set rolls the set back (the later job
    /// must not overtake the retry): the caller then runs them one by one.
    private func runSet(
        _ jobs: [DecodedJob<Handler.Work>], retried: RetriedKeys, policy: RetryPolicy,
        on connection: isolated PostgresConnection, logger: Logger
    ) async throws -> [Finished] {
        let started = ContinuousClock.now
        return try await connection.withSavepoint { connection in
            let results = try await handler.handleBatch(jobs, on: connection, logger: logger)
            guard results.count == jobs.count else {
                throw JobFailure(
                    status: 500, code: "internal",
                    message: "\(handler.kind) returned \(results.count) results for \(jobs.count) jobs",
                    details: nil, isRetryable: true)
            }
            let share = (ContinuousClock.now - started) / jobs.count
            var retried = retried
            var finished: [Finished] = []
            for (job, result) in zip(jobs, results) {
                if retried.blocks(job.job) { throw RetryAheadInSet() }
                let outcome: QueueStore.Outcome
                switch result {
                case .success(let value): outcome = .succeeded(value)
                case .failure(let error):
                    outcome = BatchExecutor.outcome(for: JobFailure.classify(error), job: job.job, policy: policy)
                }
                retried.note(job.job, outcome)
                finished.append(Finished(job: job.job, outcome: outcome, duration: share))
            }
            return finished
        }
    }

    /// One job in a savepoint of its own, run again at once after a lost race (up to
    /// `immediateRetries` times).
    private func runOne(
        _ job: DecodedJob<Handler.Work>, configuration: WorkerConfiguration, metrics: WorkerMetrics,
        on connection: isolated PostgresConnection, logger: Logger
    ) async throws -> QueueStore.Outcome {
        var jobLogger = logger
        jobLogger[metadataKey: "job.id"] = "\(job.job.id)"
        var attempt = 0
        while true {
            do {
                let result = try await connection.withSavepoint { connection in
                    try await handler.handle(job, on: connection, logger: jobLogger)
                }
                return .succeeded(result)
            } catch where BatchExecutor.endsTransaction(error) {
                throw error
            } catch {
                if BatchExecutor.isLostRace(error), attempt < configuration.immediateRetries {
                    attempt += 1
                    metrics.lostRace(kind: handler.kind)
                    jobLogger.debug("lost a race; running the job again", metadata: ["error": "\(error)"])
                    continue
                }
                return BatchExecutor.outcome(
                    for: JobFailure.classify(error), job: job.job, policy: configuration.retryPolicy)
            }
        }
    }
}

/// A set ran a job of a key after an earlier job of that key that will be retried.
struct RetryAheadInSet: Error {}

/// The ordering keys of a batch's jobs that will be retried: a later job of such a key must not
/// run in this batch (it would overtake the retry); it goes back to wait.
struct RetriedKeys: Sendable {
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
