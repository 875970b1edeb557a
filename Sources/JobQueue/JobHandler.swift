import JSON
import Logging
import Postgres

/// Runs the jobs of one kind.
///
/// The worker calls ``handle(_:on:logger:)`` inside the transaction that will also record the
/// job's outcome, in a savepoint of its own (or, for handlers that declare
/// ``failsBeforeWriting``, without one until a database error asks for it): every row the
/// handler writes through `connection` commits together with `succeeded`, or not at all. A
/// handler that throws leaves nothing behind; what it threw decides between `failed` and a
/// retry (see ``JobFailure/classify(_:)``).
///
/// A lost race with another transaction (a unique or foreign-key violation, a deadlock or a
/// serialization failure) re-runs the handler at once in a fresh savepoint, a few times,
/// before it counts as a failure: handlers written as "look up, then insert" need no retry
/// loop of their own.
public protocol JobHandler: Sendable {
    /// The `kind` this handler runs.
    var kind: String { get }

    /// Does the job's work and returns the result to store on the job.
    func handle(_ job: Job, on connection: isolated PostgresConnection, logger: Logger) async throws -> JSONValue

    /// The advisory locks the job will need, named by any strings.
    ///
    /// A batch runs several jobs in one transaction, and locks are held until it commits. Two
    /// batches that take the same locks in different orders deadlock (PostgreSQL breaks the
    /// tie after `deadlock_timeout`, a second lost). So the worker takes every lock a batch
    /// names here up front, in one global order, before it runs the first job. The handler
    /// may take the same locks again (they nest). Default: none.
    func lockKeys(for job: Job) -> [String]

    /// Called once per batch, in its transaction, before the first of `jobs` (those of this
    /// handler's kind) runs: the place to refresh caches or read what every job needs.
    /// Default: nothing.
    func prepareBatch(_ jobs: [Job], on connection: isolated PostgresConnection) async throws

    /// True when every error the handler throws, other than a database error, is thrown
    /// before it wrote anything. The worker then runs a batch without a savepoint per job
    /// (two round trips fewer each); the first database error rolls the batch back and runs
    /// it again with savepoints, so one job's failure still never touches another.
    /// Default: false.
    var failsBeforeWriting: Bool { get }

    /// True when the handler implements ``handleBatch(_:on:logger:)``: the worker then gives
    /// it every job of its kind in a batch at once instead of one by one. Default: false.
    var handlesBatches: Bool { get }

    /// Runs several jobs of this kind together, set-based (a few statements for all of them
    /// rather than a few each), and returns one result per job, in the order of `jobs`.
    ///
    /// A job's own failure (bad input, a rule it breaks) is its `.failure` and touches no
    /// other job. A database error ends the whole call instead: the worker rolls back
    /// everything the call wrote (it runs in a savepoint of its own) and runs the same jobs
    /// again one by one through ``handle(_:on:logger:)``, each in its own savepoint, so the
    /// per-job guarantees hold whatever happens to the set. Default: the jobs one by one.
    func handleBatch(_ jobs: [Job], on connection: isolated PostgresConnection, logger: Logger) async throws
        -> [Result<JSONValue, any Error>]
}

extension JobHandler {
    public func lockKeys(for job: Job) -> [String] { [] }
    public func prepareBatch(_ jobs: [Job], on connection: isolated PostgresConnection) async throws {}
    public var failsBeforeWriting: Bool { false }
    public var handlesBatches: Bool { false }

    public func handleBatch(_ jobs: [Job], on connection: isolated PostgresConnection, logger: Logger) async throws
        -> [Result<JSONValue, any Error>]
    {
        var results: [Result<JSONValue, any Error>] = []
        results.reserveCapacity(jobs.count)
        for job in jobs {
            do {
                results.append(.success(try await handle(job, on: connection, logger: logger)))
            } catch let error as PostgresError {
                throw error
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }
}
