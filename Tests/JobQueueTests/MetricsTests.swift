import JSON
import JobQueue
import Metrics
import Postgres
import Prometheus
import TestSupport
import Testing

@Suite("Worker metrics")
struct MetricsTests {
    /// The value of one sample line of the Prometheus text, e.g.
    /// `upsert_jobs_finished_total{queue="test",kind="k",outcome="failed"}`.
    static func value(_ series: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test("after a known run the series of the contract hold the right values, and the gauges what the table holds")
    func knownRun() async throws {
        try await QueueTest.withDatabase { database, connection in
            let registry = PrometheusCollectorRegistry()
            let metrics = WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry))
            let handler = ScriptedHandler { job, _ in
                switch job.payload["do"]?.stringValue {
                case "fail": throw Permanent()
                case "retry" where job.attempt < 2: throw Transient()
                default: return [:]
                }
            }
            let jobs = ["ok", "ok", "fail", "retry", "ok"].map {
                NewJob(queue: "test", kind: "test.scripted", payload: ["do": .string($0)])
            }
            try await connection.run { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
            try await connection.run { c in try c.execute("INSERT INTO queue.jobs (queue, payload) VALUES ('idle', '{}')") }
            // Until every job of the queue is final (the retry waits out its backoff first).
            let worker = JobWorker(
                configuration: QueueTest.configuration(drain: false), database: database, handlers: [handler],
                metrics: metrics, logger: QueueTest.logger)
            let running = Task { try await worker.run() }
            let done = await eventually(timeout: .seconds(30)) {
                (try? await QueueTest.scalar(
                    "SELECT count(*) FROM queue.jobs WHERE queue = 'test' AND state IN ('ready', 'running')", Int.self,
                    on: connection)) == 0
            }
            worker.stop()
            try await running.value
            try #require(done)
            try await connection.run { c in try QueueSampler.sample(into: metrics, on: c) }
            let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
            let labels = #"queue="test",kind="test.scripted""#
            #expect(Self.value("upsert_jobs_finished_total{\(labels),outcome=\"succeeded\"}", in: text) == 4)
            #expect(Self.value("upsert_jobs_finished_total{\(labels),outcome=\"failed\"}", in: text) == 1)
            #expect(Self.value("upsert_jobs_finished_total{\(labels),outcome=\"retried\"}", in: text) == 1)
            #expect(Self.value("upsert_job_duration_seconds_count{\(labels)}", in: text) == 6)
            #expect(Self.value("upsert_job_errors_total{\(labels),code=\"bad_job\"}", in: text) == 1)
            #expect(Self.value("upsert_job_errors_total{\(labels),code=\"internal\"}", in: text) == 1)
            #expect(Self.value(#"upsert_job_wait_seconds_count{queue="test"}"#, in: text) == 6)
            #expect(Self.value("upsert_batch_jobs_sum", in: text) == 6)
            #expect(Self.value(#"upsert_queue_jobs{queue="test",state="succeeded"}"#, in: text) == 4)
            #expect(Self.value(#"upsert_queue_jobs{queue="test",state="failed"}"#, in: text) == 1)
            #expect(Self.value(#"upsert_queue_jobs{queue="idle",state="ready"}"#, in: text) == 1)
            let oldest = Self.value(#"upsert_queue_oldest_ready_seconds{queue="idle"}"#, in: text) ?? -1
            #expect(oldest >= 0 && oldest < 60)
            // The idle queue's job goes away: its gauge drops to 0 at the next sample.
            try await connection.run { c in
                try c.execute("DELETE FROM queue.jobs WHERE queue = 'idle'")
                try QueueSampler.sample(into: metrics, on: c)
            }
            let after = String(decoding: registry.emitToBuffer(), as: UTF8.self)
            #expect(Self.value(#"upsert_queue_jobs{queue="idle",state="ready"}"#, in: after) == 0)
        }
    }

    @Test("a transaction held open elsewhere shows in upsert_db_oldest_snapshot_seconds, and is gone once it ends")
    func oldestSnapshot() async throws {
        try await QueueTest.withDatabase { database, connection in
            let registry = PrometheusCollectorRegistry()
            let metrics = WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry))
            func sample() async throws -> Double? {
                try await connection.run { c in try QueueSampler.sample(into: metrics, on: c) }
                return Self.value("upsert_db_oldest_snapshot_seconds", in: String(decoding: registry.emitToBuffer(), as: UTF8.self))
            }
            #expect(try await sample() ?? -1 < 1)
            let report = try await PostgresConnection.connect(database)
            try await report.run { c in
                try c.executeScript("BEGIN ISOLATION LEVEL REPEATABLE READ")
                _ = try c.query("SELECT count(*) AS n FROM queue.jobs")  // takes its snapshot
            }
            try await Task.sleep(for: .milliseconds(1500))
            let held = try await sample() ?? -1
            #expect(held >= 1.4 && held < 30, "a transaction open for 1.5 s: \(held) s")
            try await report.run { c in try c.executeScript("ROLLBACK") }
            #expect(try await sample() ?? -1 < 1)
            await report.close()
        }
    }

    @Test("a lost session that reconnects is counted")
    func reconnectsCounted() async throws {
        try await QueueTest.withDatabase { database, connection in
            let registry = PrometheusCollectorRegistry()
            let metrics = WorkerMetrics(factory: PrometheusMetricsFactory(registry: registry))
            let counted = try await PostgresConnection.connect(metrics.counting(database))
            let pid = try await counted.run { c in try c.query("SELECT pg_backend_pid() AS p")[0].decode(Int.self, "p") }
            try await connection.run { c in _ = try c.query("SELECT pg_terminate_backend(\(pid))") }
            _ = try? await counted.run { c in try c.query("SELECT 1") }  // notices the loss
            _ = try await counted.run { c in try c.query("SELECT 1") }  // reconnects
            let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
            #expect(Self.value("upsert_db_reconnects_total", in: text) == 1)
            await counted.close()
        }
    }
}
