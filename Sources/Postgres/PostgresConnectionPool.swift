import Logging

/// A bounded set of connections lent out through closures, so no caller can keep one.
///
/// Connections open lazily up to `size`; when all are lent, callers wait in order for the
/// next one returned. A connection lost while lent reconnects on its next use, so the pool
/// never hands out a dead session for long.
public actor PostgresConnectionPool {
    /// Where the connections go.
    public let configuration: PostgresConfiguration
    /// The most connections open at once.
    public let size: Int
    let logger: Logger
    private var idle: [PostgresConnection] = []
    private var opened = 0
    private var waiters: [CheckedContinuation<PostgresConnection, any Error>] = []
    private var closed = false

    public init(configuration: PostgresConfiguration, size: Int, logger: Logger = Logger(label: "postgres.pool")) {
        self.configuration = configuration
        self.size = max(1, size)
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
        guard !closed else { throw PostgresError(code: .poolClosed, message: "the connection pool is closed") }
        if let connection = idle.popLast() { return connection }
        if opened < size {
            opened += 1
            do {
                return try await PostgresConnection.connect(configuration, logger: logger)
            } catch {
                opened -= 1
                throw error
            }
        }
        return try await withCheckedThrowingContinuation { waiters.append($0) }
    }

    private func release(_ connection: PostgresConnection) async {
        if closed {
            await connection.close()
            opened -= 1
            return
        }
        if !waiters.isEmpty {
            waiters.removeFirst().resume(returning: connection)
        } else {
            idle.append(connection)
        }
    }

    /// Closes the idle connections and refuses new leases; lent ones close when returned.
    public func close() async {
        closed = true
        for connection in idle { await connection.close() }
        opened -= idle.count
        idle.removeAll()
        for waiter in waiters {
            waiter.resume(throwing: PostgresError(code: .poolClosed, message: "the connection pool is closed"))
        }
        waiters.removeAll()
    }
}
