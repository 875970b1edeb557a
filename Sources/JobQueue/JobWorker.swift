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
    /// While one slot runs a batch, how long the other slots let it take before they claim too
    /// (they join at once when a claim came back full; see ``SlotActivity``). Default: 50 ms;
    /// zero: every idle slot claims as soon as it is woken.
    public var joinAfter: Duration = .milliseconds(50)
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
/// statement in that same transaction (see ``BatchExecutor``), so one job's failure never
/// touches another. Idle slots sleep until
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
    let activity: SlotActivity
    private let stopping = Atomic<Bool>(false)
    /// The jobs this worker holds in memory right now: the only leases its heartbeat extends.
    /// A job whose claim result or failure record was lost with the connection is not here, so
    /// its lease runs out and any worker rescues it.
    private let held = Mutex<Set<Int64>>([])
    private let listenerBox = Mutex<PostgresConnection?>(nil)
    let health: WorkerHealth
    let executor: BatchExecutor
    let metrics: WorkerMetrics

    /// A worker over `database`, with one pooled connection per slot plus one for
    /// housekeeping, and a dedicated one for LISTEN. It records its series in `metrics`.
    public init(
        configuration: WorkerConfiguration, database: PostgresConfiguration, handlers: [any JobHandler],
        metrics: WorkerMetrics = WorkerMetrics(), logger: Logger
    ) {
        self.configuration = configuration
        self.metrics = metrics
        self.pool = PostgresConnectionPool(
            configuration: metrics.counting(database.with(liveness: configuration.liveness)),
            size: configuration.concurrency + 1,
            acquireTimeout: max(configuration.lease, .seconds(10)), logger: logger)
        var byKind: [String: any JobHandler] = [:]
        for handler in handlers { byKind[handler.kind] = handler }
        self.handlers = byKind
        metrics.register(kinds: byKind.keys.sorted())
        self.logger = logger
        self.activity = SlotActivity(joinAfter: configuration.joinAfter)
        self.health = WorkerHealth()
        self.executor = BatchExecutor(
            configuration: configuration, handlers: byKind, pool: pool, health: health, metrics: metrics)
    }

    /// Whether the worker completed a round trip with PostgreSQL within `stalledAfter`, or has
    /// had no failure since its last one (for a health endpoint).
    public func isHealthy(stalledAfter: Duration = .seconds(30)) -> Bool {
        let state = health.snapshot
        return state.failuresSinceSuccess == 0 || ContinuousClock.now - state.lastSuccess < stalledAfter
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
        var finishedBatch = false
        while !isStopping {
            let seen = await bell.generation
            let claimStarted = ContinuousClock.now
            guard activity.mayClaim(slot, now: claimStarted) else {
                await bell.wait(after: seen)
                continue
            }
            // One connection for the claim and the batch it found: no second lease, and no
            // hop back to the slot between the two.
            let found: [Job]
            do {
                let limit = sizer.next
                let claimed = try await pool.withConnection { connection in
                    try await self.claimAndRun(slot: slot, limit: limit, since: claimStarted, on: connection, logger: logger)
                }
                if !claimed.urgent { sizer.claimed(claimed.jobs.count, of: limit) }
                found = claimed.jobs
                failures = 0
            } catch {
                activity.idle(slot)
                failures += 1
                health.failed(error)
                logger.warning(
                    "claim failed; retrying", metadata: ["error": "\(error)", "worker.slot": "\(slot)"])
                await pause(afterFailures: failures)
                continue
            }
            if found.isEmpty {
                // Another slot's claim that ran while this slot's batch was finishing saw its
                // jobs still running and held their followers (same ordering key); the finish
                // could not see those holds yet, so it did not release them. Release them now,
                // not at the next sweep (up to a poll interval later).
                if finishedBatch {
                    finishedBatch = false
                    let released = try? await pool.withConnection { connection in try QueueStore.sweep(on: connection) }
                    if let released, released > 0 { continue }
                }
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
            finishedBatch = true
        }
    }

    /// Claims up to `limit` jobs for `slot` on `connection` and, if it found any, runs them there
    /// as one batch. Returns the claim; throws only if the claim failed (a batch's failures are
    /// recorded on its jobs).
    private func claimAndRun(
        slot: Int, limit: Int, since claimStarted: ContinuousClock.Instant, on connection: isolated PostgresConnection,
        logger: Logger
    ) async throws -> QueueStore.Claim {
        await claimGate.enter()
        let claimed: QueueStore.Claim
        do {
            claimed = try QueueStore.claim(
                queues: configuration.queues, limit: limit, worker: configuration.workerID,
                lease: configuration.lease, aging: configuration.aging,
                afterPriority: urgent.skip(for: slot), urgentFill: max(8, configuration.batchSize / 2),
                on: connection)
            urgent.claimed(claimed, by: slot)
            claimGate.leave()
        } catch {
            claimGate.leave()
            throw error
        }
        metrics.claimed(claimed.jobs, duration: ContinuousClock.now - claimStarted)
        // A claim that took fewer than it could took everything claimable then (an urgent one
        // may have left less urgent work behind).
        let mayHaveLeftMore = claimed.jobs.count >= limit || claimed.urgent
        activity.claimed(by: slot, jobs: claimed.jobs.count, leftMore: mayHaveLeftMore)
        health.succeeded()
        guard !claimed.jobs.isEmpty else { return claimed }
        if configuration.concurrency > 1, configuration.joinAfter > .zero {
            // Wakes a slot standing by if this batch runs past `joinAfter`.
            Task { [bell, activity, configuration] in
                try? await Task.sleep(until: claimStarted + configuration.joinAfter)
                if activity.isBusy(slot, since: claimStarted) { await bell.ring() }
            }
        }
        let ids = claimed.jobs.map(\.id)
        held.withLock { $0.formUnion(ids) }
        // There may be more: the next idle slot looks. Otherwise new jobs ring the bell
        // themselves (their NOTIFY), and this slot claims again when its batch is done.
        if mayHaveLeftMore { await bell.ring() }
        await executor.process(claimed.jobs, on: connection, logger: logger)
        held.withLock { $0.subtract(ids) }
        urgent.finished(by: slot)
        return claimed
    }

    private func pause(afterFailures failures: Int) async {
        let milliseconds = min(5000, 100 << min(failures, 6))
        let deadline = ContinuousClock.now + .milliseconds(milliseconds)
        while !isStopping, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
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
