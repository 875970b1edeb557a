import CLibPQ

/// Where and how to connect: a libpq connection string, parsed and checked once.
///
/// Both forms libpq accepts work, a URI (`postgresql://user@host:5432/db?sslmode=verify-full`)
/// and key=value pairs (`host=/run/postgresql dbname=crm`), with every libpq option passed
/// through untouched. The password is kept only to connect: ``description`` and every error
/// leave it out.
public struct PostgresConfiguration: Sendable, CustomStringConvertible {
    /// The options that were set, by libpq keyword (`host`, `port`, `dbname`, `sslmode`…).
    public private(set) var options: [String: String]

    /// Server settings every session of this configuration applies right after connecting
    /// (`statement_timeout`, `tcp_keepalives_idle`…), by name, in order. They are sent as
    /// parameters of `set_config`, never spliced into SQL.
    public private(set) var sessionSettings: [(name: String, value: String)] = []

    /// How long one call may wait for the server before this side asks the server to cancel
    /// it (a cancel request, as `pg_cancel_backend` would). Nil: no limit. See ``CallDeadline``.
    public var callTimeout: Duration?

    /// Called each time a session of this configuration that was lost reconnects (for a
    /// reconnect counter; it must not block).
    public var onReconnect: (@Sendable () -> Void)?

    /// Parses a libpq connection string; throws ``PostgresError/Code/configuration`` when
    /// libpq rejects it (the message never repeats the string).
    public init(_ connectionString: String) throws(PostgresError) {
        var errorMessage: UnsafeMutablePointer<CChar>? = nil
        guard let parsed = PQconninfoParse(connectionString, &errorMessage) else {
            let reason = errorMessage.map { String(cString: $0) } ?? "out of memory"
            if let errorMessage { PQfreemem(errorMessage) }
            throw PostgresError(
                code: .configuration,
                message: "invalid database URL: \(Self.firstLine(reason))"
            )
        }
        defer { PQconninfoFree(parsed) }
        var options: [String: String] = [:]
        var option = parsed
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val {
                options[String(cString: keyword)] = String(cString: value)
            }
            option += 1
        }
        self.options = options
    }

    /// The same configuration with one option changed (nil removes it).
    public func with(_ keyword: String, _ value: String?) -> PostgresConfiguration {
        var copy = self
        copy.options[keyword] = value
        return copy
    }

    /// The same configuration with a server setting applied to every session, unless the
    /// connection string's `options` already sets it (the operator's choice wins).
    public func with(setting name: String, _ value: String) -> PostgresConfiguration {
        if let given = options["options"], given.contains(name) { return self }
        var copy = self
        copy.sessionSettings.removeAll { $0.name == name }
        copy.sessionSettings.append((name, value))
        return copy
    }

    /// The same configuration with a libpq option set, unless the connection string set it already.
    public func withDefault(_ keyword: String, _ value: String) -> PostgresConfiguration {
        options[keyword] == nil ? with(keyword, value) : self
    }

    /// The same configuration, bounded so that no session outlives a vanished peer for long
    /// and no statement or open transaction waits forever (see ``PostgresLiveness``).
    ///
    /// Client side, libpq's TCP keepalives and `tcp_user_timeout`; server side, the same for
    /// the session's socket, `statement_timeout` and `idle_in_transaction_session_timeout`.
    /// Whatever the connection string already sets is kept.
    public func with(liveness: PostgresLiveness) -> PostgresConfiguration {
        let dead = liveness.deadPeerTimeout
        let idle = max(1, dead.wholeSeconds / 3)
        let interval = max(1, dead.wholeSeconds / 6)
        let count = 3
        let userTimeout = max(1000, dead.wholeMilliseconds)
        var copy = self
            .withDefault("keepalives", "1")
            .withDefault("keepalives_idle", String(idle))
            .withDefault("keepalives_interval", String(interval))
            .withDefault("keepalives_count", String(count))
            .withDefault("tcp_user_timeout", String(userTimeout))
            .with(setting: "tcp_keepalives_idle", String(idle))
            .with(setting: "tcp_keepalives_interval", String(interval))
            .with(setting: "tcp_keepalives_count", String(count))
            .with(setting: "tcp_user_timeout", String(userTimeout))
        if let statement = liveness.statementTimeout {
            copy = copy.with(setting: "statement_timeout", String(statement.wholeMilliseconds))
            // The server's timeout ends statements first; this ends what it does not cover, a
            // commit waiting for a synchronous standby.
            copy.callTimeout = statement + .seconds(1)
        }
        if let idleInTransaction = liveness.idleInTransactionTimeout {
            copy = copy.with(
                setting: "idle_in_transaction_session_timeout", String(idleInTransaction.wholeMilliseconds))
        }
        return copy
    }

    /// The same configuration for another database on the same server.
    public func with(database: String) -> PostgresConfiguration { with("dbname", database) }

    /// The database name, when one is set.
    public var database: String? { options["dbname"] }

    /// The options as a key=value connection string for libpq, values quoted.
    public var connectionString: String {
        options.keys.sorted().map { key in "\(key)=\(Self.quote(options[key] ?? ""))" }.joined(separator: " ")
    }

    /// Host, port, database and user, for logs: never the password.
    public var description: String {
        let shown = ["host", "hostaddr", "port", "dbname", "user", "sslmode", "application_name"]
        return shown.compactMap { key in options[key].map { "\(key)=\($0)" } }.joined(separator: " ")
    }

    /// The password, for scrubbing it out of messages.
    var password: String? { options["password"] }

    /// Removes the password from a message, should libpq ever repeat it.
    func scrub(_ message: String) -> String {
        guard let password, !password.isEmpty else { return message }
        return message.replacingAll(password, with: "********")
    }

    static func quote(_ value: String) -> String {
        var out = "'"
        for character in value {
            if character == "'" || character == "\\" { out.append("\\") }
            out.append(character)
        }
        out.append("'")
        return out
    }

    static func firstLine(_ message: String) -> String {
        let trimmed = message.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? message
        return trimmed
    }
}

extension String {
    /// Every occurrence of `target` replaced, without Foundation.
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}

/// How long a session may wait on a peer, a statement or an open transaction before it is
/// given up, on both ends of the connection.
///
/// A worker host that vanishes without closing its sockets (power loss, a frozen VM, a dropped
/// route) would otherwise keep its session, and the row locks of the batch it held, until the
/// server's default keepalives notice, which takes hours. With these bounds the server drops
/// such a session within about `deadPeerTimeout` (or `idleInTransactionTimeout` when it was
/// between statements), and the client's calls fail within about `deadPeerTimeout` instead of
/// blocking forever.
public struct PostgresLiveness: Sendable, Hashable {
    /// How long an unanswered peer is tolerated: TCP keepalives probe after a third of it and
    /// give up after the rest, and unacknowledged data may wait that long (`tcp_user_timeout`).
    public var deadPeerTimeout: Duration
    /// The server's `statement_timeout` for the session; nil leaves the server's.
    public var statementTimeout: Duration?
    /// The server's `idle_in_transaction_session_timeout` for the session; nil leaves the server's.
    public var idleInTransactionTimeout: Duration?

    public init(deadPeerTimeout: Duration, statementTimeout: Duration? = nil, idleInTransactionTimeout: Duration? = nil) {
        self.deadPeerTimeout = deadPeerTimeout
        self.statementTimeout = statementTimeout
        self.idleInTransactionTimeout = idleInTransactionTimeout
    }
}

extension Duration {
    /// Whole seconds, rounded down.
    var wholeSeconds: Int64 { components.seconds }
    /// Whole milliseconds, rounded down.
    var wholeMilliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
