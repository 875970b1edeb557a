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

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancels a job not yet finished.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The job id.")
    var job: Int64

    func run() async throws {
        let database = try global.prepare()
        let job = self.job
        let done = try await withDatabase(database) { connection in try QueueAdmin.cancel(job: job, on: connection) }
        guard done else { throw CLIError.failure("job \(job) does not exist or has already finished") }
        print("job \(job) cancelled")
    }
}
