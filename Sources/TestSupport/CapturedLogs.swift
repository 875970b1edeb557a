import Logging
import Synchronization

/// A log handler that keeps every record in memory, for tests that check what was logged.
///
/// Build a `Logger` with ``logger(level:)`` and pass it to the code under test; no global
/// bootstrap is needed.
public final class CapturedLogs: Sendable {
    /// One log record.
    public struct Record: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: [String: String]
    }

    private let records = Mutex<[Record]>([])

    public init() {}

    /// A logger that writes here, at `level` and above.
    public func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "captured") { _ in Handler(sink: self) }
        logger.logLevel = level
        return logger
    }

    /// Every record so far.
    public var all: [Record] { records.withLock { $0 } }

    /// The records whose message contains `text`.
    public func matching(_ text: String) -> [Record] { all.filter { $0.message.contains(text) } }

    fileprivate func append(_ record: Record) { records.withLock { $0.append(record) } }

    private struct Handler: LogHandler {
        let sink: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = metadata
            if let extra = event.metadata { merged.merge(extra) { _, new in new } }
            sink.append(Record(level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}
