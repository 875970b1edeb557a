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

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Applies the schema; safe to run again and from several processes at once.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let database = try global.prepare()
        let applied = try await withDatabase(database) { connection in
            try await Schema.migrate(connection, logger: Logger(label: "migrate")).count
        }
        let latest = Schema.latestVersion
        print("migrate: applied \(applied) migration(s); schema at version \(latest)")
    }
}
