import Foundation
import JSON
import JobQueue
import Logging
import Metrics
import Migrations
import Postgres
import Prometheus

/// `upsert-bench --metrics-cost`: the contact drain with metrics off (swift-metrics' no-op
/// handlers, as `run` without `--metrics-port`) and on (a Prometheus registry, the queue
/// sampler at its default interval, and a scrape every second), alternating in one run.
extension Bench {
    public struct MetricsCostReport: Sendable {
        public var off: [Double] = []
        public var on: [Double] = []

        public var table: String {
            let off = Bench.median(self.off)
            let on = Bench.median(self.on)
            func rounds(_ values: [Double]) -> String { values.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
            return """
                drain, contact.upsert, metrics off, jobs/s   \(String(format: "%.0f", off))  (median of \(rounds(self.off)))
                drain, contact.upsert, metrics on,  jobs/s   \(String(format: "%.0f", on))  (median of \(rounds(self.on)))
                difference of the medians                    \(String(format: "%+.1f", (on - off) / max(off, 1) * 100)) %
                """
        }
    }

    public static func metricsCost(
        server: PostgresConfiguration, options: BenchOptions, handlers: [any JobHandler], logger: Logger,
        progress: @Sendable (String) -> Void
    ) async throws -> MetricsCostReport {
        try await withScratchDatabase("upsert_bench", server: server, options: options, logger: logger, progress: progress) {
            database in
            let workload = Workload()
            let c = try await PostgresConnection.connect(database, logger: logger)
            try await c.run { c in
                _ = try await Schema.migrate(c, logger: logger)
                try workload.load(on: c)
                try workload.loadBackground(customers: options.backgroundCustomers, on: c)
            }
            let payloads = workload.payloads(options.jobs)
            var report = MetricsCostReport()
            for round in 1...max(1, options.rounds) {
                // Off first in odd rounds, on first in even ones: neither always gets the warmer cache.
                for metricsOn in round % 2 == 1 ? [false, true] : [true, false] {
                    try await resetContacts(c, workload)
                    try await enqueue(payloads, queue: "contacts", kind: "contact.upsert", on: c)
                    try await settle(c)
                    progress("drain: \(options.jobs) contact.upsert jobs, metrics \(metricsOn ? "on" : "off") (round \(round))")
                    let rate = try await timedRate(options.jobs) {
                        try await drain(database, options, handlers, logger, metricsOn: metricsOn)
                    }
                    if metricsOn { report.on.append(rate) } else { report.off.append(rate) }
                }
            }
            await c.close()
            return report
        }
    }

    static func drain(
        _ database: PostgresConfiguration, _ options: BenchOptions, _ handlers: [any JobHandler], _ logger: Logger,
        metricsOn: Bool
    ) async throws {
        guard metricsOn else {
            let worker = JobWorker(
                configuration: workerConfiguration(["contacts"], options, drain: true), database: database,
                handlers: handlers, metrics: WorkerMetrics(factory: NOOPMetricsHandler.instance), logger: logger)
            try await worker.run()
            return
        }
        let registry = PrometheusCollectorRegistry()
        let metrics = WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry))
        let worker = JobWorker(
            configuration: workerConfiguration(["contacts"], options, drain: true), database: database,
            handlers: handlers, metrics: metrics, logger: logger)
        let sampler = Task {
            try await QueueSampler(configuration: database, metrics: metrics, interval: .seconds(5), logger: logger).run()
        }
        let scraper = Task {
            while !Task.isCancelled {
                _ = registry.emitToBuffer()
                try? await Task.sleep(for: .seconds(1))
            }
        }
        try await worker.run()
        sampler.cancel()
        scraper.cancel()
        _ = try? await sampler.value
        _ = await scraper.value
    }
}
