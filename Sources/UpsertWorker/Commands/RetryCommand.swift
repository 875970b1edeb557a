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

struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry", abstract: "Moves a failed or cancelled job (or every failed job) back to ready.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The job id.")
    var job: Int64?

    @Flag(help: "Every failed job.")
    var failed = false

    func run() async throws {
        guard (job != nil) != failed else { throw CLIError.usage("give exactly one of --job ID or --failed") }
        let database = try global.prepare()
        if let job {
            let done = try await withDatabase(database) { connection in try QueueAdmin.retry(job: job, on: connection) }
            guard done else { throw CLIError.failure("job \(job) does not exist or is not failed/cancelled") }
            print("job \(job) is ready again")
        } else {
            let count = try await withDatabase(database) { connection in try QueueAdmin.retryFailed(on: connection) }
            print("\(count) failed job(s) are ready again")
        }
    }
}
