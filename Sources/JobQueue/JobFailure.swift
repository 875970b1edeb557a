import JSON
import Postgres

/// Why a job did not succeed, in the shape stored on the job (docs/contract.md section 6):
/// `{"status", "code", "message", "details"}`, plus whether another attempt may succeed.
///
/// Handlers throw errors that conform to ``JobFailureConvertible`` to choose the status,
/// code and retry behaviour; any other error is an internal, retryable failure.
public struct JobFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// An HTTP-like status: 4xx for the producer's mistakes, 5xx for the system's.
    public var status: Int
    /// A stable machine-readable code (`invalid_fields`, `internal`, `unknown_kind`…).
    public var code: String
    /// A sentence for operators. Never includes secrets.
    public var message: String
    /// Structured details (every problem found, for example); nil for none.
    public var details: JSONValue?
    /// True when another attempt, later, may succeed.
    public var isRetryable: Bool

    public init(status: Int, code: String, message: String, details: JSONValue? = nil, isRetryable: Bool) {
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.isRetryable = isRetryable
    }

    /// The error object stored in `last_error`.
    public var errorObject: JSONValue {
        var object: [String: JSONValue] = [
            "status": .number(JSONNumber(status)), "code": .string(code), "message": .string(message),
        ]
        object["details"] = details ?? .object([:])
        return .object(object)
    }

    public var description: String { "\(status) \(code): \(message)" }

    /// The job's kind has no handler in this worker.
    public static func unknownKind(_ kind: String) -> JobFailure {
        JobFailure(
            status: 500, code: "unknown_kind", message: "no handler is registered for this job kind",
            details: ["kind": .string(kind)], isRetryable: false)
    }

    /// Any error, classified: a ``JobFailureConvertible`` says for itself; a database error is
    /// internal and retryable (transient ones surely, others because a bug fix may cure them,
    /// until `max_attempts`); anything else is internal and retryable.
    public static func classify(_ error: any Error) -> JobFailure {
        if let failure = error as? JobFailure { return failure }
        if let convertible = error as? any JobFailureConvertible { return convertible.jobFailure }
        if let postgres = error as? PostgresError {
            var details: [String: JSONValue] = ["transient": .bool(postgres.isTransient)]
            if let sqlState = postgres.sqlState { details["sqlstate"] = .string(sqlState.code) }
            if let constraint = postgres.constraint { details["constraint"] = .string(constraint) }
            return JobFailure(
                status: 500, code: "internal", message: "database error: \(postgres.message)",
                details: .object(details), isRetryable: true)
        }
        return JobFailure(
            status: 500, code: "internal", message: "unexpected error: \(String(describing: type(of: error)))",
            details: nil, isRetryable: true)
    }
}

/// An error that knows how it should be recorded on a job.
public protocol JobFailureConvertible: Error {
    /// The failure to record.
    var jobFailure: JobFailure { get }
}
