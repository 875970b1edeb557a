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
final class CallDeadline: Sendable {
    // libpq's PGcancel handles, kept as their addresses (plain integers cross isolation
    // boundaries; the handles themselves are only ever used by libpq).
    private struct State {
        var cancel: UInt = 0
        var call: UInt64 = 0
        var running = false
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
            state.running = false
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
        let call = state.withLock { state in
            state.call &+= 1
            state.running = true
            return state.call
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(timeout.wholeMilliseconds))) {
            [self] in
            self.fire(call)
        }
        defer { state.withLock { $0.running = false } }
        return try body()
    }

    private func fire(_ call: UInt64) {
        let cancel = state.withLock { state -> UInt in
            guard state.running, state.call == call, state.cancel != 0 else { return 0 }
            state.sending += 1
            return state.cancel
        }
        guard cancel != 0 else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(OpaquePointer(bitPattern: cancel), &buffer, Int32(buffer.count))
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
