import Foundation
import Postgres

/// What PostgreSQL spends on a measured stretch of work: the WAL it wrote (from
/// `pg_current_wal_lsn()`, the whole server's) and the CPU time of its processes (from
/// `/proc`, the processes named `postgres` on this machine: nil when the server runs
/// elsewhere). Divided by the jobs, the per-job cost of docs/performance.md.
struct DatabaseCost: Sendable {
    var walBytes: Double
    var cpuSeconds: Double?

    /// A reading before or after the work.
    struct Mark: Sendable {
        let lsn: String
        let cpuTicks: Int?
    }

    static func mark(on c: PostgresConnection) async throws -> Mark {
        let lsn = try await c.run { c in try c.query("SELECT pg_current_wal_lsn()::text AS lsn")[0].decode(String.self, "lsn") }
        return Mark(lsn: lsn, cpuTicks: postgresCPUTicks())
    }

    static func between(_ start: Mark, _ end: Mark, on c: PostgresConnection) async throws -> DatabaseCost {
        let bytes = try await c.run { c in
            try c.query("SELECT pg_wal_lsn_diff(\(end.lsn)::pg_lsn, \(start.lsn)::pg_lsn)::float8 AS bytes")[0]
                .decode(Double.self, "bytes")
        }
        var cpu: Double?
        if let a = start.cpuTicks, let b = end.cpuTicks { cpu = Double(b - a) / Double(sysconf(Int32(_SC_CLK_TCK))) }
        return DatabaseCost(walBytes: bytes, cpuSeconds: cpu)
    }

    /// User and system CPU ticks of every process named `postgres`, with those of its children
    /// that ended and were reaped (a backend whose connection closed counts in the postmaster's
    /// children's time).
    static func postgresCPUTicks() -> Int? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        var total = 0
        var found = false
        for entry in entries where entry.allSatisfy(\.isNumber) {
            guard let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")"),
                stat[stat.index(after: open)..<close] == "postgres"
            else { continue }
            // Fields after the command, from the 3rd (state): utime, stime, cutime and cstime
            // are the 14th to 17th of the line.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 14 else { continue }
            total += fields[11...14].reduce(0) { $0 + (Int($1) ?? 0) }
            found = true
        }
        return found ? total : nil
    }
}
