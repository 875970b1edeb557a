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

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Deletes finished jobs older than a duration (30s, 15m, 12h, 7d).")

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("older-than"), help: "How long ago the jobs finished: 30s, 15m, 12h, 7d.")
    var olderThan: String

    func run() async throws {
        guard let age = parseDuration(olderThan) else {
            throw CLIError.usage("--older-than must be a duration such as 30s, 15m, 12h or 7d")
        }
        let database = try global.prepare()
        let count = try await withDatabase(database) { connection in try QueueAdmin.prune(olderThan: age, on: connection) }
        print("pruned \(count) finished job(s)")
    }
}
