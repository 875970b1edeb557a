import JSON
import Logging
import Postgres

/// `queue.noop`: succeeds at once with `{"ok": true}`. Measures the queue alone (the bench's
/// no-op mode) and checks a deployment end to end without touching any domain table.
public struct NoopHandler: JobHandler {
    public typealias Work = Void
    public let kind = "queue.noop"
    public init() {}

    public func handle(_ job: DecodedJob<Void>, on connection: isolated PostgresConnection, logger: Logger)
        async throws -> JSONValue
    {
        ["ok": true]
    }

    /// Writes nothing and cannot fail, so the set needs no savepoint per job.
    public func handleBatch(_ jobs: [DecodedJob<Void>], on connection: isolated PostgresConnection, logger: Logger)
        async throws -> [Result<JSONValue, any Error>]
    {
        Array(repeating: .success(["ok": true]), count: jobs.count)
    }
}
