import Logging
import Metrics
import Postgres
import ServiceLifecycle
import Synchronization

/// The queue's series, through swift-metrics (docs/operations.md, "Metrics"). Each metric object
/// is made once per label set and kept; recording is a dictionary lookup and the backend's
/// update. Without a metrics backend bootstrapped (and no factory given) everything records
/// into swift-metrics' no-op handlers.
public final class WorkerMetrics: Sendable {
    let factory: any MetricsFactory
    private let counters = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])
    private let recorders = Mutex<[String: Recorder]>([:])
    private let gauges = Mutex<[String: Gauge]>([:])
    /// The (queue, state) gauges set by the last sample, so that a pair gone since drops to 0.
    private let sampled = Mutex<Set<[String]>>([])
    /// The series every finished job records, by queue and kind: found with two lookups of
    /// the job's own strings, no key built per job.
    private let perKind = Mutex<[String: [String: KindSeries]]>([:])

    private struct KindSeries: Sendable {
        let succeeded: Counter
        let failed: Counter
        let retried: Counter
        let duration: Metrics.Timer
    }

    /// Records through `factory`; by default the process's bootstrapped backend.
    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        // Counters that exist from the start, at 0, so that rate() and alerts see them.
        _ = counter("upsert_batch_failures_total", [])
        _ = counter("upsert_db_reconnects_total", [])
    }

    /// Makes the per-kind counters exist at 0 for these kinds.
    func register(kinds: [String]) {
        for kind in kinds { _ = counter("upsert_lost_races_total", [("kind", kind)]) }
    }

    private static func key(_ label: String, _ dimensions: [(String, String)]) -> String {
        dimensions.reduce(label) { $0 + "\u{1}" + $1.0 + "=" + $1.1 }
    }

    /// The metric of `label` and `dimensions` in `made`, made by `make` the first time.
    private func cached<Metric>(
        _ made: borrowing Mutex<[String: Metric]>, _ label: String, _ dimensions: [(String, String)],
        _ make: () -> Metric
    ) -> Metric {
        made.withLock { made in
            let key = Self.key(label, dimensions)
            if let known = made[key] { return known }
            let metric = make()
            made[key] = metric
            return metric
        }
    }

    private func counter(_ label: String, _ dimensions: [(String, String)]) -> Counter {
        cached(counters, label, dimensions) { Counter(label: label, dimensions: dimensions, factory: factory) }
    }

    private func timer(_ label: String, _ dimensions: [(String, String)]) -> Metrics.Timer {
        cached(timers, label, dimensions) { Metrics.Timer(label: label, dimensions: dimensions, factory: factory) }
    }

    private func recorder(_ label: String, _ dimensions: [(String, String)]) -> Recorder {
        cached(recorders, label, dimensions) {
            Recorder(label: label, dimensions: dimensions, aggregate: true, factory: factory)
        }
    }

    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> Gauge {
        cached(gauges, label, dimensions) { Gauge(label: label, dimensions: dimensions, factory: factory) }
    }

    // MARK: Per job and per batch

    /// A job's recorded outcome: `upsert_jobs_finished_total{queue,kind,outcome}` (succeeded,
    /// failed or retried; a job deferred behind its key is not an attempt and is not counted),
    /// `upsert_job_errors_total{queue,kind,code}` for a failure or retry, and its handler time,
    /// `upsert_job_duration_seconds{queue,kind}`.
    func finished(_ job: Job, outcome: QueueStore.Outcome, duration: Duration) {
        if case .deferred = outcome { return }
        let series = perKind.withLock { perKind in
            if let known = perKind[job.queue]?[job.kind] { return known }
            let made = kindSeries(queue: job.queue, kind: job.kind)
            perKind[job.queue, default: [:]][job.kind] = made
            return made
        }
        switch outcome {
        case .succeeded: series.succeeded.increment()
        case .failed(let failure): series.failed.increment(); countError(failure, of: job)
        case .retry(let failure, _): series.retried.increment(); countError(failure, of: job)
        case .deferred: break
        }
        series.duration.recordInterval(duration)
    }

    /// Error codes are a fixed, small set (docs/contract.md): a bounded label.
    private func countError(_ failure: JobFailure, of job: Job) {
        counter("upsert_job_errors_total", [("queue", job.queue), ("kind", job.kind), ("code", failure.code)]).increment()
    }

    private func kindSeries(queue: String, kind: String) -> KindSeries {
        func finished(_ outcome: String) -> Counter {
            counter("upsert_jobs_finished_total", [("queue", queue), ("kind", kind), ("outcome", outcome)])
        }
        return KindSeries(
            succeeded: finished("succeeded"), failed: finished("failed"), retried: finished("retried"),
            duration: timer("upsert_job_duration_seconds", [("queue", queue), ("kind", kind)]))
    }

    /// A claim: its jobs' waits (`upsert_job_wait_seconds{queue}`, enqueue or `run_at` to
    /// start, as the database's clock saw it), the batch size (`upsert_batch_jobs`) and the
    /// claim's time (`upsert_claim_duration_seconds`).
    func claimed(_ jobs: [Job], duration: Duration) {
        timer("upsert_claim_duration_seconds", []).recordInterval(duration)
        guard !jobs.isEmpty else { return }
        recorder("upsert_batch_jobs", []).record(jobs.count)
        for job in jobs {
            timer("upsert_job_wait_seconds", [("queue", job.queue)]).recordSeconds(max(0, job.waitedSeconds))
        }
    }

    /// A job run again at once after losing a race (`upsert_lost_races_total{kind}`).
    func lostRace(kind: String) {
        counter("upsert_lost_races_total", [("kind", kind)]).increment()
    }

    /// A batch transaction that failed as a whole (`upsert_batch_failures_total`).
    func batchFailed() {
        counter("upsert_batch_failures_total", []).increment()
    }

    /// A lost database session that reconnected (`upsert_db_reconnects_total`).
    public func reconnected() {
        counter("upsert_db_reconnects_total", []).increment()
    }

    /// `configuration` with its reconnects counted here.
    public func counting(_ configuration: PostgresConfiguration) -> PostgresConfiguration {
        var counted = configuration
        let previous = configuration.onReconnect
        counted.onReconnect = { [self] in
            previous?()
            reconnected()
        }
        return counted
    }

    // MARK: Queue gauges

    /// Sets `upsert_queue_jobs{queue,state}` and `upsert_queue_oldest_ready_seconds{queue}`
    /// from one sample; pairs absent from it drop to 0.
    public func sampled(counts: [(queue: String, state: JobState, jobs: Int)], oldestReady: [String: Double]) {
        var seen = Set<[String]>()
        for count in counts {
            seen.insert([count.queue, count.state.rawValue])
            gauge("upsert_queue_jobs", [("queue", count.queue), ("state", count.state.rawValue)]).record(count.jobs)
        }
        let queues = Set(counts.map(\.queue)).union(oldestReady.keys)
        for queue in queues {
            gauge("upsert_queue_oldest_ready_seconds", [("queue", queue)]).record(oldestReady[queue] ?? 0)
        }
        let gone = sampled.withLock { previous in
            defer { previous = seen }
            return previous.subtracting(seen)
        }
        for pair in gone { gauge("upsert_queue_jobs", [("queue", pair[0]), ("state", pair[1])]).record(0) }
    }

    /// Sets `upsert_db_oldest_snapshot_seconds`: how long the oldest transaction holding a
    /// snapshot on the database has been open (``QueueAdmin/oldestSnapshotAge(on:)``).
    public func sampled(oldestSnapshotSeconds: Double) {
        gauge("upsert_db_oldest_snapshot_seconds", []).record(oldestSnapshotSeconds)
    }
}

