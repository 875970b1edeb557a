import CLibPQ
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One PostgreSQL session over libpq, owned by an actor that runs on its own Dispatch queue.
///
/// Every libpq call blocks, so none may run on Swift's cooperative pool (one thread per
/// core). The actor's executor is a private serial `DispatchQueue`: callers `await` it from
/// anywhere, and code that takes the connection as an `isolated` parameter (the closures of
/// ``run(_:)``, ``withTransaction(_:)`` and ``withSavepoint(_:)``) runs its statements on that
/// queue back to back, with no hop between them. The libpq handle never leaves the actor.
///
/// A lost connection surfaces as a transient ``PostgresError`` and the next call reconnects,
/// except inside a transaction: there every call fails with
/// ``PostgresError/Code/transactionAborted`` until the transaction's closure returns, so work
/// can never silently continue outside the transaction it started in.
public actor PostgresConnection {
    /// Where this connection goes.
    public let configuration: PostgresConfiguration
    let logger: Logger
    private let executor: DispatchQueueExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private var handle: OpaquePointer?
    private var prepared: [String: String] = [:]
    private var listening: Set<String> = []
    private var transactionDepth = 0
    private var lostInTransaction = false
    private var savepointCounter = 0
    /// Statements sent ahead of the next statement whose result is read (``sendAhead(_:)``).
    private var ahead: [Pending] = []
    /// The rows of statements sent with ``sendAhead(keepingRows:)`` that ran, until read.
    private var kept: [Int: Result<PostgresRows, PostgresError>] = [:]
    private var keptCount = 0
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let notices: NoticeLog
    private let deadline = CallDeadline()
    /// How many times the connection was re-established after being lost.
    public private(set) var reconnects = 0
    /// How many statements (or pipelines of statements) waited for the server's answer: the
    /// round trips this connection made, preparing statements included.
    public private(set) var roundTrips = 0
    private let serverPID = Atomic<Int32>(0)

    /// The server process id of the latest session, readable while the connection is busy
    /// (to ask `pg_stat_activity` what a hanging call waits for); 0 before the first.
    public nonisolated var lastBackendPID: Int32 { serverPID.load(ordering: .relaxed) }

    /// The most statements kept prepared per connection; further ones run unprepared.
    static let maxPreparedStatements = 512

    private init(configuration: PostgresConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        self.executor = DispatchQueueExecutor(label: "postgres.connection")
        self.notices = NoticeLog(logger: logger)
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        }
        self.wakeRead = fds[0]
        self.wakeWrite = fds[1]
    }

    isolated deinit {
        if let handle { PQfinish(handle) }
        if wakeRead >= 0 { Glibc.close(wakeRead) }
        if wakeWrite >= 0 { Glibc.close(wakeWrite) }
    }

    /// Opens a connection; throws ``PostgresError/Code/connection`` when the server cannot be reached.
    public static func connect(
        _ configuration: PostgresConfiguration, logger: Logger = Logger(label: "postgres")
    ) async throws(PostgresError) -> PostgresConnection {
        let connection = PostgresConnection(configuration: configuration, logger: logger)
        try await connection.open()
        return connection
    }

    private func open() throws(PostgresError) {
        handle = try establish()
    }

    /// Closes the session; a later call opens a new one.
    public func close() {
        deadline.detach()
        if let handle { PQfinish(handle) }
        handle = nil
    }

    /// Runs `body` with this connection, isolated: its statements run back to back on the
    /// connection's queue.
    @discardableResult
    public func run<T: Sendable>(_ body: @Sendable (isolated PostgresConnection) async throws -> T) async rethrows -> T {
        try await body(self)
    }

    /// True while the session is open and healthy.
    public var isConnected: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK
    }

    /// The server process id of this session (for `pg_terminate_backend` in tests and operations).
    public func backendPID() throws(PostgresError) -> Int32 {
        PQbackendPID(try live())
    }

    // MARK: Connecting

    private func establish() throws(PostgresError) -> OpaquePointer {
        var configuration = self.configuration
        if configuration.options["client_encoding"] == nil {
            configuration = configuration.with("client_encoding", "UTF8")
        }
        if configuration.options["connect_timeout"] == nil {
            configuration = configuration.with("connect_timeout", "10")
        }
        guard let connection = PQconnectdb(configuration.connectionString) else {
            throw PostgresError(code: .connection, message: "out of memory while connecting")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = self.configuration.scrub(String(cString: PQerrorMessage(connection)))
            PQfinish(connection)
            throw PostgresError(
                code: .connection, sqlState: Self.sqlState(ofConnectionFailure: message),
                message: Self.summarize(message))
        }
        // Server notices are not errors; libpq's default prints them to stderr, which would
        // clutter the worker's structured logs. Warnings ("canceling wait for synchronous
        // replication…") are logged at warning, everything else ("relation already exists,
        // skipping") at debug.
        PQsetNoticeReceiver(connection, Self.receiveNotice, Unmanaged.passUnretained(notices).toOpaque())
        guard applySettings(connection) else {
            let message = self.configuration.scrub(String(cString: PQerrorMessage(connection)))
            PQfinish(connection)
            throw PostgresError(code: .connection, message: Self.summarize(message))
        }
        prepared.removeAll()
        // Statements still waiting ahead were prepared on the lost session, whose names mean
        // nothing here (or another statement): they go as text.
        for index in ahead.indices { ahead[index].name = nil }
        serverPID.store(PQbackendPID(connection), ordering: .relaxed)
        deadline.attach(connection)
        for channel in listening {
            if let statement = Self.listenStatement(connection, channel) {
                PQclear(PQexec(connection, statement))
            }
        }
        return connection
    }

    /// Sets the session's time zone and date style (the text formats this layer reads) and
    /// the configuration's session settings, in one round trip.
    private func applySettings(_ connection: OpaquePointer) -> Bool {
        let names = ["TimeZone", "DateStyle"] + configuration.sessionSettings.map(\.name)
        let values = ["UTC", "ISO, YMD"] + configuration.sessionSettings.map(\.value)
        let sql = "SELECT count(set_config(n, v, false)) FROM unnest($1::text[], $2::text[]) AS s(n, v)"
        guard let texts = try? Self.texts(of: [names, values]) else { return false }
        let result = Self.withCStrings(texts) { pointers in
            PQexecParams(connection, sql, Int32(pointers.count), nil, pointers, nil, nil, 0)
        }
        defer { PQclear(result) }
        return result.map { PQresultStatus($0) == PGRES_TUPLES_OK } ?? false
    }

    /// Where libpq's notice receiver logs; lives as long as the connection.
    final class NoticeLog: Sendable {
        let logger: Logger
        init(logger: Logger) { self.logger = logger }
    }

    static let receiveNotice: PQnoticeReceiver = { argument, result in
        guard let argument, let result else { return }
        let log = Unmanaged<NoticeLog>.fromOpaque(argument).takeUnretainedValue()
        let severity = PQresultErrorField(result, diagSeverity).map { String(cString: $0) } ?? ""
        let message = PQresultErrorField(result, diagMessagePrimary).map { String(cString: $0) } ?? ""
        let detail = PQresultErrorField(result, diagMessageDetail).map { String(cString: $0) }
        var metadata: Logger.Metadata = ["postgres.severity": "\(severity)"]
        if let detail { metadata["postgres.detail"] = "\(detail)" }
        if severity == "WARNING" {
            log.logger.warning("PostgreSQL: \(message)", metadata: metadata)
        } else {
            log.logger.debug("PostgreSQL: \(message)", metadata: metadata)
        }
    }

    /// The open handle, reconnecting first if the session was lost outside a transaction.
    private func live() throws(PostgresError) -> OpaquePointer {
        if lostInTransaction {
            throw PostgresError(
                code: .transactionAborted,
                message: "the connection was lost inside a transaction; end the transaction first")
        }
        if let handle, PQstatus(handle) == CONNECTION_OK { return handle }
        let wasOpen = handle != nil
        if let handle { PQfinish(handle) }
        handle = nil
        let fresh = try establish()
        handle = fresh
        if wasOpen {
            reconnects += 1
            configuration.onReconnect?()
            logger.notice("reconnected to PostgreSQL", metadata: ["postgres.reconnects": "\(reconnects)"])
        }
        return fresh
    }

    /// libpq reports connection failures as text; recover the SQLSTATE for the common ones so
    /// that callers can tell a wrong password (permanent) from a full server (transient).
    static func sqlState(ofConnectionFailure message: String) -> SQLState? {
        if message.contains("password authentication failed") { return .invalidPassword }
        if message.contains("too many clients") || message.contains("remaining connection slots") {
            return .tooManyConnections
        }
        if message.contains("the database system is starting up")
            || message.contains("the database system is shutting down")
            || message.contains("the database system is in recovery mode")
        {
            return .cannotConnectNow
        }
        if message.contains("does not exist") { return "3D000" }
        if message.contains("no pg_hba.conf entry") { return .invalidAuthorization }
        return nil
    }

    static func summarize(_ message: String) -> String {
        message.split(separator: "\n").map { $0.trimmingSpaces }.filter { !$0.isEmpty }.joined(separator: "; ")
    }

    // MARK: Statements

    /// Runs one statement, its interpolated values bound as parameters (see ``PostgresQuery``),
    /// and returns its rows. The statement is prepared once per connection and reused.
    @discardableResult
    public func query(_ query: PostgresQuery) throws(PostgresError) -> PostgresRows {
        try self.query(query.sql, parameters: query.bindings)
    }

    /// Runs a statement for its effect and returns the number of rows it affected.
    @discardableResult
    public func execute(_ query: PostgresQuery) throws(PostgresError) -> Int {
        try self.query(query).affectedRows
    }

    /// Runs one statement with numbered parameters (`$1`, `$2`…) and returns its rows: the
    /// primitive under ``query(_:)``, which is what code should use, since there a parameter
    /// stands where it is used. `parameters` are sent separately in text format: input is
    /// never part of the SQL text.
    @discardableResult
    public func query(_ sql: String, parameters: [any PostgresEncodable]) throws(PostgresError) -> PostgresRows {
        try perform(sql, texts: try Self.texts(of: parameters), prepare: true)
    }

    private func perform(_ sql: String, texts: [String?], prepare: Bool) throws(PostgresError) -> PostgresRows {
        let handle = try live()
        let name = prepare ? try preparedName(sql, parameters: texts.count, handle) : nil
        if !ahead.isEmpty { return try pipeline(handle, last: Pending(sql: sql, texts: texts, name: name)) }
        roundTrips += 1
        let result = deadline.run(timeout: configuration.callTimeout) {
            Self.withCStrings(texts) { pointers in
                if let name {
                    return PQexecPrepared(handle, name, Int32(pointers.count), pointers, nil, nil, 0)
                }
                return PQexecParams(handle, sql, Int32(pointers.count), nil, pointers, nil, nil, 0)
            }
        }
        defer { PQclear(result) }
        return try rows(of: result, handle)
    }

    // MARK: Sending ahead

    /// Sends `query` ahead of the next statement whose result is read, in the same round trip
    /// (libpq's pipeline mode): for statements whose result nobody reads, such as `BEGIN`, a
    /// savepoint or a lock. Its error, if any, is thrown by that next statement, which then
    /// does not run. ``withTransaction(_:)`` and ``withSavepoint(_:)`` send theirs this way,
    /// so a transaction of three statements costs three round trips, not five.
    public func sendAhead(_ query: PostgresQuery) throws(PostgresError) {
        ahead.append(try pending(query))
    }

    /// A statement sent ahead whose rows are kept for ``rows(of:)``.
    public struct AheadRows: Sendable {
        let id: Int
    }

    /// Sends `query` ahead like ``sendAhead(_:)``, but keeps its rows: ``rows(of:)`` returns
    /// them once the statement has run, with the next statement whose result is read (a
    /// transaction's `COMMIT` too), or sends what waits ahead if it has not run yet. A statement
    /// whose answer is needed only later thus shares a round trip with the statements after it.
    public func sendAhead(keepingRows query: PostgresQuery) throws(PostgresError) -> AheadRows {
        keptCount += 1
        var statement = try pending(query)
        statement.keep = keptCount
        ahead.append(statement)
        return AheadRows(id: keptCount)
    }

    /// The rows of a statement sent with ``sendAhead(keepingRows:)``, once: its error if it
    /// failed, or ``PostgresError/Code/transactionAborted`` if it never ran (an earlier
    /// statement of its round trip failed, or its transaction ended first).
    public func rows(of statement: AheadRows) throws(PostgresError) -> PostgresRows {
        if kept[statement.id] == nil, ahead.contains(where: { $0.keep == statement.id }) {
            try flushAhead(try live())
        }
        guard let result = kept.removeValue(forKey: statement.id) else {
            throw PostgresError(
                code: .transactionAborted, message: "a statement sent ahead did not run: an earlier one failed first")
        }
        return try result.get()
    }

    /// A statement on its way: its text, its parameters, its prepared name if it has one, and
    /// where its rows are kept if they are.
    private struct Pending {
        let sql: String
        let texts: [String?]
        var name: String? = nil
        var keep: Int? = nil
    }

    /// `query` as a statement to send ahead, prepared (once per connection) like the
    /// statements whose results are read, so that it is not planned again every time.
    private func pending(_ query: PostgresQuery) throws(PostgresError) -> Pending {
        let texts = try Self.texts(of: query.bindings)
        let name = try preparedName(query.sql, parameters: texts.count, try live())
        return Pending(sql: query.sql, texts: texts, name: name)
    }

    /// The name `sql` is prepared under on this session, preparing it first if it is not
    /// (a round trip of its own, once); nil once the session keeps as many as it may.
    private func preparedName(_ sql: String, parameters: Int, _ handle: OpaquePointer) throws(PostgresError) -> String? {
        if let name = prepared[sql] { return name }
        guard prepared.count < Self.maxPreparedStatements else { return nil }
        let candidate = "s\(prepared.count + 1)"
        roundTrips += 1
        let result = PQprepare(handle, candidate, sql, Int32(parameters), nil)
        defer { PQclear(result) }
        guard let result, PQresultStatus(result) == PGRES_COMMAND_OK else {
            throw failure(result, handle)
        }
        prepared[sql] = candidate
        return candidate
    }

    /// Sends what waits ahead on its own, if anything does (before a call that cannot be
    /// pipelined: a script, COPY, LISTEN).
    private func flushAhead(_ handle: OpaquePointer) throws(PostgresError) {
        guard !ahead.isEmpty else { return }
        _ = try pipeline(handle, last: ahead.removeLast())
    }

    /// Runs the statements sent ahead and then `last` in one round trip, and returns `last`'s
    /// rows; throws the first error (the statements after it do not run).
    private func pipeline(_ handle: OpaquePointer, last: Pending) throws(PostgresError) -> PostgresRows {
        let statements = ahead + [last]
        ahead = []
        roundTrips += 1
        let outcome: Result<PostgresRows, PostgresError> = deadline.run(timeout: configuration.callTimeout) {
            guard PQenterPipelineMode(handle) == 1 else { return .failure(failure(nil, handle)) }
            var sent = true
            for statement in statements {
                sent = sent && Self.withCStrings(statement.texts) { pointers in
                    if let name = statement.name {
                        return PQsendQueryPrepared(handle, name, Int32(pointers.count), pointers, nil, nil, 0) == 1
                    }
                    return PQsendQueryParams(handle, statement.sql, Int32(pointers.count), nil, pointers, nil, nil, 0) == 1
                }
            }
            sent = sent && PQpipelineSync(handle) == 1
            let outcome = sent ? readPipeline(handle, statements: statements) : .failure(failure(nil, handle))
            if PQexitPipelineMode(handle) != 1 {
                // Results left unread on a live session: it cannot be trusted; start afresh.
                let error = failure(nil, handle)
                abandon(handle)
                return .failure(error)
            }
            return outcome
        }
        return try outcome.get()
    }

    /// Reads the results of the pipelined `statements` and the sync point; keeps the rows of
    /// those sent with ``sendAhead(keepingRows:)``.
    private func readPipeline(_ handle: OpaquePointer, statements: [Pending]) -> Result<PostgresRows, PostgresError> {
        var firstError: PostgresError?
        var lastRows = PostgresRows(columns: [], rows: [], affectedRows: 0)
        for (index, statement) in statements.enumerated() {
            while let result = PQgetResult(handle) {
                defer { PQclear(result) }
                let status = PQresultStatus(result)
                if status == PGRES_PIPELINE_ABORTED { continue }
                guard firstError == nil else { continue }
                do throws(PostgresError) {
                    let rows = try rows(of: result, handle)
                    if index == statements.count - 1 { lastRows = rows }
                    if let keep = statement.keep { kept[keep] = .success(rows) }
                } catch {
                    firstError = error
                    if let keep = statement.keep { kept[keep] = .failure(error) }
                }
            }
            if PQstatus(handle) != CONNECTION_OK { break }
        }
        // The sync point ends the pipeline.
        while PQstatus(handle) == CONNECTION_OK, let result = PQgetResult(handle) {
            let status = PQresultStatus(result)
            PQclear(result)
            if status == PGRES_PIPELINE_SYNC { break }
        }
        if let firstError { return .failure(firstError) }
        if PQstatus(handle) != CONNECTION_OK { return .failure(failure(nil, handle)) }
        return .success(lastRows)
    }

    /// Drops a session left in an unknown state; the next call reconnects (or, inside a
    /// transaction, fails until the transaction ends).
    private func abandon(_ handle: OpaquePointer) {
        if transactionDepth > 0 { lostInTransaction = true }
        PQfinish(handle)
        self.handle = nil
    }

    /// Runs SQL text without parameters, possibly several statements (migrations, `BEGIN`).
    ///
    /// Never pass input here: there is no way to bind it. Use ``query(_:_:)``.
    public func executeScript(_ sql: String) throws(PostgresError) {
        let handle = try live()
        try flushAhead(handle)
        roundTrips += 1
        let result = deadline.run(timeout: configuration.callTimeout) { PQexec(handle, sql) }
        defer { PQclear(result) }
        _ = try rows(of: result, handle)
    }

    private func rows(of result: OpaquePointer?, _ handle: OpaquePointer) throws(PostgresError) -> PostgresRows {
        guard let result else { throw failure(nil, handle) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else { throw failure(result, handle) }
        let fieldCount = PQnfields(result)
        let rowCount = PQntuples(result)
        var columns: [String] = []
        columns.reserveCapacity(Int(fieldCount))
        for field in 0..<fieldCount { columns.append(String(cString: PQfname(result, field))) }
        let index = ColumnIndex(columns)
        var rows: [PostgresRow] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var values: [String?] = []
            values.reserveCapacity(Int(fieldCount))
            for field in 0..<fieldCount {
                if PQgetisnull(result, row, field) == 1 {
                    values.append(nil)
                } else {
                    values.append(String(cString: PQgetvalue(result, row, field)))
                }
            }
            rows.append(PostgresRow(index: index, values: values))
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? Int(rowCount)
        return PostgresRows(columns: columns, rows: rows, affectedRows: affected)
    }

    /// The error a failed result (or a lost connection) stands for.
    private func failure(_ result: OpaquePointer?, _ handle: OpaquePointer) -> PostgresError {
        func field(_ code: Int32) -> String? {
            guard let result, let value = PQresultErrorField(result, code) else { return nil }
            return String(cString: value)
        }
        let lost = PQstatus(handle) != CONNECTION_OK
        if lost, transactionDepth > 0 { lostInTransaction = true }
        let sqlState = field(Self.diagSQLState).map { SQLState($0) }
        let message =
            field(Self.diagMessagePrimary)
            ?? Self.summarize(configuration.scrub(String(cString: PQerrorMessage(handle))))
        let code: PostgresError.Code = lost ? .connection : (sqlState == nil ? .protocolViolation : .server)
        return PostgresError(
            code: code, sqlState: sqlState, message: message.isEmpty ? "connection lost" : message,
            detail: field(Self.diagMessageDetail), hint: field(Self.diagMessageHint),
            constraint: field(Self.diagConstraintName), schema: field(Self.diagSchemaName),
            table: field(Self.diagTableName), column: field(Self.diagColumnName))
    }

    static let diagSQLState = Int32(UInt8(ascii: "C"))
    static let diagSeverity = Int32(UInt8(ascii: "V"))
    static let diagMessagePrimary = Int32(UInt8(ascii: "M"))
    static let diagMessageDetail = Int32(UInt8(ascii: "D"))
    static let diagMessageHint = Int32(UInt8(ascii: "H"))
    static let diagConstraintName = Int32(UInt8(ascii: "n"))
    static let diagSchemaName = Int32(UInt8(ascii: "s"))
    static let diagTableName = Int32(UInt8(ascii: "t"))
    static let diagColumnName = Int32(UInt8(ascii: "c"))

    static func texts(of parameters: [any PostgresEncodable]) throws(PostgresError) -> [String?] {
        var texts: [String?] = []
        texts.reserveCapacity(parameters.count)
        for (i, parameter) in parameters.enumerated() {
            let text = parameter.postgresText
            if var bytes = text, bytes.withUTF8({ $0.firstIndexOfNUL != nil }) {
                throw PostgresError(
                    code: .invalidParameter, message: "parameter $\(i + 1) contains a NUL character")
            }
            texts.append(text)
        }
        return texts
    }

    /// Calls `body` with the texts as C strings, all copied into one buffer (one allocation,
    /// not one per parameter).
    static func withCStrings<R>(_ texts: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        var size = 0
        for text in texts { size += (text?.utf8.count ?? 0) + 1 }
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: max(size, 1)) { buffer in
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(texts.count)
            var offset = 0
            for text in texts {
                guard var text else {
                    pointers.append(nil)
                    continue
                }
                pointers.append(buffer.baseAddress.map { UnsafePointer($0 + offset) })
                text.withUTF8 { bytes in
                    bytes.withMemoryRebound(to: CChar.self) { chars in
                        _ = UnsafeMutableBufferPointer(rebasing: buffer[offset...]).initialize(fromContentsOf: chars)
                    }
                    offset += bytes.count
                }
                buffer[offset] = 0
                offset += 1
            }
            return body(pointers)
        }
    }

    // MARK: Transactions

    /// Runs `body` inside a transaction: committed when it returns, rolled back when it throws.
    ///
    /// Called inside another transaction it becomes a savepoint (see ``withSavepoint(_:)``).
    public func withTransaction<T>(_ body: (isolated PostgresConnection) async throws -> T) async throws -> T {
        if transactionDepth > 0 { return try await withSavepoint(body) }
        _ = try live()
        ahead.append(Pending(sql: "BEGIN", texts: []))
        transactionDepth = 1
        let value: T
        do {
            value = try await body(self)
        } catch {
            endTransaction(rollback: true)
            throw error
        }
        do {
            _ = try perform("COMMIT", texts: [], prepare: false)
        } catch {
            endTransaction(rollback: true)
            throw error
        }
        transactionDepth = 0
        return value
    }

    private func endTransaction(rollback: Bool) {
        transactionDepth = 0
        ahead = []
        kept = [:]
        if lostInTransaction {
            lostInTransaction = false
            return
        }
        if rollback, let handle, PQstatus(handle) == CONNECTION_OK {
            PQclear(PQexec(handle, "ROLLBACK"))
        }
    }

    /// Runs `body` inside a savepoint of the current transaction: released when it returns,
    /// rolled back to when it throws, so one failure leaves the rest of the transaction intact.
    public func withSavepoint<T>(_ body: (isolated PostgresConnection) async throws -> T) async throws -> T {
        guard transactionDepth > 0 else {
            throw PostgresError(code: .protocolViolation, message: "a savepoint needs a transaction")
        }
        savepointCounter += 1
        let name = "sp\(savepointCounter)"
        let mark = ahead.count
        ahead.append(Pending(sql: "SAVEPOINT \(name)", texts: []))
        transactionDepth += 1
        defer { transactionDepth -= 1 }
        do {
            let value = try await body(self)
            ahead.append(Pending(sql: "RELEASE SAVEPOINT \(name)", texts: []))
            return value
        } catch {
            if ahead.count > mark, ahead[mark].sql == "SAVEPOINT \(name)" {
                // Never sent: nothing to roll back, and the body's own statements go with it.
                ahead.removeSubrange(mark...)
            } else {
                // Sent: whatever waits ahead now is the body's, and goes with the rollback.
                ahead = []
                if !lostInTransaction, let handle, PQstatus(handle) == CONNECTION_OK {
                    PQclear(PQexec(handle, "ROLLBACK TO SAVEPOINT \(name); RELEASE SAVEPOINT \(name)"))
                }
            }
            throw error
        }
    }

    /// True inside ``withTransaction(_:)``.
    public var inTransaction: Bool { transactionDepth > 0 }

    // MARK: LISTEN / NOTIFY

    static func listenStatement(_ handle: OpaquePointer, _ channel: String) -> String? {
        guard let quoted = PQescapeIdentifier(handle, channel, channel.utf8.count) else { return nil }
        defer { PQfreemem(quoted) }
        return "LISTEN " + String(cString: quoted)
    }

    /// Subscribes this session to a notification channel; kept across reconnects.
    public func listen(_ channel: String) throws(PostgresError) {
        let handle = try live()
        guard let statement = Self.listenStatement(handle, channel) else {
            throw PostgresError(code: .invalidParameter, message: "invalid channel name")
        }
        try executeScript(statement)
        listening.insert(channel)
    }

    /// Waits until a notification arrives, ``wakeUp()`` is called, or `timeout` passes, and
    /// returns the notifications received (possibly none).
    ///
    /// The wait is a `poll(2)` on the session's socket and a wake-up pipe, on this
    /// connection's own thread: no busy polling, and no cooperative thread is held.
    public func waitForNotifications(timeout: Duration) throws(PostgresError) -> [PostgresNotification] {
        let handle = try live()
        var received = try consume(handle)
        if !received.isEmpty { return received }
        let milliseconds = max(0, Int32(clamping: timeout.components.seconds * 1000
            + timeout.components.attoseconds / 1_000_000_000_000_000))
        var fds = [
            pollfd(fd: PQsocket(handle), events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        _ = poll(&fds, 2, milliseconds)
        if fds[1].revents != 0 {
            var buffer = [UInt8](repeating: 0, count: 64)
            while read(wakeRead, &buffer, buffer.count) > 0 {}
        }
        received = try consume(handle)
        return received
    }

    /// Ends a ``waitForNotifications(timeout:)`` in progress (or the next one) at once.
    public nonisolated func wakeUp() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    private func consume(_ handle: OpaquePointer) throws(PostgresError) -> [PostgresNotification] {
        guard PQconsumeInput(handle) == 1 else { throw failure(nil, handle) }
        var received: [PostgresNotification] = []
        while let notify = PQnotifies(handle) {
            received.append(
                PostgresNotification(
                    channel: String(cString: notify.pointee.relname),
                    payload: String(cString: notify.pointee.extra),
                    backendPID: notify.pointee.be_pid))
            PQfreemem(notify)
        }
        return received
    }

    // MARK: COPY

    /// Writes rows with `COPY … FROM STDIN` (text format) and returns how many were copied.
    ///
    /// `sql` is the fixed COPY statement (`COPY queue.jobs (payload) FROM STDIN`); the data
    /// travels separately and is escaped here, so no value can break out of its column.
    @discardableResult
    public func copyFrom(_ sql: String, rows: some Sequence<[String?]>) throws(PostgresError) -> Int {
        let handle = try live()
        try flushAhead(handle)
        let start = PQexec(handle, sql)
        let status = start.map { PQresultStatus($0) }
        guard let start, status == PGRES_COPY_IN else {
            defer { PQclear(start) }
            throw failure(start, handle)
        }
        PQclear(start)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(1 << 16)
        var sendFailed = false
        func flush() {
            guard !buffer.isEmpty, !sendFailed else { return }
            let sent = buffer.withUnsafeBufferPointer { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    PQputCopyData(handle, chars.baseAddress, Int32(chars.count))
                }
            }
            if sent != 1 { sendFailed = true }
            buffer.removeAll(keepingCapacity: true)
        }
        for row in rows {
            for (i, value) in row.enumerated() {
                if i > 0 { buffer.append(0x09) }
                guard var value else {
                    buffer.append(contentsOf: [0x5C, 0x4E])  // \N
                    continue
                }
                value.withUTF8 { bytes in
                    // Most values hold nothing COPY must escape: copy them whole.
                    guard bytes.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else {
                        buffer.append(contentsOf: bytes)
                        return
                    }
                    for byte in bytes {
                        switch byte {
                        case 0x5C: buffer.append(contentsOf: [0x5C, 0x5C])
                        case 0x09: buffer.append(contentsOf: [0x5C, 0x74])
                        case 0x0A: buffer.append(contentsOf: [0x5C, 0x6E])
                        case 0x0D: buffer.append(contentsOf: [0x5C, 0x72])
                        default: buffer.append(byte)
                        }
                    }
                }
            }
            buffer.append(0x0A)
            if buffer.count >= 1 << 16 { flush() }
        }
        flush()
        _ = PQputCopyEnd(handle, sendFailed ? "client failed to send data" : nil)
        var copied = 0
        var firstError: PostgresError?
        while let result = PQgetResult(handle) {
            if PQresultStatus(result) == PGRES_COMMAND_OK {
                copied = Int(String(cString: PQcmdTuples(result))) ?? 0
            } else if firstError == nil {
                firstError = failure(result, handle)
            }
            PQclear(result)
        }
        if let firstError { throw firstError }
        if sendFailed { throw failure(nil, handle) }
        return copied
    }
}

/// A notification received on a channel this session listens to.
public struct PostgresNotification: Sendable, Hashable {
    /// The channel it was sent on.
    public var channel: String
    /// The payload given to `NOTIFY` / `pg_notify`.
    public var payload: String
    /// The process id of the sending session.
    public var backendPID: Int32
}

extension StringProtocol {
    var trimmingSpaces: String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}

extension UnsafeBufferPointer<UInt8> {
    /// Where the first NUL byte is (`memchr`), if any.
    var firstIndexOfNUL: Int? {
        guard let base = baseAddress, let found = memchr(base, 0, count) else { return nil }
        return base.distance(to: found.assumingMemoryBound(to: UInt8.self))
    }
}
