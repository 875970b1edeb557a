import ArgumentParser
import Foundation
import Logging
import Postgres

/// Options every command takes.
public struct GlobalOptions: ParsableArguments {
    public init() {}

    @Option(name: .customLong("database-url"), help: "libpq URI or key=value string (default: $DATABASE_URL).")
    public var databaseURL: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    public var logLevel: String = "info"

    @Option(name: .customLong("log-format"), help: "text or json (one object per line, for log shippers).")
    public var logFormat: String = "text"

    /// Sets up logging and returns the database configuration, or a usage error.
    public func prepare() throws -> PostgresConfiguration {
        guard let format = LogFormat(rawValue: logFormat) else {
            throw CLIError.usage("--log-format must be text or json")
        }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw CLIError.usage("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSetup.bootstrap(format: format, level: level)
        guard let url = databaseURL ?? ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw CLIError.usage("no database: set DATABASE_URL or pass --database-url")
        }
        do {
            return try PostgresConfiguration(url)
        } catch {
            throw CLIError.usage(error.message)
        }
    }
}

/// Parses `30s`, `15m`, `12h`, `7d` or a plain number of seconds.
public func parseDuration(_ text: String) -> Duration? {
    let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, milliseconds) in units where text.hasSuffix(suffix) {
        let number = text.dropLast(suffix.count)
        if suffix == "s", number.hasSuffix("m") { continue }
        guard let value = Double(number), value >= 0, value.isFinite else { return nil }
        return .milliseconds(Int64(value * Double(milliseconds)))
    }
    guard let seconds = Double(text), seconds >= 0, seconds.isFinite else { return nil }
    return .milliseconds(Int64(seconds * 1000))
}
