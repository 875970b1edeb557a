import Synchronization

/// What a worker knows about its own progress: when a round trip with PostgreSQL last
/// succeeded, how many failed in a row since, and the latest error.
///
/// Every loop of the worker reports here; a watchdog that never touches the database reads it,
/// so that a worker that cannot make progress says so at warning level every few seconds,
/// whether its calls fail or hang (a commit waiting for a synchronous standby that is gone,
/// say), instead of going silent while its process looks alive.
final class WorkerHealth: Sendable {
    struct State {
        var lastSuccess = ContinuousClock.now
        var failuresSinceSuccess = 0
        var lastError: String?
    }

    private let state = Mutex(State())

    /// A round trip completed.
    func succeeded() {
        state.withLock { state in
            state.lastSuccess = .now
            state.failuresSinceSuccess = 0
        }
    }

    /// A round trip failed with `error`.
    func failed(_ error: any Error) {
        let text = "\(error)"
        state.withLock { state in
            state.failuresSinceSuccess += 1
            state.lastError = text
        }
    }

    /// The state now.
    var snapshot: State { state.withLock { $0 } }
}
