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
}

extension JobHandler {
    public func lockKeys(for job: Job) -> [String] { [] }
    public func prepareBatch(_ jobs: [Job], on connection: isolated PostgresConnection) async throws {}
    public var failsBeforeWriting: Bool { false }
}
