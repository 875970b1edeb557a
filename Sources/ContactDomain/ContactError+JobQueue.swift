import JobQueue

/// A contact problem is the producer's to fix: recorded as the contract's error object and
/// never retried.
extension ContactError: JobFailureConvertible {
    public var jobFailure: JobFailure {
        JobFailure(status: status, code: code, message: message, details: details, isRetryable: false)
    }
}