extension Metrics.Timer {
    fileprivate func recordInterval(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// Samples the queue's gauges every `interval` with one cheap read (the count tables and an
/// index probe per queue; see ``QueueAdmin/queueGauges(on:)``), folding the recorded count
/// changes first, so that a scrape never touches the database.
public struct QueueSampler: Service {
    let configuration: PostgresConfiguration
    let metrics: WorkerMetrics
    let interval: Duration
    let logger: Logger

    public init(configuration: PostgresConfiguration, metrics: WorkerMetrics, interval: Duration, logger: Logger) {
        self.configuration = configuration
        self.metrics = metrics
        self.interval = interval
        self.logger = logger
    }

    /// One sample now.
    public static func sample(into metrics: WorkerMetrics, on connection: isolated PostgresConnection) throws(PostgresError) {
        try QueueAdmin.foldCounts(on: connection)
        let counts = try QueueAdmin.jobCounts(on: connection)
        let (oldest, _) = try QueueAdmin.queueGauges(on: connection)
        metrics.sampled(counts: counts, oldestReady: oldest)
        metrics.sampled(oldestSnapshotSeconds: try QueueAdmin.oldestSnapshotAge(on: connection))
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown { await self.loop() }
    }

    private func loop() async {
        var connection: PostgresConnection?
        while !Task.isCancelled {
            do {
                let live: PostgresConnection
                if let connection { live = connection } else {
                    live = try await PostgresConnection.connect(configuration, logger: logger)
                    connection = live
                }
                try await live.run { c in try Self.sample(into: metrics, on: c) }
            } catch {
                logger.warning("could not sample the queue's gauges", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: interval)
        }
        await connection?.close()
    }
}
