import JSON
import JobQueue

/// A promise of the store or the planner that did not hold (a statement returned fewer rows
/// than it must): a bug, not the job's fault and not a lost race. Recorded as `500 internal`
/// with the invariant's name in the details, and retried until `max_attempts`.
enum UpsertInvariant: String, Error, JobFailureConvertible {
    /// The lookup statement returned a different number of rows than it was given jobs.
    case lookupRowCount = "lookup_row_count"
    /// A job's contact was neither found by the lookup nor returned by the write.
    case contactNotWritten = "contact_not_written"
    /// The set-based run ended with a job it gave no result.
    case jobWithoutResult = "job_without_result"

    var jobFailure: JobFailure {
        JobFailure(
            status: 500, code: "internal", message: "contact.upsert broke an internal invariant (\(rawValue))",
            details: ["invariant": .string(rawValue)], isRetryable: true)
    }
}
