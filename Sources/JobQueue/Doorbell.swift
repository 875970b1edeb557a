/// Wakes idle worker slots: rung by a notification, the fallback poll, a finished batch or
/// shutdown.
///
/// A slot reads ``generation`` before it looks for work and passes it to ``wait(after:)``; a
/// ring that happened in between returns at once, so no wake-up is ever lost.
actor Doorbell {
    private(set) var generation: UInt64 = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Wakes every waiting slot.
    func ring() {
        generation &+= 1
        let woken = waiters
        waiters.removeAll()
        for waiter in woken { waiter.resume() }
    }

    /// Returns at the first ring after `seen` (at once if there was one already).
    func wait(after seen: UInt64) async {
        guard generation == seen else { return }
        await withCheckedContinuation { waiters.append($0) }
    }
}

/// Lets one slot of a worker claim at a time.
///
/// Two claims that overlap scan the same ready rows: PostgreSQL's recheck of a row the other
/// claim just took locks that row until the second claim commits, and the first batch then
/// waits for it before it can start. Claims are short (a few milliseconds for hundreds of
/// jobs), so taking turns costs less than colliding. A slot takes its turn once it holds a
/// connection, so a turn never waits for the pool.
actor ClaimGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Returns when no other claim of this worker is running; pair with ``leave()``.
    func enter() async {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        } else {
            busy = true
        }
    }

    /// Ends the turn taken with ``enter()``.
    func leave() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }
}
