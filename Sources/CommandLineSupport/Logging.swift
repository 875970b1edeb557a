#if canImport(Glibc)
import Glibc
#endif
import Foundation
import JSON
import Logging

/// How log lines are written.
public enum LogFormat: String, CaseIterable, Sendable {
    case text, json
}

/// One JSON object per line on stderr, for log shippers.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: JSONValue] = [
            "ts": .string(ISO8601DateFormatter().string(from: Date())),
            "level": .string(event.level.rawValue),
            "logger": .string(label),
            "message": .string(event.message.description),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged { object[key] = .string(value.description) }
        let line = JSONValue.object(object).jsonText + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}

public enum LoggingSetup {
    public static func bootstrap(format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }
}
