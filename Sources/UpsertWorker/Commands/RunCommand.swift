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
import ServiceLifecycle
import UnixSignals

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Works jobs until SIGTERM/SIGINT (or, with --drain, until none is left).")

    @OptionGroup var global: GlobalOptions

    @Option(name: .customLong("queue"), help: "A queue to serve (repeatable; default: contacts).")
    var queues: [String] = []

    @OptionGroup var worker: WorkerOptions

    @Flag(help: "Exit 0 once no job is ready to run now or running.")
    var drain = false

    func run() async throws {
        let database = try global.prepare()
        let logger = Logger(label: "upsert-worker")
        // Fail fast on a configuration that can never work (wrong password, no such
        // database); anything transient is left to the worker, which retries.
        do {
            let probe = try await PostgresConnection.connect(database, logger: logger)
            await probe.close()
        } catch where !error.isTransient {
            throw CLIError.failure("cannot connect to PostgreSQL (\(database)): \(error.message)")
        } catch {
            logger.warning("PostgreSQL is not reachable yet; the worker will keep trying", metadata: ["error": "\(error)"])
        }
        var configuration = worker.configuration()
        configuration.queues = queues.isEmpty ? ["contacts"] : queues
        configuration.drain = drain
        let jobWorker = JobWorker(
            configuration: configuration, database: database, handlers: Handlers.all, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(
                        service: jobWorker, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup)
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}
