/// A server setting for one statement: set for the transaction ahead of the statement, in its
/// round trip, and reset after it, with the next statement, so the statements around it are
/// planned and run as usual. A rolled-back savepoint undoes the setting too.
public struct StatementSetting: Sendable {
    let set: PostgresQuery
    let reset: PostgresQuery

    /// Sequential scans off: for statements that are index probes by design, whose plans must
    /// not turn into scans when the statistics say a table is empty.
    public static let noSequentialScans = StatementSetting(
        set: "SELECT set_config('enable_seqscan', 'off', true)", reset: "RESET enable_seqscan")

    /// The statement's generic plan, made once per session: for statements whose arrays'
    /// sizes differ from call to call, which PostgreSQL would otherwise plan again every time.
    public static let genericPlan = StatementSetting(
        set: "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)", reset: "RESET plan_cache_mode")
}

extension PostgresConnection {
    /// Runs `query` with `setting` (see ``StatementSetting``); no round trip of its own.
    public func query(_ query: PostgresQuery, with setting: StatementSetting) throws(PostgresError) -> PostgresRows {
        try around(setting) { () throws(PostgresError) in try self.query(query) }
    }

    /// ``sendAhead(keepingRows:)`` with `setting` (see ``StatementSetting``).
    public func sendAhead(keepingRows query: PostgresQuery, with setting: StatementSetting) throws(PostgresError)
        -> AheadRows
    {
        try around(setting) { () throws(PostgresError) in try sendAhead(keepingRows: query) }
    }

    /// `body` between the setting's set and its reset, both sent ahead.
    private func around<T>(_ setting: StatementSetting, _ body: () throws(PostgresError) -> T) throws(PostgresError) -> T {
        try sendAhead(setting.set)
        let result = try body()
        try sendAhead(setting.reset)
        return result
    }
}
