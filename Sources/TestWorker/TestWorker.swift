// A worker process for the queue's tests: the real JobWorker with test-only job kinds.
//
// `test.record` inserts (job id, worker id) into `test_runs` in the job's transaction and
// sleeps `payload.ms` milliseconds there, so that a test can count every committed run.
import ArgumentParser
import CommandLineSupport
import Foundation
import JSON
import JobQueue
import Logging
import Postgres
import ServiceLifecycle
import UnixSignals

struct RecordHandler: JobHandler {
    typealias Work = Void
    let kind = "test.record"
    let worker: String

    func handle(_ decoded: DecodedJob<Void>, on connection: isolated PostgresConnection, logger: Logger) async throws
        -> JSONValue
    {
        let job = decoded.job
        try connection.execute("INSERT INTO test_runs (job_id, worker) VALUES (\(job.id), \(worker))")
        if case .number(let ms)? = job.payload["ms"], let milliseconds = ms.intValue, milliseconds > 0 {
            try connection.execute("SELECT pg_sleep(\(milliseconds)::float8 / 1000)")
        }
        return ["recorded": true]
    }
}

/// `test-worker DATABASE_URL [worker options] [--queue Q] [--drain]`: the worker options are
/// those of `upsert-worker run` (``WorkerOptions``).
@main
struct TestWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test-worker")

    @Argument var url: String
    @OptionGroup var worker: WorkerOptions
    @Option(name: .customLong("queue")) var queues: [String] = []
    @Flag var drain = false

    static func main() async {
        await runAsProgram(named: "test-worker")
    }

    func run() async throws {
        var configuration = worker.configuration()
        configuration.queues = queues.isEmpty ? ["test"] : queues
        configuration.drain = drain
        configuration.retryPolicy = RetryPolicy(base: .milliseconds(20), maximum: .milliseconds(200))
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .notice
            return handler
        }
        let logger = Logger(label: "test-worker")
        let jobWorker = JobWorker(
            configuration: configuration, database: try PostgresConfiguration(url),
            handlers: [RecordHandler(worker: configuration.workerID), NoopHandler()], logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: jobWorker, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
