import ArgumentParser
import CommandLineSupport
import ContactDomain
import Foundation
import JSON
import HTTPFront
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

    @Option(help: "Serve /metrics (Prometheus) and /healthz on this port (default: none).")
    var metricsPort: Int?

    @Option(help: "The address --metrics-port listens on.")
    var metricsHost = "127.0.0.1"

    @Option(help: "Seconds between samples of the queue gauges (with --metrics-port).")
    var metricsInterval: Double = 5

    func validate() throws {
        if let metricsPort, !(1...65535).contains(metricsPort) {
            throw ValidationError("--metrics-port must be 1 to 65535")
        }
        guard metricsInterval >= 0.1, metricsInterval.isFinite else { throw ValidationError("--metrics-interval must be >= 0.1") }
    }

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
        let registry = metricsPort.map { _ in APIFront.bootstrapMetrics() }
        let metrics = WorkerMetrics()
        let jobWorker = JobWorker(
            configuration: configuration, database: database, handlers: Handlers.all, metrics: metrics, logger: logger)
        // Shut down last first: the worker finishes its batches while /metrics still answers.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let metricsPort, let registry {
            services.append(.init(service: MetricsEndpoint.application(
                host: metricsHost, port: metricsPort, registry: registry, logger: logger,
                isHealthy: { jobWorker.isHealthy() })))
            services.append(.init(service: QueueSampler(
                configuration: database, metrics: metrics, interval: .seconds(metricsInterval), logger: logger)))
        }
        services.append(.init(
            service: jobWorker, successTerminationBehavior: .gracefullyShutdownGroup,
            failureTerminationBehavior: .gracefullyShutdownGroup))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
