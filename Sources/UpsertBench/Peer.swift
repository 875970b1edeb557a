import Foundation
import JSON
import Postgres

/// The fastest peer's figures, measured in the same run on the same PostgreSQL: PgQueuer's batch
/// enqueue and its no-op drain, by a program of its own (`scripts/peer-bench`, which installs
/// PgQueuer from PyPI into a virtual environment under `.build/`).
public struct PeerReport: Sendable {
    /// What ran, as the program reports it (for example "PgQueuer 1.6.0, 2 processes, batch 100,
    /// enqueue 5000 a call, empty payloads").
    public var name: String
    public var enqueueRounds: [Double]
    public var drainRounds: [Double]

    public var enqueueJobsPerSecond: Double { Bench.median(enqueueRounds) }
    public var drainJobsPerSecond: Double { Bench.median(drainRounds) }
}

extension Bench {
    /// Runs `command --jobs N --rounds R [--payloads FILE]` with the scratch database in the libpq
    /// environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`), its
    /// progress on our standard error, and reads the summary it prints last: one JSON object with
    /// `name`, `enqueue_rounds` and `drain_rounds` (jobs a second).
    static func runPeer(_ command: String, payloads: String?, database: PostgresConfiguration, options: BenchOptions) throws
        -> PeerReport
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command)
        process.arguments = ["--jobs", String(options.jobs), "--rounds", String(max(1, options.rounds))]
            + (payloads.map { ["--payloads", $0] } ?? [])
        var environment = ProcessInfo.processInfo.environment
        for (option, variable) in [("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("dbname", "PGDATABASE"),
                                   ("password", "PGPASSWORD")] {
            if let value = database.options[option] { environment[variable] = value }
        }
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw BenchError(message: "the peer bench \(command) exited with \(process.terminationStatus): \(text.suffix(500))")
        }
        guard let last = text.split(separator: "\n").last, let summary = try? JSONValue.parse(String(last)),
            let name = summary["name"]?.stringValue,
            let enqueue = summary["enqueue_rounds"]?.arrayValue, let drain = summary["drain_rounds"]?.arrayValue,
            !enqueue.isEmpty, !drain.isEmpty
        else {
            throw BenchError(message: "the peer bench \(command) printed no summary: \(text.suffix(500))")
        }
        func rates(_ values: [JSONValue]) -> [Double] {
            values.compactMap { if case .number(let n) = $0 { return n.doubleValue } else { return nil } }
        }
        return PeerReport(name: name, enqueueRounds: rates(enqueue), drainRounds: rates(drain))
    }
}
