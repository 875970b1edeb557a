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
