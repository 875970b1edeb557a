/// A PostgreSQL error code (SQLSTATE): five characters, the first two naming its class.
///
/// An open set, as in postgres-nio: compare with the constants below or with a literal
/// (`error.sqlState == "23505"`).
public struct SQLState: Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The five-character code.
    public let code: String

    public init(_ code: String) { self.code = code }
    public init(stringLiteral value: String) { self.code = value }

    /// The two-character class (`"08"` for connection exceptions, `"23"` for integrity violations…).
    public var errorClass: Substring { code.prefix(2) }

    public var description: String { code }

    public static let uniqueViolation: SQLState = "23505"
    public static let foreignKeyViolation: SQLState = "23503"
    public static let checkViolation: SQLState = "23514"
    public static let serializationFailure: SQLState = "40001"
    public static let deadlockDetected: SQLState = "40P01"
    public static let lockNotAvailable: SQLState = "55P03"
    public static let queryCanceled: SQLState = "57014"
    public static let adminShutdown: SQLState = "57P01"
    public static let crashShutdown: SQLState = "57P02"
    public static let cannotConnectNow: SQLState = "57P03"
    public static let invalidAuthorization: SQLState = "28000"
    public static let invalidPassword: SQLState = "28P01"
    public static let tooManyConnections: SQLState = "53300"
    public static let insufficientPrivilege: SQLState = "42501"

    /// True for the errors worth a retry of the whole transaction: a lost connection (class
    /// 08), insufficient resources (class 53), serialization failures and deadlocks, lock and
    /// statement timeouts, and a server that is shutting down, crashed or starting up.
    public var isTransient: Bool {
        switch errorClass {
        case "08", "53": return true
        default: break
        }
        switch self {
        case .serializationFailure, .deadlockDetected, .lockNotAvailable, .queryCanceled, .adminShutdown,
            .crashShutdown, .cannotConnectNow:
            return true
        default:
            return false
        }
    }
}

/// An error from the PostgreSQL layer: what failed, and everything the server said about it.
///
/// `description` names the code, SQLSTATE and the server's primary message only. It never
/// contains the connection string, and leaves out `detail`, where PostgreSQL may quote row
/// values (customer data) that do not belong in a log line.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; an open set of constants.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let raw: String
        /// The connection could not be opened, or was lost.
        public static let connection = Code(raw: "connection")
        /// The server rejected the statement; see ``PostgresError/sqlState``.
        public static let server = Code(raw: "server")
        /// A value could not be decoded into the Swift type asked for.
        public static let decoding = Code(raw: "decoding")
        /// A parameter cannot be sent (for example a string holding a NUL character).
        public static let invalidParameter = Code(raw: "invalid_parameter")
        /// The connection string is malformed.
        public static let configuration = Code(raw: "configuration")
        /// The server answered something this layer did not expect.
        public static let protocolViolation = Code(raw: "protocol")
        /// The connection was used after a failure inside a transaction, before the transaction ended.
        public static let transactionAborted = Code(raw: "transaction_aborted")
        /// No connection of the pool became free in time.
        public static let poolTimeout = Code(raw: "pool_timeout")
        /// The pool was shut down.
        public static let poolClosed = Code(raw: "pool_closed")
        public var description: String { raw }
    }

    /// What kind of failure this is.
    public var code: Code
    /// The SQLSTATE the server sent, if any.
    public var sqlState: SQLState?
    /// The primary message (from the server, or libpq for connection failures).
    public var message: String
    /// The server's detail line, which may quote row values.
    public var detail: String?
    /// The server's hint, if any.
    public var hint: String?
    /// The constraint that was violated, if any.
    public var constraint: String?
    /// The schema, table and column the error concerns, where the server names them.
    public var schema: String?
    public var table: String?
    public var column: String?

    public init(
        code: Code, sqlState: SQLState? = nil, message: String, detail: String? = nil, hint: String? = nil,
        constraint: String? = nil, schema: String? = nil, table: String? = nil, column: String? = nil
    ) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.detail = detail
        self.hint = hint
        self.constraint = constraint
        self.schema = schema
        self.table = table
        self.column = column
    }

    /// True when running the same work again, later, may succeed: connection failures, pool
    /// time-outs and the transient SQLSTATEs of ``SQLState/isTransient``.
    public var isTransient: Bool {
        switch code {
        case .connection, .poolTimeout: return true
        case .server: return sqlState?.isTransient ?? false
        default: return false
        }
    }

    public var description: String {
        var text = "PostgresError(\(code)"
        if let sqlState { text += ", sqlstate \(sqlState)" }
        if let constraint { text += ", constraint \(constraint)" }
        text += "): \(message)"
        return text
    }
}
