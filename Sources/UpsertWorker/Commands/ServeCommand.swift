import ArgumentParser
import CommandLineSupport
import Foundation
import HTTPFront
import JobQueue
import Logging
import Postgres
import ServiceLifecycle
import UnixSignals

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serves the public API and the WhatsApp webhook over HTTP; every accepted request is a job.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on.")
    var port = 8080

    @Option(help: "Seconds a request waits for its job before answering 202.")
    var wait: Double = 10

    @Option(help: "The queue the jobs go to.")
    var queue = "contacts"

    @Option(help: "Database connections for inserts and reads.")
    var connections = 8

    @Option(help: "Multi-row INSERTs of requests' jobs at a time; requests arriving meanwhile share the next one.")
    var inserters = 1

    @Option(help: "Seconds between samples of the queue gauges on /metrics.")
    var metricsInterval: Double = 5

    func validate() throws {
        guard metricsInterval >= 0.1, metricsInterval.isFinite else { throw ValidationError("--metrics-interval must be >= 0.1") }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
        guard wait >= 0, wait.isFinite else { throw ValidationError("--wait must be >= 0") }
        guard (1...256).contains(connections) else { throw ValidationError("--connections must be 1 to 256") }
        guard (1..<connections).contains(inserters) else {
            throw ValidationError("--inserters must be at least 1 and less than --connections")
        }
    }

    func run() async throws {
        let database = try global.prepare()
        let logger = Logger(label: "upsert-worker.serve")
        var configuration = FrontConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.wait = .seconds(wait)
        configuration.queue = queue
        configuration.connections = connections
        configuration.inserters = inserters
        let environment = ProcessInfo.processInfo.environment
        configuration.whatsAppVerifyToken = environment["WHATSAPP_VERIFY_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.whatsAppAppSecret = environment["WHATSAPP_APP_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.adminToken = environment["UPSERT_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let token = configuration.adminToken, token.count < FrontConfiguration.minimumAdminTokenLength {
            throw CLIError.usage(
                "UPSERT_ADMIN_TOKEN must be at least \(FrontConfiguration.minimumAdminTokenLength) characters (it guards customer data)")
        }
        let front = APIFront(
            configuration: configuration, database: database, registry: APIFront.bootstrapMetrics(), logger: logger)
        // The queue gauges on this /metrics too, sampled like a worker's.
        let sampler = QueueSampler(
            configuration: database, metrics: WorkerMetrics(), interval: .seconds(metricsInterval), logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: front.application(), successTerminationBehavior: .gracefullyShutdownGroup),
                    .init(service: sampler),
                    // Shut down first: the requests waiting for their jobs are answered at once.
                    .init(service: front.waitsEnd(), successTerminationBehavior: .ignore),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        // The server stopped accepting and closed its idle connections; the requests in flight
        // finish (their waits already ended), then the database connections close.
        let cut = await front.drainConnections(timeout: .seconds(30))
        if cut > 0 { logger.warning("connections cut at shutdown", metadata: ["connections": "\(cut)"]) }
        await front.close()
    }
}
