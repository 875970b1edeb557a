import Foundation
import JSON
import Postgres
import TextForms

/// An import: one bulk enqueue of a file, recorded in `queue.imports`, whose jobs carry its id
/// and their line in the file (docs/contract.md section 7).
public struct ImportRecord: Sendable, Hashable {
    public var id: UUID
    public var queue: String
    public var kind: String
    public var clientID: UUID?
    public var fileName: String
    /// `ndjson` or `csv`.
    public var format: String
    /// A CSV file's header; empty for NDJSON.
    public var columns: [String]
    public var createdBy: String
    public var createdAt: Date
    public var rowsAccepted: Int
    public var rowsRejected: Int
    /// The import's jobs have ids strictly between these.
    public var afterJobID: Int64
    public var beforeJobID: Int64
}

/// What an import has come to: its jobs by state, its pace, and what failed.
public struct ImportStatus: Sendable {
    public var record: ImportRecord
    public var ready = 0, running = 0, succeeded = 0, failed = 0, cancelled = 0
    /// Jobs of the import finished in the last minute, a second.
    public var jobsPerSecond = 0.0
    /// Failed jobs by error code, most first.
    public var errorCodes: [(code: String, count: Int)] = []
    /// The file's lines of the first failed jobs, in line order.
    public var failedLines: [Int] = []

    public var total: Int { ready + running + succeeded + failed + cancelled }
    public var remaining: Int { ready + running }
    /// Seconds until the ready and running jobs are done at the last minute's pace; nil when
    /// nothing finished in it.
    public var secondsLeft: Double? { jobsPerSecond > 0 ? Double(remaining) / jobsPerSecond : (remaining == 0 ? 0 : nil) }

    public var json: JSONValue {
        [
            "id": .string(UUIDText.string(record.id)), "queue": .string(record.queue), "kind": .string(record.kind),
            "client_id": record.clientID.map { .string(UUIDText.string($0)) } ?? .null,
            "file_name": .string(record.fileName), "format": .string(record.format),
            "created_by": .string(record.createdBy), "created_at": .string(TimestampText.format(record.createdAt)),
            "rows_accepted": .number(JSONNumber(record.rowsAccepted)),
            "rows_rejected": .number(JSONNumber(record.rowsRejected)),
            "jobs": [
                "ready": .number(JSONNumber(ready)), "running": .number(JSONNumber(running)),
                "succeeded": .number(JSONNumber(succeeded)), "failed": .number(JSONNumber(failed)),
                "cancelled": .number(JSONNumber(cancelled)),
            ],
            "jobs_per_second": .number(JSONNumber((jobsPerSecond * 10).rounded() / 10)),
            "seconds_left": secondsLeft.map { .number(JSONNumber($0.rounded())) } ?? .null,
            "errors_by_code": .object(Dictionary(uniqueKeysWithValues: errorCodes.map { ($0.code, .number(JSONNumber($0.count))) })),
            "failed_lines": .array(failedLines.map { .number(JSONNumber($0)) }),
        ]
    }
}

/// A failed job of an import: its line, its payload, and the error stored on it.
public struct ImportFailure: Sendable {
    public var line: Int
    public var payload: JSONValue
    public var error: JSONValue
}

/// Recording imports and reading them back.
public enum Imports {
    /// The start of an import: a bound below the ids its jobs will get (drawn from the jobs'
    /// sequence). Call it in the import's transaction, before its jobs are enqueued.
    public static func begin(on connection: isolated PostgresConnection) throws(PostgresError) -> Int64 {
        try connection.query("SELECT nextval('queue.jobs_id_seq') AS id")[0].decode(Int64.self, "id")
    }

    /// Records an import whose jobs, tagged with `id`, were enqueued since ``begin(on:)``
    /// returned `afterJobID`; run it in the same transaction, after the jobs.
    public static func record(
        _ id: UUID, queue: String, kind: String, clientID: UUID?, fileName: String, format: String, columns: [String],
        rowsAccepted: Int, rowsRejected: Int, afterJobID: Int64, on connection: isolated PostgresConnection
    ) throws(PostgresError) {
        try connection.execute(
            """
            INSERT INTO queue.imports (id, queue, kind, client_id, file_name, format, columns, rows_accepted, rows_rejected,
                                       created_by, after_job_id, before_job_id)
            VALUES (\(id), \(queue), \(kind), \(clientID), \(fileName), \(format), \(columns), \(rowsAccepted),
                    \(rowsRejected), \(Self.createdBy), \(afterJobID), nextval('queue.jobs_id_seq'))
            """)
    }

    /// Who ran the import: the operating system's user and host, and the database role.
    static var createdBy: String {
        let user = ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.userName
        return "\(user)@\(ProcessInfo.processInfo.hostName)"
    }

