import ArgumentParser
import JobQueue

/// The options that shape a worker, mapped to a ``WorkerConfiguration`` in one place for every
/// program that starts one: `upsert-worker run`, `upsert-bench` and the tests' worker. Each
/// default is the configuration's own.
public struct WorkerOptions: ParsableArguments {
    public init() {}

    @Option(help: "Batches in flight at once, each on its own connection.")
    public var concurrency: Int = WorkerConfiguration().concurrency

    @Option(name: .customLong("batch-size"), help: "The most jobs claimed and run per transaction (claims adapt to what is ready).")
    public var batchSize: Int = WorkerConfiguration().batchSize

    @Flag(name: .customLong("fixed-batch-size"), help: "Claim --batch-size every time instead of adapting to what is ready.")
    public var fixedBatchSize = false

    @Option(help: "Seconds a claimed job stays locked without a heartbeat.")
    public var lease: Double = WorkerConfiguration().lease.seconds

    @Option(name: .customLong("poll-interval"), help: "Seconds between fallback polls.")
    public var pollInterval: Double = WorkerConfiguration().pollInterval.seconds

    @Option(name: .customLong("grace-period"), help: "Seconds in-flight jobs get to finish on shutdown.")
    public var gracePeriod: Double = WorkerConfiguration().shutdownGracePeriod.seconds

    @Option(name: .customLong("max-retry-delay"), help: "Cap, in seconds, of the backoff between attempts.")
    public var maxRetryDelay: Double = WorkerConfiguration().retryPolicy.maximum.seconds

    @Option(
        name: .customLong("statement-timeout"),
        help: "Seconds a statement of the worker may run before the server cancels it (default: the lease; 0: the server's).")
    public var statementTimeout: Double?

    @Option(help: "Seconds a less urgent job may wait behind more urgent ones before it gets part of each full batch (0: never).")
    public var aging: Double = WorkerConfiguration().aging?.seconds ?? 0

    @Option(
        name: .customLong("join-after"),
        help: "Seconds one slot's batch may run before idle slots claim too, when no claim left work behind (0: claim at once).")
    public var joinAfter: Double = WorkerConfiguration().joinAfter.seconds

    public func validate() throws {
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 256") }
        guard (1...10_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 10000") }
        guard lease >= 1, lease.isFinite else { throw ValidationError("--lease must be at least 1 second") }
        guard pollInterval > 0, pollInterval.isFinite else { throw ValidationError("--poll-interval must be positive") }
        guard gracePeriod >= 0, gracePeriod.isFinite else { throw ValidationError("--grace-period must be >= 0") }
        guard maxRetryDelay >= 0, maxRetryDelay.isFinite else { throw ValidationError("--max-retry-delay must be >= 0") }
        guard aging >= 0, aging.isFinite else { throw ValidationError("--aging must be >= 0") }
        guard joinAfter >= 0, joinAfter.isFinite else { throw ValidationError("--join-after must be >= 0") }
        if let statementTimeout, !(statementTimeout >= 0 && statementTimeout.isFinite) {
            throw ValidationError("--statement-timeout must be >= 0")
        }
    }

    /// `base` with these options applied.
    public func configuration(_ base: WorkerConfiguration = WorkerConfiguration()) -> WorkerConfiguration {
        var configuration = base
        configuration.concurrency = concurrency
        configuration.batchSize = batchSize
        configuration.adaptiveBatchSize = !fixedBatchSize
        configuration.lease = .seconds(lease)
        configuration.pollInterval = .seconds(pollInterval)
        configuration.shutdownGracePeriod = .seconds(gracePeriod)
        configuration.retryPolicy.maximum = .seconds(maxRetryDelay)
        configuration.statementTimeout = statementTimeout.map { .seconds($0) }
        configuration.aging = aging > 0 ? .seconds(aging) : nil
        configuration.joinAfter = .seconds(joinAfter)
        return configuration
    }

    /// The same options as arguments, for starting another worker process with them.
    public var arguments: [String] {
        var arguments = [
            "--concurrency", String(concurrency), "--batch-size", String(batchSize), "--lease", String(lease),
            "--poll-interval", String(pollInterval), "--grace-period", String(gracePeriod),
            "--max-retry-delay", String(maxRetryDelay), "--aging", String(aging), "--join-after", String(joinAfter),
        ]
        if fixedBatchSize { arguments.append("--fixed-batch-size") }
        if let statementTimeout { arguments += ["--statement-timeout", String(statementTimeout)] }
        return arguments
    }
}

extension Duration {
    /// Whole and fractional seconds.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
