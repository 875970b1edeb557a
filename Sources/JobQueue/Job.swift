#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms
import Postgres

/// The states of a job (docs/contract.md section 2).
///
/// `ready` → `running` → `succeeded` | `ready` (a transient error, retried later) | `failed`.
/// `cancelled` is set by an operator; `succeeded`, `failed` and `cancelled` are final.
public enum JobState: String, Sendable, CaseIterable, PostgresEncodable, PostgresDecodable {
    case ready, running, succeeded, failed, cancelled

    public var postgresText: String? { rawValue }

    /// Succeeded, failed or cancelled: nothing more happens to the job unless retried.
    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }

    public static func decode(postgresText: String) throws(PostgresError) -> JobState {
        guard let state = JobState(rawValue: postgresText) else {
            throw PostgresError(code: .decoding, message: "not a job state: \(postgresText)")
        }
        return state
    }
}

/// A claimed job, as a handler sees it.
public struct Job: Sendable {
    /// The job id, increasing in enqueue order.
    public let id: Int64
    /// The named queue it was claimed from.
    public let queue: String
    /// Which handler runs it.
    public let kind: String
    /// The producer's JSON payload.
    public let payload: JSONValue
    /// The organization the job acts for; nil when a trusted producer left it to the handler.
    public let clientID: UUID?
    /// This attempt's number, starting at 1 (counted when the job was claimed).
    public let attempt: Int
    /// The attempts allowed before a transient failure becomes final.
    public let maxAttempts: Int
    /// The key that serializes this job with others, if any.
    public let orderingKey: String?
    /// The group the job takes turns in (its organization), '' for none.
    public let fairnessKey: String
    /// When the job was enqueued.
    public let createdAt: Date
    /// Seconds from its enqueueing, or its `run_at` when later (a retry, a scheduled job), to
    /// its claim, by the database's clock.
    public let waitedSeconds: Double
    /// Why the stored payload could not be read (nested deeper than the worker accepts, say);
    /// such a job fails with `invalid_payload` without reaching its handler.
    public let payloadProblem: String?

    /// How deep a stored payload may nest; deeper ones fail their job instead of the worker.
    public static let maxPayloadDepth = 128

    public init(
        id: Int64, queue: String, kind: String, payload: JSONValue, clientID: UUID? = nil, attempt: Int = 1,
        maxAttempts: Int = 10, orderingKey: String? = nil, fairnessKey: String = "", createdAt: Date = Date(),
        waitedSeconds: Double = 0, payloadProblem: String? = nil
    ) {
        self.id = id
        self.queue = queue
        self.kind = kind
        self.payload = payload
        self.clientID = clientID
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.orderingKey = orderingKey
        self.fairnessKey = fairnessKey
        self.createdAt = createdAt
        self.waitedSeconds = waitedSeconds
        self.payloadProblem = payloadProblem
    }

    init(row: PostgresRow) throws(PostgresError) {
        var payload = JSONValue.null
        var problem: String? = nil
        let text = try row.decode(String.self, "payload")
        do {
            payload = try JSONValue.parse(text, limits: JSONParseLimits(maxDepth: Self.maxPayloadDepth, maxBytes: 64 << 20))
        } catch {
            problem = error.message
        }
        self.init(
            id: try row.decode(Int64.self, "id"),
            queue: try row.decode(String.self, "queue"),
            kind: try row.decode(String.self, "kind"),
            payload: payload,
            clientID: try row.decode(UUID?.self, "client_id"),
            attempt: try row.decode(Int.self, "attempts"),
            maxAttempts: try row.decode(Int.self, "max_attempts"),
            orderingKey: try row.decode(String?.self, "ordering_key"),
            fairnessKey: try row.decode(String.self, "fairness_key"),
            createdAt: try row.decode(Date.self, "created_at"),
            waitedSeconds: try row.decode(Double?.self, "waited") ?? 0,
            payloadProblem: problem)
    }
}

/// A job to enqueue. Only the payload, queue and kind are required; everything else has the
/// table's defaults.
public struct NewJob: Sendable {
    public var queue: String
    public var kind: String
    public var payload: JSONValue
    public var clientID: UUID?
    /// Unique per queue: a repeated key enqueues nothing and returns the first job's id.
    public var idempotencyKey: String?
    /// Jobs with the same key never run at the same time, and run in id order.
    public var orderingKey: String?
    /// Smaller runs first.
    public var priority: Int16
    /// Not claimed before this time; nil means now.
    public var runAt: Date?
    public var maxAttempts: Int
    /// The group the job takes turns with others in (an organization); nil: the client, or
    /// what the table's triggers derive.
    public var fairnessKey: String?
    /// Announce the job's end on the channel `queue_jobs_finished` (for a producer that waits
    /// for the result, as `serve` does). Default: false.
    public var notifyFinished = false
    /// The import the job came from (`queue.imports`), and its line in the import's file.
    public var importID: UUID?
    public var importLine: Int?

    public init(
        queue: String, kind: String, payload: JSONValue, clientID: UUID? = nil, idempotencyKey: String? = nil,
        orderingKey: String? = nil, priority: Int16 = 0, runAt: Date? = nil, maxAttempts: Int = 10,
        fairnessKey: String? = nil
    ) {
        self.queue = queue
        self.kind = kind
        self.payload = payload
        self.clientID = clientID
        self.idempotencyKey = idempotencyKey
        self.orderingKey = orderingKey
        self.priority = priority
        self.runAt = runAt
        self.maxAttempts = maxAttempts
        self.fairnessKey = fairnessKey ?? clientID.map { UUIDText.string($0) }
    }
}

/// A job as an enqueue left it: its id, and its state then (`ready` for a new job; for an
/// idempotency key already used, the state of the job that holds it).
public struct EnqueuedJob: Sendable, Hashable {
    public var id: Int64
    public var state: JobState

    public init(id: Int64, state: JobState) {
        self.id = id
        self.state = state
    }
}