    /// The import, or nil when there is none with that id.
    public static func record(_ id: UUID, on connection: isolated PostgresConnection) throws(PostgresError) -> ImportRecord? {
        let rows = try connection.query(
            """
            SELECT id, queue, kind, client_id, file_name, format, coalesce(array_to_json(columns)::jsonb, '[]'::jsonb) AS columns,
                   created_by || ' (' || current_user || ')' AS created_by, created_at, rows_accepted, rows_rejected,
                   after_job_id, before_job_id
            FROM queue.imports WHERE id = \(id)
            """)
        guard let row = rows.first else { return nil }
        let columns = try row.decode(JSONValue.self, "columns").arrayValue?.compactMap(\.stringValue) ?? []
        return ImportRecord(
            id: try row.decode(UUID.self, "id"), queue: try row.decode(String.self, "queue"),
            kind: try row.decode(String.self, "kind"), clientID: try row.decode(UUID?.self, "client_id"),
            fileName: try row.decode(String.self, "file_name"), format: try row.decode(String.self, "format"),
            columns: columns, createdBy: try row.decode(String.self, "created_by"),
            createdAt: try row.decode(Date.self, "created_at"), rowsAccepted: try row.decode(Int.self, "rows_accepted"),
            rowsRejected: try row.decode(Int.self, "rows_rejected"), afterJobID: try row.decode(Int64.self, "after_job_id"),
            beforeJobID: try row.decode(Int64.self, "before_job_id"))
    }

    /// The import's progress: counts by state, the last minute's pace, errors by code and the
    /// first `lines` failed lines. Nil when there is no such import.
    public static func status(_ id: UUID, lines: Int = 20, on connection: isolated PostgresConnection)
        throws(PostgresError) -> ImportStatus?
    {
        guard let record = try record(id, on: connection) else { return nil }
        var status = ImportStatus(record: record)
        for row in try connection.query(
            """
            SELECT state, count(*)::bigint AS n FROM queue.jobs
            WHERE id > \(record.afterJobID) AND id < \(record.beforeJobID) AND import_id = \(id) GROUP BY state
            """)
        {
            let n = try row.decode(Int.self, "n")
            switch try row.decode(String.self, "state") {
            case "ready": status.ready = n
            case "running": status.running = n
            case "succeeded": status.succeeded = n
            case "failed": status.failed = n
            default: status.cancelled += n
            }
        }
        let recent = try connection.query(
            """
            SELECT count(*)::bigint AS n FROM queue.jobs
            WHERE id > \(record.afterJobID) AND id < \(record.beforeJobID) AND import_id = \(id)
              AND state IN ('succeeded', 'failed') AND finished_at > now() - interval '60 seconds'
            """)
        status.jobsPerSecond = Double(try recent[0].decode(Int.self, "n")) / 60
        for row in try connection.query(
            """
            SELECT coalesce(last_error->>'code', 'unknown') AS code, count(*)::bigint AS n FROM queue.jobs
            WHERE id > \(record.afterJobID) AND id < \(record.beforeJobID) AND import_id = \(id) AND state = 'failed'
            GROUP BY 1 ORDER BY 2 DESC, 1
            """)
        {
            status.errorCodes.append((try row.decode(String.self, "code"), try row.decode(Int.self, "n")))
        }
        status.failedLines = try connection.query(
            """
            SELECT import_line FROM queue.jobs
            WHERE id > \(record.afterJobID) AND id < \(record.beforeJobID) AND import_id = \(id) AND state = 'failed'
            ORDER BY id LIMIT \(lines)
            """
        ).map { row throws(PostgresError) in try row.decode(Int.self, "import_line") }
        return status
    }

    /// Calls `body` with the import's failed jobs in line order (the order they were enqueued
    /// in), `page` at a time: memory does not grow with the number of failures.
    public static func failures(
        _ record: ImportRecord, page: Int = 2_000, on connection: isolated PostgresConnection,
        _ body: ([ImportFailure]) throws -> Void
    ) throws {
        var after = record.afterJobID
        while true {
            let rows = try connection.query(
                """
                SELECT id, import_line, payload, coalesce(last_error, '{}'::jsonb) AS error FROM queue.jobs
                WHERE id > \(after) AND id < \(record.beforeJobID) AND import_id = \(record.id) AND state = 'failed'
                ORDER BY id LIMIT \(page)
                """)
            var failures: [ImportFailure] = []
            for row in rows {
                after = try row.decode(Int64.self, "id")
                failures.append(
                    ImportFailure(
                        line: try row.decode(Int.self, "import_line"), payload: try row.decode(JSONValue.self, "payload"),
                        error: try row.decode(JSONValue.self, "error")))
            }
            guard !failures.isEmpty else { return }
            try body(failures)
        }
    }

    /// An error object's `details` as one line for a spreadsheet cell:
    /// `invalid_fields: stageId (no such pipeline stage); missing_fields: contact_phone_number`.
    public static func flatten(details: JSONValue?) -> String {
        guard case .object(let members)? = details else { return "" }
        func item(_ value: JSONValue) -> String {
            switch value {
            case .string(let s): return s
            case .object(let o):
                let name = o["field"]?.stringValue ?? o["key"]?.stringValue
                let reason = o["reason"]?.stringValue
                if let name, let reason { return "\(name) (\(reason))" }
                return value.jsonText
            default: return value.jsonText
            }
        }
        return members.keys.sorted().map { key in
            let value = members[key] ?? .null
            if case .array(let items) = value { return "\(key): " + items.map(item).joined(separator: ", ") }
            return "\(key): \(item(value))"
        }.joined(separator: "; ")
    }
}
