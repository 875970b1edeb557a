// A worker process for the queue's tests: the real JobWorker with test-only job kinds.
//
//   test-worker DATABASE_URL [--concurrency N] [--batch-size N] [--lease SECONDS] [--drain]
//                            [--grace-period SECONDS] [--queue Q]
//
// `test.record` inserts (job id, worker id) into `test_runs` in the job's transaction and
// sleeps `payload.ms` milliseconds there, so that a test can count every committed run.
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

var arguments = Array(CommandLine.arguments.dropFirst())
guard !arguments.isEmpty else {
    FileHandle.standardError.write(Data("usage: test-worker DATABASE_URL [options]\n".utf8))
    exit(2)
}
let url = arguments.removeFirst()
var configuration = WorkerConfiguration()
configuration.queues = []
var index = 0
while index < arguments.count {
    let flag = arguments[index]
    let value = index + 1 < arguments.count ? arguments[index + 1] : ""
    switch flag {
    case "--concurrency": configuration.concurrency = Int(value) ?? 4; index += 1
    case "--batch-size": configuration.batchSize = Int(value) ?? 10; index += 1
    case "--lease": configuration.lease = .milliseconds(Int64((Double(value) ?? 60) * 1000)); index += 1
    case "--grace-period": configuration.shutdownGracePeriod = .milliseconds(Int64((Double(value) ?? 30) * 1000)); index += 1
    case "--poll-interval": configuration.pollInterval = .milliseconds(Int64((Double(value) ?? 1) * 1000)); index += 1
    case "--queue": configuration.queues.append(value); index += 1
    case "--drain": configuration.drain = true
    default:
        FileHandle.standardError.write(Data("test-worker: unknown option \(flag)\n".utf8))
        exit(2)
    }
    index += 1
}
if configuration.queues.isEmpty { configuration.queues = ["test"] }
configuration.retryPolicy = RetryPolicy(base: .milliseconds(20), maximum: .milliseconds(200))
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .notice
    return handler
}
let logger = Logger(label: "test-worker")
do {
    let database = try PostgresConfiguration(url)
    let worker = JobWorker(
        configuration: configuration, database: database,
        handlers: [RecordHandler(worker: configuration.workerID), NoopHandler()], logger: logger)
    let group = ServiceGroup(
        configuration: ServiceGroupConfiguration(
            services: [.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
} catch {
    FileHandle.standardError.write(Data("test-worker: \(error)\n".utf8))
    exit(1)
}
