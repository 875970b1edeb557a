/// A statement whose parameters are written where they are used.
///
/// Build one with string interpolation: every interpolated value becomes a bound parameter
/// (`$1`, `$2`… in the order they appear), sent apart from the SQL text, so a value can never
/// change the statement and a parameter can never be off by one:
///
/// ```swift
/// try connection.query("SELECT name FROM crm.contacts WHERE id = \(id) AND client_id = \(client)")
/// ```
///
/// Casts read as in SQL (`\(ids)::uuid[]`). The few pieces of SQL that cannot be parameters
/// (a list of column names the program itself writes) go in with ``StringInterpolation/appendInterpolation(sql:)``,
/// which takes only a `StaticString`: text fixed in the source, never input.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The SQL text, with `$n` placeholders.
    public var sql: String
    /// The values bound to the placeholders, in order.
    public var bindings: [any PostgresEncodable]

    public init(stringLiteral value: String) {
        sql = value
        bindings = []
    }

    public init(stringInterpolation: StringInterpolation) {
        sql = stringInterpolation.sql
        bindings = stringInterpolation.bindings
    }

    /// The SQL text only: the values may be customer data, which stays out of log lines.
    public var description: String { sql }

    /// Collects the SQL text and the values of an interpolated statement.
    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var bindings: [any PostgresEncodable] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
            bindings.reserveCapacity(interpolationCount)
        }

        public mutating func appendLiteral(_ literal: String) {
            sql += literal
        }

        /// A value, bound as the next parameter.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            bindings.append(value)
            sql += "$\(bindings.count)"
        }

        /// An optional value, bound as the next parameter (NULL when nil). Spelled out so that
        /// the compiler knows an optional here is meant, not a debug description.
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            bindings.append(value)
            sql += "$\(bindings.count)"
        }

        /// SQL text fixed in the program (a column list shared by two statements, say); never input.
        public mutating func appendInterpolation(sql text: StaticString) {
            sql += text.description
        }
    }
}
