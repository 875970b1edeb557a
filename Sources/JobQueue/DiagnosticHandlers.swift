import JSON
import Logging
import Postgres

/// `queue.noop`: succeeds at once with `{"ok": true}`. Measures the queue alone (the bench's
/// no-op mode) and checks a deployment end to end without touching any domain table.
public struct NoopHandler: JobHandler {
    public let kind = "queue.noop"
    public let failsBeforeWriting = true
    public init() {}
    public func handle(_ job: Job, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        ["ok": true]
    }
}

/// `queue.sleep`: holds its transaction open for `payload.ms` milliseconds (`pg_sleep`), then
/// succeeds. Used by the fault tests to have jobs in flight when a worker is killed or told
/// to stop.
public struct SleepHandler: JobHandler {
    public let kind = "queue.sleep"
    public init() {}
    public func handle(_ job: Job, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        let milliseconds = job.payload["ms"].flatMap { value -> Int? in
            if case .number(let n) = value { return n.intValue }
            return nil
        } ?? 100
        try connection.execute("SELECT pg_sleep(\(milliseconds)::float8 / 1000)")
        return ["slept_ms": .number(JSONNumber(milliseconds))]
    }
}
