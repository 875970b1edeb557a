import ArgumentParser
import CommandLineSupport
import ContactDomain
import Foundation
import JSON
import JobQueue
import Logging
import Migrations
import Postgres
import TextForms

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "The queue's state at a glance.")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let database = try global.prepare()
        let stats = try await withDatabase(database) { connection in try QueueAdmin.stats(on: connection) }
        if json {
            print(stats.json.jsonText)
            return
        }
        print(StatsTable.render(stats))
    }
}

enum StatsTable {
    static func render(_ stats: QueueAdmin.Stats) -> String {
        var lines: [[String]] = [["QUEUE", "STATE", "JOBS", "OLDEST CREATED"]]
        for count in stats.counts {
            lines.append([
                count.queue, count.state.rawValue, String(count.jobs),
                count.oldestCreatedAt.map { TimestampText.format($0) } ?? "-",
            ])
        }
        let widths = (0..<4).map { column in lines.map { $0[column].count }.max() ?? 0 }
        var out = lines.map { row in
            zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }
        if stats.counts.isEmpty { out.append("(no jobs)") }
        out.append("")
        for (queue, age) in stats.oldestReadyAgeSeconds.sorted(by: { $0.key < $1.key }) {
            out.append("oldest ready job in \(queue): \(String(format: "%.1f", age)) s")
        }
        for (queue, jobs) in stats.finishedLastMinute.sorted(by: { $0.key < $1.key }) {
            out.append("finished in the last minute in \(queue): \(jobs)")
        }
        if !stats.topErrorCodes.isEmpty {
            out.append("most frequent errors of the latest failed jobs: "
                + stats.topErrorCodes.map { "\($0.code) (\($0.jobs))" }.joined(separator: ", "))
        }
        return out.joined(separator: "\n")
    }
}
