import NIOCore
import NIOPosix

/// Resuming a request's task on the event loop that owns its connection.
///
/// `serve` runs Swift tasks on NIO's event loops (``APIFront/runTasksOnEventLoops()``). A task
/// resumed from one of those loops stays on it; resumed from any other thread (the inserter's
/// PostgreSQL connection), it goes to whichever loop comes next, and its response then has to
/// cross back to the loop that owns the socket. So ``SharedStatement`` remembers each caller's
/// loop and resumes it there: one `execute` per loop for all of its callers. (``JobWaiter``'s
/// wake-ups were measured the same way and gained nothing: docs/http.md.) The loops must
/// outlive their callers (`serve`'s are NIO's singleton loops, which are never shut down).
enum HomeLoops {
    /// The event loop the caller runs on, if it runs on one.
    static var current: (any EventLoop)? { MultiThreadedEventLoopGroup.currentEventLoop }

    /// Runs `body` for every item on the loop the item names, in order (one `execute` per loop),
    /// and at once for the items that name none.
    static func run<Item: Sendable>(
        _ items: [(home: (any EventLoop)?, item: Item)], _ body: @escaping @Sendable (Item) -> Void
    ) {
        var byLoop: [(loop: any EventLoop, items: [Item])] = []
        for (home, item) in items {
            guard let home else {
                body(item)
                continue
            }
            if let index = byLoop.firstIndex(where: { $0.loop === home }) {
                byLoop[index].items.append(item)
            } else {
                byLoop.append((home, [item]))
            }
        }
        for (loop, items) in byLoop {
            loop.execute {
                for item in items { body(item) }
            }
        }
    }
}
