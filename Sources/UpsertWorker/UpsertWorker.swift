import ArgumentParser
import CommandLineSupport
import ContactDomain
import Foundation
import HTTPFront
import JobQueue
import Logging
import Postgres

/// The `upsert-worker` command line (docs/contract.md, "Command line"); one file per command
/// in Commands/.
@main
struct UpsertWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upsert-worker",
        abstract: "Works contact.upsert jobs from a PostgreSQL queue.",
        subcommands: [
            MigrateCommand.self, RunCommand.self, EnqueueCommand.self, StatsCommand.self, RetryCommand.self,
            CancelCommand.self, PruneCommand.self, ServeCommand.self, ImportCommand.self,
        ])

    static func main() async {
        // `serve` runs its tasks on NIO's event loops, where its sockets are, instead of hopping
        // between those threads and Swift's own pool for every request. First, before any task.
        if CommandLine.arguments.dropFirst().first == "serve" { APIFront.runTasksOnEventLoops() }
        await runAsProgram(named: "upsert-worker")
    }
}

/// Every job kind this binary runs.
enum Handlers {
    static var all: [any JobHandler] { [ContactUpsertHandler(), NoopHandler()] }
}

/// Opens one connection for a command, turning failures into one clear line.
func connect(_ configuration: PostgresConfiguration) async throws -> PostgresConnection {
    do {
        return try await PostgresConnection.connect(configuration, logger: Logger(label: "upsert-worker"))
    } catch {
        throw CLIError.failure("cannot connect to PostgreSQL (\(configuration)): \(error.message)")
    }
}

/// Runs `body` on a fresh connection and reports database errors as one line.
func withDatabase<T: Sendable>(
    _ configuration: PostgresConfiguration, _ body: @Sendable (isolated PostgresConnection) async throws -> T
) async throws -> T {
    let connection = try await connect(configuration)
    do {
        let value = try await connection.run(body)
        await connection.close()
        return value
    } catch let error as PostgresError {
        await connection.close()
        throw CLIError.failure(error.description)
    }
}
