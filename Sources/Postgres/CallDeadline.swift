import CLibPQ
import Dispatch
import Synchronization

/// Sends a cancel request for a libpq call that runs past its deadline.
///
/// The server's `statement_timeout` bounds statements, but not every wait: it is switched
/// off before a commit, so a commit that waits for a synchronous standby that is gone (a
/// primary promoted with `synchronous_standby_names` still set) waits forever. A cancel
/// request ends such a wait: PostgreSQL then keeps the commit locally and warns. libpq's
/// `PQcancel` may be called from any thread, so a timer on a global queue sends it while the
/// connection's own thread is blocked in the call.
///
/// A call only notes its deadline: one timer at a time per connection looks when the oldest
/// deadline noted comes, and then either cancels the call still running past it or waits for
/// the deadline of the call running now. (A timer per call, each firing long after its call
/// had returned, was a few percent of a worker's CPU: half a dozen calls per batch.)
final class CallDeadline: Sendable {
    // libpq's PGcancel handles, kept as their addresses (plain integers cross isolation
    // boundaries; the handles themselves are only ever used by libpq).
    private struct State {
        var cancel: UInt = 0
        /// The running call's deadline; nil between calls.
        var deadline: DispatchTime?
        /// When the timer set last will look, and its number (a timer set before it does nothing).
        var armedFor: DispatchTime?
        var timer: UInt64 = 0
        /// Cancel requests being sent now (outside the lock: sending one may take a while).
        var sending = 0
        /// Handles replaced or detached while a request was being sent, freed after it.
        var retired: [UInt] = []

        /// The handles that can be freed now.
        mutating func freeable() -> [UInt] {
            guard sending == 0 else { return [] }
            defer { retired.removeAll() }
            return retired
        }
    }

    private let state = Mutex(State())

    /// Takes the cancel handle of a new session (the previous one is freed).
    func attach(_ connection: OpaquePointer) {
        replace(with: PQgetCancel(connection).map { UInt(bitPattern: $0) } ?? 0)
    }

    /// Frees the cancel handle; later deadlines do nothing.
    func detach() {
        replace(with: 0)
    }

    private func replace(with fresh: UInt) {
        let free = state.withLock { state in
            if state.cancel != 0 { state.retired.append(state.cancel) }
            state.cancel = fresh
            state.deadline = nil
            return state.freeable()
        }
        Self.free(free)
    }

    private static func free(_ handles: [UInt]) {
        for handle in handles { PQfreeCancel(OpaquePointer(bitPattern: handle)) }
    }

    /// Runs `body` (a blocking libpq call); if it is still running after `timeout`, the server
    /// is asked to cancel it.
    func run<T, E: Error>(timeout: Duration?, _ body: () throws(E) -> T) throws(E) -> T {
        guard let timeout else { return try body() }
        let deadline = DispatchTime.now() + .milliseconds(Int(timeout.wholeMilliseconds))
        let timer = state.withLock { state -> UInt64? in
            state.deadline = deadline
            // A timer that will look by then sees this call's deadline then.
            if let armedFor = state.armedFor, armedFor <= deadline { return nil }
            state.timer &+= 1
            state.armedFor = deadline
            return state.timer
        }
        if let timer { arm(timer, at: deadline) }
        defer { state.withLock { $0.deadline = nil } }
        return try body()
    }

    private func arm(_ timer: UInt64, at time: DispatchTime) {
        DispatchQueue.global().asyncAfter(deadline: time) { [self] in
            self.fire(timer)
        }
    }

    private func fire(_ timer: UInt64) {
        enum Next { case nothing, cancel(UInt), look(UInt64, DispatchTime) }
        let next = state.withLock { state -> Next in
            guard state.timer == timer else { return .nothing }  // a sooner timer replaced this one
            guard let deadline = state.deadline else {
                state.armedFor = nil  // no call running: the next one sets a timer
                return .nothing
            }
            if DispatchTime.now() < deadline {
                state.timer &+= 1  // a later call: look again at its deadline
                state.armedFor = deadline
                return .look(state.timer, deadline)
            }
            state.armedFor = nil
            guard state.cancel != 0 else { return .nothing }
            state.sending += 1
            return .cancel(state.cancel)
        }
        switch next {
        case .nothing: return
        case .look(let timer, let time): arm(timer, at: time)
        case .cancel(let handle): send(cancel: handle)
        }
    }

    /// Sends the cancel request (outside the lock: it may take a while), then frees the
    /// handles retired meanwhile.
    private func send(cancel handle: UInt) {
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(OpaquePointer(bitPattern: handle), &buffer, Int32(buffer.count))
        let free = state.withLock { state in
            state.sending -= 1
            return state.freeable()
        }
        Self.free(free)
    }

    deinit {
        // No request is being sent: each holds a reference to this object until it returns.
        let handles = state.withLock { state in state.retired + (state.cancel == 0 ? [] : [state.cancel]) }
        Self.free(handles)
    }
}
