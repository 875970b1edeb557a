import JSON
import Logging
import Postgres

/// Runs the jobs of one kind.
///
/// A batch of claimed jobs runs in one transaction, which also records every outcome, in two
/// steps for each handler:
///
/// 1. ``decode(_:)`` reads each job once, with no database, into the handler's ``Work``: the
///    value every later step uses, from the locks the job needs (``lockKeys(for:)``) to the
///    work itself. A job whose decode throws fails with what it threw.
/// 2. ``handleBatch(_:on:logger:)`` runs all the decoded jobs of the kind together, in one
///    savepoint. A job's own failure is its `.failure` and touches no other job. A database
///    error or a ``LostRace`` ends the set instead: the worker rolls it back and runs the same
///    jobs again one by one through ``handle(_:on:logger:)``, each in a savepoint of its own,
///    where a lost race re-runs the job at once (a few times) before it counts as a failure.
///
/// Every row the handler writes through `connection` commits together with the job's
/// `succeeded`, or not at all; what a failed job threw decides between `failed` and a retry
/// (see ``JobFailure/classify(_:)``). Handlers written as "look up, then insert" need no retry
/// loop of their own: the unique index's violation is a lost race the worker re-runs.
public protocol JobHandler: Sendable {
    /// What one job becomes once decoded.
    associatedtype Work: Sendable

    /// The `kind` this handler runs.
    var kind: String { get }

    /// Reads one job, once, with no database. Throwing fails the job (a ``JobFailureConvertible``
    /// says how); nothing else of the handler runs for it. Default (for `Work == Void`): nothing.
    func decode(_ job: Job) throws -> Work

    /// The advisory locks the job will need, named by any strings.
    ///
    /// Locks are held until the batch commits, and two batches that take the same locks in
    /// different orders deadlock (PostgreSQL breaks the tie after `deadlock_timeout`, a second
    /// lost). So the worker takes every lock a batch names here up front, in one global order,
    /// before the first job runs. The handler may take the same locks again (they nest).
    /// Default: none.
    func lockKeys(for work: Work) -> [String]

    /// Called once per batch, in its transaction, before the first of `jobs` (those of this
    /// handler's kind) runs: the place to refresh caches or read what every job needs.
    /// `jobs` are the batch's jobs of this kind as claimed: one whose lease another worker
    /// took over meanwhile is among them, and is dropped before the jobs run. (The worker asks
    /// which jobs it still holds in the same round trip as this method's first statement.)
    /// Default: nothing.
    func prepareBatch(_ jobs: [DecodedJob<Work>], on connection: isolated PostgresConnection) async throws

    /// Does one job's work and returns the result to store on the job.
    func handle(_ job: DecodedJob<Work>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue

    /// Runs several jobs of this kind together (set-based: a few statements for all of them
    /// rather than a few each) and returns one result per job, in the order of `jobs`.
    ///
    /// Default: ``handle(_:on:logger:)`` for each job in a savepoint of its own, so that a job
    /// that fails after writing leaves nothing behind; a database error or a ``LostRace``
    /// ends the set (the worker then runs the jobs one by one).
    func handleBatch(_ jobs: [DecodedJob<Work>], on connection: isolated PostgresConnection, logger: Logger)
        async throws -> [Result<JSONValue, any Error>]
}

/// A job with what its handler decoded from it.
public struct DecodedJob<Work: Sendable>: Sendable {
    /// The job as claimed.
    public let job: Job
    /// What ``JobHandler/decode(_:)`` returned for it.
    public let work: Work

    public init(job: Job, work: Work) {
        self.job = job
        self.work = work
    }
}

extension JobHandler {
    public func lockKeys(for work: Work) -> [String] { [] }
    public func prepareBatch(_ jobs: [DecodedJob<Work>], on connection: isolated PostgresConnection) async throws {}

    public func handleBatch(_ jobs: [DecodedJob<Work>], on connection: isolated PostgresConnection, logger: Logger)
        async throws -> [Result<JSONValue, any Error>]
    {
        var results: [Result<JSONValue, any Error>] = []
        results.reserveCapacity(jobs.count)
        for job in jobs {
            do {
                let result = try await connection.withSavepoint { connection in
                    try await handle(job, on: connection, logger: logger)
                }
                results.append(.success(result))
            } catch let error where error is PostgresError || error is LostRace {
                throw error
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }
}

extension JobHandler where Work == Void {
    public func decode(_ job: Job) throws {}
}

/// Thrown by a handler when another transaction got there first: a row it read is gone, a
/// value it meant to take was taken. Nothing is wrong with the job; running it again, on what
/// the winner committed, will do.
///
/// The worker runs the job again at once in a fresh savepoint, up to
/// ``WorkerConfiguration/immediateRetries`` times; after that it is an ordinary retryable
/// failure (`500 internal`, `details.lost_race: true`). The database's own race signals (a
/// unique or foreign-key violation, a deadlock, a serialization failure) are treated the same.
public struct LostRace: Error, Sendable, CustomStringConvertible, JobFailureConvertible {
    /// What was lost, for operators (never customer data).
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { "lost a race: \(message)" }

    public var jobFailure: JobFailure {
        JobFailure(
            status: 500, code: "internal", message: description,
            details: ["transient": true, "lost_race": true], isRetryable: true)
    }
}
