import Synchronization

/// Wakes idle worker slots: rung by a notification, the fallback poll, a claim that may have
/// left work behind, or shutdown.
///
/// A slot reads ``generation`` before it looks for work and passes it to ``wait(after:)``; a
/// ring that happened in between returns at once, so no wake-up is ever lost. A ring wakes one
/// waiting slot, not all of them: a slot whose claim filled its limit rings again, so a burst
/// wakes as many slots as it needs, and a single job (or a trickle of them) wakes one slot
/// instead of sending every slot to a claim that finds nothing. Shutdown wakes them all (``ringAll()``).
actor Doorbell {
    private(set) var generation: UInt64 = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Wakes one waiting slot (the one waiting longest).
    func ring() {
        generation &+= 1
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }

    /// Wakes every waiting slot.
    func ringAll() {
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
///
/// A lock, not an actor: a turn that is free is taken on the caller's own executor (the
/// connection's), and given back without leaving it. As an actor, entering and leaving were two
/// hops to the global executor and back around every claim, 0.4 ms of a one-slot worker's
/// 3.5 ms claim under the HTTP front's sync line.
final class ClaimGate: Sendable {
    private struct State {
        var busy = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    /// Returns when no other claim of this worker is running; pair with ``leave()``.
    nonisolated(nonsending) func enter() async {
        let entered = state.withLock { state in
            guard !state.busy else { return false }
            state.busy = true
            return true
        }
        if entered { return }
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            // The turn may have been given back meanwhile: take it, or wait for it.
            let free = state.withLock { state in
                guard !state.busy else {
                    state.waiters.append(waiter)
                    return false
                }
                state.busy = true
                return true
            }
            if free { waiter.resume() }
        }
    }

    /// Ends the turn taken with ``enter()``, handing it to the longest waiter if there is one.
    func leave() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.waiters.isEmpty else {
                state.busy = false
                return nil
            }
            return state.waiters.removeFirst()  // still busy: the turn passes to it
        }
        next?.resume()
    }
}

/// The size of a slot's next claim: small when little is waiting, growing toward the maximum
/// on a backlog.
///
/// It starts at 8 (or the maximum, if smaller), grows fourfold after every claim that came back full,
/// and after one that did not, falls to twice what it found. An idle worker's claims stay
/// small; a backlog reaches full batches within a few claims, and a burst of moderate size is
/// spread over the slots instead of landing whole in the first one. Each slot keeps its own,
/// so that one slot finding nothing (the rest of the queue waits behind what another slot
/// runs) does not shrink the others'.
struct BatchSizer {
    let maximum: Int
    let minimum: Int
    /// The limit for the next claim.
    private(set) var next: Int

    /// A sizer growing toward `maximum`; one that is not `adaptive` always answers `maximum`.
    init(maximum: Int, adaptive: Bool = true) {
        self.maximum = max(1, maximum)
        self.minimum = adaptive ? min(8, self.maximum) : self.maximum
        self.next = self.minimum
    }

    /// Records what a claim with `limit` found.
    mutating func claimed(_ count: Int, of limit: Int) {
        next = count >= limit ? min(maximum, max(next, limit) * 4) : max(minimum, min(maximum, count * 2))
    }
}

/// The slot that serves urgent jobs while less urgent work waits.
///
/// A claim takes one priority, the most urgent ready. When less urgent work was waiting too
/// (an import's backlog behind a live stream), its batch is urgent: small, and short. While it
/// runs, the worker's other slots skip that priority and keep draining the backlog in full
/// batches. Without this every slot would find a live job or two at each claim and run small
/// batches only; with it, a live stream costs one slot's small batches, and a live job waits
/// for that slot (milliseconds) or the next slot to come free.
final class UrgentSlot: Sendable {
    private let state = Mutex<(slot: Int, priority: Int16)?>(nil)

    /// The priority `slot` should skip (and everything more urgent), if another slot serves it.
    func skip(for slot: Int) -> Int16? {
        state.withLock { current in
            guard let current, current.slot != slot else { return nil }
            return current.priority
        }
    }

    /// Records what `slot` claimed: it serves the urgent priority now, or no longer.
    func claimed(_ claim: QueueStore.Claim, by slot: Int) {
        state.withLock { current in
            if claim.urgent, let priority = claim.priority {
                current = (slot, priority)
            } else if current?.slot == slot {
                current = nil
            }
        }
    }

    /// `slot` finished its batch.
    func finished(by slot: Int) {
        state.withLock { current in
            if current?.slot == slot { current = nil }
        }
    }
}

/// Which slots claim or run a batch now, and whether the last claim left work behind: an idle
/// slot joins a busy one only when there is more than one slot's worth of work.
///
/// Every batch has a fixed cost (its claim, its transaction's statements, its commit) that
/// its jobs share. When jobs arrive steadily, slots that each claim the moment a notification
/// rings split the stream into many small batches and pay that cost many times over; one slot
/// claiming everything that arrived while its batch ran pays it once. So while a slot claims or
/// runs a batch, the others stand by, and join it when a claim came back full (a backlog: work
/// for more than one), or once that batch has run for `joinAfter` (a slow batch must not keep
/// new jobs waiting). A slot counts as busy from the start of its claim until a claim of its
/// finds nothing or it stands by: one that finished a batch claims again at once.
final class SlotActivity: Sendable {
    private struct State {
        /// Busy slots, with when their current claim started.
        var busy: [Int: ContinuousClock.Instant] = [:]
        var backlog = false
    }
    private let state = Mutex(State())
    let joinAfter: Duration

    init(joinAfter: Duration) { self.joinAfter = joinAfter }

    /// Whether `slot` may claim now; if so it counts as busy from `now`. It may not (and no
    /// longer counts as busy) while another slot's claim started less than `joinAfter` ago and
    /// no claim left work behind.
    func mayClaim(_ slot: Int, now: ContinuousClock.Instant) -> Bool {
        state.withLock { state in
            let standBy = !state.backlog && state.busy.contains { $0.key != slot && now - $0.value < joinAfter }
            if standBy {
                state.busy[slot] = nil
            } else {
                state.busy[slot] = now
            }
            return !standBy
        }
    }

    /// Records a claim of `slot`: whether it may have left work behind, and whether it found any
    /// (a slot that found none is idle).
    func claimed(by slot: Int, jobs: Int, leftMore: Bool) {
        state.withLock { state in
            state.backlog = leftMore
            if jobs == 0 { state.busy[slot] = nil }
        }
    }

    /// Whether `slot` still runs the batch whose claim started at `since`.
    func isBusy(_ slot: Int, since: ContinuousClock.Instant) -> Bool {
        state.withLock { $0.busy[slot] == since }
    }

    /// `slot` is idle (its claim failed, or it stops).
    func idle(_ slot: Int) {
        _ = state.withLock { $0.busy.removeValue(forKey: slot) }
    }
}
