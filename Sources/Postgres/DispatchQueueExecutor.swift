import Dispatch

/// A serial executor that runs an actor's jobs on its own `DispatchQueue`.
///
/// libpq calls block the calling thread. Swift's cooperative pool has one thread per core,
/// so a blocking call there stalls every task in the process. Each connection actor runs on
/// one of these executors instead: its blocking calls occupy a Dispatch thread, never a
/// cooperative one.
final class DispatchQueueExecutor: SerialExecutor {
    let queue: DispatchQueue

    init(label: String) {
        self.queue = DispatchQueue(label: label)
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let unownedJob = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async {
            unownedJob.runSynchronously(on: executor)
        }
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
