import Logging

/// A bounded set of connections lent out through closures, so no caller can keep one.
///
/// Connections open lazily up to `size`; when all are lent, callers wait in order for the
/// next one returned. A connection lost while lent reconnects on its next use, so the pool
/// never hands out a dead session for long.
///
/// No wait is unbounded. A caller that waits for a connection gets one when another caller
/// returns it, or a place to open one when an opening fails (that caller then tries to open
/// its own, and reports the failure if it fails too), or ``PostgresError/Code/poolTimeout``
/// after `acquireTimeout`, or ``PostgresError/Code/poolClosed`` when the pool closes.
public actor PostgresConnectionPool {
    /// Where the connections go.
    public let configuration: PostgresConfiguration
    /// The most connections open at once.
    public let size: Int
    /// How long a caller waits for a connection before giving up with a transient error.
    public let acquireTimeout: Duration
    let logger: Logger
    private var idle: [PostgresConnection] = []
    /// Every connection opened and not closed, lent or idle.
    private var all: [ObjectIdentifier: PostgresConnection] = [:]
    /// Connections open, lent, idle or being opened.
    private var opened = 0
    private var waiters: [Waiter] = []
    private var nextWaiterID = 0
    private var closed = false

    /// What a waiting caller is given: a connection, or the right to open one itself.
    private enum Grant: Sendable {
        case connection(PostgresConnection)
        case open
    }

    private struct Waiter {
        let id: Int
        let continuation: CheckedContinuation<Grant, any Error>
    }

    public init(
        configuration: PostgresConfiguration, size: Int, acquireTimeout: Duration = .seconds(30),
        logger: Logger = Logger(label: "postgres.pool")
    ) {
        self.configuration = configuration
        self.size = max(1, size)
        self.acquireTimeout = acquireTimeout
        self.logger = logger
    }

    /// Lends a connection to `body`, isolated to it, and takes it back when `body` ends.
    public nonisolated func withConnection<T: Sendable>(
        _ body: @Sendable (isolated PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await lease()
        do {
            let value = try await connection.run(body)
            await release(connection)
            return value
        } catch {
            await release(connection)
            throw error
        }
    }

    private func lease() async throws -> PostgresConnection {
        guard !closed else { throw Self.closedError }
        if let connection = idle.popLast() { return connection }
        if opened < size {
            opened += 1
            return try await open()
        }
        switch try await waitForGrant() {
        case .connection(let connection): return connection
        case .open: return try await open()
        }
    }

    /// Opens a connection for a place already counted in `opened`; a failure gives the place
    /// back, and to the first waiter, so that nobody waits for a connection that will never come.
    private func open() async throws -> PostgresConnection {
        do {
            let connection = try await PostgresConnection.connect(configuration, logger: logger)
            if closed {
                await connection.close()
                opened -= 1
                throw Self.closedError
            }
            all[ObjectIdentifier(connection)] = connection
            return connection
        } catch {
            if !waiters.isEmpty {
                // The place passes to the first waiter, who opens a connection of its own.
                waiters.removeFirst().continuation.resume(returning: .open)
            } else {
                opened -= 1
            }
            throw error
        }
    }

    private func waitForGrant() async throws -> Grant {
        nextWaiterID += 1
        let id = nextWaiterID
        let timeout = acquireTimeout
        let timer = Task { [weak self] in
            try await Task.sleep(for: timeout)
            await self?.expire(id)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            waiters.append(Waiter(id: id, continuation: continuation))
        }
    }

    private func expire(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(
            throwing: PostgresError(
                code: .poolTimeout,
                message: "no connection of the pool became free within \(acquireTimeout)"))
    }

    private func release(_ connection: PostgresConnection) async {
        if closed {
            await connection.close()
            all[ObjectIdentifier(connection)] = nil
            opened -= 1
            return
        }
        if !waiters.isEmpty {
            waiters.removeFirst().continuation.resume(returning: .connection(connection))
        } else {
            idle.append(connection)
        }
    }

    /// How many connections are open, lent or idle (for tests and diagnostics).
    public var openCount: Int { opened }

    /// The server process ids of the pool's sessions, lent or idle, for diagnostics.
    public var backendPIDs: [Int32] { all.values.map(\.lastBackendPID).filter { $0 != 0 } }

    /// How many callers are waiting for a connection (for tests and diagnostics).
    public var waitingCount: Int { waiters.count }

    /// Closes the idle connections and refuses new leases; lent ones close when returned.
    public func close() async {
        closed = true
        for connection in idle {
            await connection.close()
            all[ObjectIdentifier(connection)] = nil
        }
        opened -= idle.count
        idle.removeAll()
        for waiter in waiters { waiter.continuation.resume(throwing: Self.closedError) }
        waiters.removeAll()
    }

    private static var closedError: PostgresError {
        PostgresError(code: .poolClosed, message: "the connection pool is closed")
    }
}
