import NIOCore
import Postgres
import Synchronization

/// One statement for the inputs of many concurrent callers: the front's multi-row INSERT of
/// requests' jobs (one commit and one notification for all of them, so that throughput is not
/// bounded by one commit per request) and its reads of finished jobs' outcomes.
///
/// A caller hands over its inputs as a group (a whole webhook notification, say); a group always
/// goes into one statement, so it is committed whole or not at all. Up to `runners` statements
/// run at a time, each runner on a connection of its own: a runner takes every group waiting
/// (up to `maximumInputs` inputs), runs `statement` on them, answers them, and goes on while
/// groups wait; with none waiting it returns its connection and ends. Under light load a caller
/// therefore waits for nobody; under heavy load the batches grow by themselves to what the
/// database takes, with no timer to tune. A runner stays on its connection's thread from one
/// batch to the next, so a busy HTTP event loop never delays the next statement.
///
/// `statement` returns one output per input, in order. When it throws, every group of its batch
/// gets the error.
///
/// A caller that runs on one of NIO's event loops is resumed on that loop (``HomeLoops``).
public final class SharedStatement<Input: Sendable, Output: Sendable>: Sendable {
    public typealias Statement = @Sendable ([Input], isolated PostgresConnection) throws(PostgresError) -> [Output]

    private struct Group: Sendable {
        let inputs: [Input]
        let continuation: CheckedContinuation<[Output], any Error>
        /// The event loop the caller ran on, if any: it is resumed there.
        let home: (any EventLoop)?
    }

    private struct State: Sendable {
        var pending: [Group] = []
        var running = 0
        var closed = false
    }

    private let pool: PostgresConnectionPool
    private let runners: Int
    private let maximumInputs: Int
    private let statement: Statement
    private let state = Mutex(State())

    public init(pool: PostgresConnectionPool, runners: Int = 1, maximumInputs: Int = 500, statement: @escaping Statement) {
        self.pool = pool
        self.runners = max(1, runners)
        self.maximumInputs = maximumInputs
        self.statement = statement
    }

    /// Runs the statement for `inputs` with the others waiting; returns their outputs in order.
    public func run(_ inputs: [Input]) async throws -> [Output] {
        guard !inputs.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            let home = HomeLoops.current
            let start = state.withLock { state -> Bool? in
                guard !state.closed else { return nil }
                state.pending.append(Group(inputs: inputs, continuation: continuation, home: home))
                guard state.running < runners else { return false }
                state.running += 1
                return true
            }
            switch start {
            case nil: continuation.resume(throwing: PostgresError(code: .poolClosed, message: "shutting down"))
            case true?: Task { await self.runWhileWaiting() }
            case false?: break
            }
        }
    }

    /// Refuses new groups from now on (those already handed over still run).
    public func close() {
        state.withLock { $0.closed = true }
    }

    /// One runner: batches while groups wait, on one connection.
    private func runWhileWaiting() async {
        do {
            try await pool.withConnection { connection in
                while let groups = self.nextBatch() {
                    self.answer(groups, on: connection)
                }
            }
        } catch {
            // No connection: everything waiting fails now rather than hang.
            while let groups = nextBatch() {
                Self.resume(groups, with: groups.map { _ in .failure(error) })
            }
        }
    }

    /// The groups waiting, up to `maximumInputs` inputs (at least one group); nil when none
    /// wait, and then this runner has ended.
    private func nextBatch() -> [Group]? {
        state.withLock { state -> [Group]? in
            guard !state.pending.isEmpty else {
                state.running -= 1
                return nil
            }
            var count = 0
            var taken = 0
            while taken < state.pending.count,
                taken == 0 || count + state.pending[taken].inputs.count <= maximumInputs
            {
                count += state.pending[taken].inputs.count
                taken += 1
            }
            let batch = Array(state.pending.prefix(taken))
            state.pending.removeFirst(taken)
            return batch
        }
    }

    private func answer(_ groups: [Group], on connection: isolated PostgresConnection) {
        let results: [Result<[Output], any Error>]
        do {
            let outputs = try statement(groups.flatMap(\.inputs), connection)
            guard outputs.count == groups.reduce(0, { $0 + $1.inputs.count }) else {
                throw PostgresError(code: .decoding, message: "the statement answered \(outputs.count) rows")
            }
            var offset = 0
            results = groups.map { group in
                let slice = outputs[offset..<offset + group.inputs.count]
                offset += group.inputs.count
                return .success(Array(slice))
            }
        } catch {
            results = groups.map { _ in .failure(error) }
        }
        Self.resume(groups, with: results)
    }

    /// Resumes each group's caller with its result, on the caller's event loop (``HomeLoops``).
    private static func resume(_ groups: [Group], with results: [Result<[Output], any Error>]) {
        HomeLoops.run(zip(groups, results).map { ($0.home, Answer(continuation: $0.continuation, result: $1)) }) {
            $0.deliver()
        }
    }

    private struct Answer: Sendable {
        let continuation: CheckedContinuation<[Output], any Error>
        let result: Result<[Output], any Error>

        func deliver() { continuation.resume(with: result) }
    }
}
