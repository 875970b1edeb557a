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
