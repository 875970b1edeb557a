import ContactDomain
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import JSON
import JobQueue
import Logging
import Migrations
import NIOCore
import NIOPosix
import Metrics
import Postgres
import Prometheus
import ServiceLifecycle

/// How `serve` runs; every field has a default.
public struct FrontConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// How long a request waits for its job before answering 202.
    public var wait: Duration = .seconds(10)
    /// The queue the front's jobs go to.
    public var queue = "contacts"
    /// `WHATSAPP_VERIFY_TOKEN`: the verification handshake's token; nil refuses it.
    public var whatsAppVerifyToken: String?
    /// `WHATSAPP_APP_SECRET`: the key of the webhook's signatures; nil refuses every notification.
    public var whatsAppAppSecret: String?
    /// How many multi-row inserts of requests' jobs run at a time (each on a connection of
    /// its own); requests that arrive meanwhile share the next one.
    public var inserters = 1
    /// Database connections for inserts and reads.
    public var connections = 8
    /// `UPSERT_ADMIN_TOKEN`: the token of the live page (`/dashboard`); nil turns the page off.
    public var adminToken: String?
    /// The shortest admin token `serve` accepts.
    public static let minimumAdminTokenLength = 16
    /// How long a connection may stay idle, and how long a client may take to send a whole
    /// request (its head, then its body; see ``RequestDeadline``).
    public var idleTimeout: Duration = .seconds(30)
    /// How many connections the kernel holds, handshake done, until `serve` accepts them. A
    /// burst beyond it (a webhook storm, a client pool reconnecting at once) is dropped by the
    /// kernel and retried by clients a second or more later. The kernel caps it at
    /// `net.core.somaxconn` (4,096 by default since Linux 5.4).
    public var listenBacklog = 4096

    public init() {}
}

/// The HTTP front (docs/contract.md section 8): the public API's endpoint, job status, the
/// WhatsApp Cloud API webhook, health, metrics and the OpenAPI document, on top of the queue.
/// Every accepted request is a job, worked by `upsert-worker run` processes as usual.
public struct APIFront: Sendable {
    /// The largest request body read.
    public static let maximumBody = 256 * 1024

    let configuration: FrontConfiguration
    let pool: PostgresConnectionPool
    /// Requests' jobs, inserted together (see ``SharedStatement``).
    let inserts: SharedStatement<NewJob, EnqueuedJob>
    /// Finished jobs' outcomes, read together.
    let outcomes: SharedStatement<Int64, JobOutcome?>
    let waiter: JobWaiter
    /// The open connections, each a task of its own (see ``ConnectionTasks``).
    let connections = ConnectionTasks()
    let keys = APIKeyCache()
    /// The live page's guard; nil when no admin token is configured (the page is off).
    let admin: AdminSessions?
    let metrics = HTTPMetrics()
    let registry: PrometheusCollectorRegistry
    let logger: Logger

    public init(
        configuration: FrontConfiguration, database: PostgresConfiguration, registry: PrometheusCollectorRegistry,
        logger: Logger
    ) {
        self.configuration = configuration
        self.pool = PostgresConnectionPool(
            configuration: database, size: configuration.connections, acquireTimeout: .seconds(10), logger: logger)
        self.inserts = SharedStatement(pool: pool, runners: configuration.inserters) { jobs, connection throws(PostgresError) in
            try JobProducer.enqueueReturning(jobs, on: connection)
        }
        self.outcomes = SharedStatement(pool: pool, runners: 1) { ids, connection throws(PostgresError) in
            try JobOutcome.read(ids, on: connection)
        }
        self.waiter = JobWaiter(configuration: database, logger: logger)
        self.admin = configuration.adminToken.map(AdminSessions.init(token:))
        self.registry = registry
        self.logger = logger
    }

    /// The application: the routes, the listener for finished jobs as a service beside them.
    public func application() -> some ApplicationProtocol {
        let router = Router()
        router.post("/api/public/customer/upsert/info") { request, _ in
            await self.measured("upsert") { try await self.upsert(request) }
        }
        router.get("/api/public/jobs/{id}") { request, context in
            await self.measured("job") { try await self.job(request, id: context.parameters.get("id")) }
        }
        router.get("/webhooks/whatsapp") { request, _ in
            await self.measured("whatsapp_verify") { self.verifyWhatsApp(request) }
        }
        router.post("/webhooks/whatsapp") { request, _ in
            await self.measured("whatsapp") { try await self.whatsApp(request) }
        }
        router.get("/healthz") { _, _ in await self.measured("healthz") { Self.text("ok\n") } }
        router.get("/readyz") { _, _ in await self.measured("readyz") { await self.ready() } }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: self.registry.emitToBuffer())))
        }
        router.get("/openapi.json") { _, _ in
            await self.measured("openapi") { Self.json(text: OpenAPIDocument.json) }
        }
        addDashboard(to: router)
        let idle = configuration.idleTimeout.components.seconds
        return Application(
            router: router,
            server: HTTPServerBuilder { responder in
                SeparateConnections(
                    inner: HTTP1Channel(
                        responder: responder,
                        configuration: .init(
                            additionalChannelHandlers: [RequestDeadline(limit: .seconds(Int64(idle)))],
                            idleTimeout: .seconds(Int64(idle)))),
                    tasks: connections)
            },
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), backlog: configuration.listenBacklog),
            services: [waiter],
            logger: logger)
    }

    /// A service to list *after* ``application()`` in the process's service group, which shuts
    /// its services down last to first: when shutdown begins, it ends the requests' waits for
    /// their jobs (``JobWaiter/stopWaiting()``), so the server's drain of the requests in flight
    /// that follows takes milliseconds, not `--wait`.
    public func waitsEnd() -> some Service { WaitsEnd(waiter: waiter) }

    /// Waits for the connections still open after the application stopped (requests in
    /// flight finishing), at most `timeout`; returns how many were cut.
    public func drainConnections(timeout: Duration) async -> Int {
        await connections.drain(timeout: timeout)
    }

    /// Closes the database connections (after the application stopped).
    public func close() async {
        inserts.close()
        outcomes.close()
        await pool.close()
    }

    // MARK: Routes

    func upsert(_ request: Request) async throws -> Response {
        guard let client = try await client(of: request) else { return Self.unauthorized() }
        let payload: JSONValue
        switch await Self.readJSON(request) {
        case .failure(let error): return error.response
        case .success(let value): payload = value
        }
        // The rules that need no database, exactly as the worker applies them.
        let draft = ContactRequest.check(payload)
        if !draft.errors.isEmpty { return Self.failure(draft.errors.jobFailure) }
        let respondAsync = request.headers[.prefer]?.lowercased().contains("respond-async") == true
        var job = NewJob.withDefaultOrderingKey(
            queue: configuration.queue, kind: "contact.upsert", payload: payload, clientID: client)
        job.idempotencyKey = request.headers[.idempotencyKey]
        job.notifyFinished = !respondAsync
        let ticket = waiter.ticket()
        guard let enqueued = try await inserts.run([job]).first else {
            return Self.error(500, "internal", "the job was not enqueued")
        }
        let id = enqueued.id
        if respondAsync { return accepted(id, state: enqueued.state) }
        // A repeated Idempotency-Key whose job finished long ago: answer from the table.
        let alreadyFinished = enqueued.state != .ready && enqueued.state != .running
        let finished = try await waiter.wait(
            for: id, ticket: alreadyFinished ? .lookFirst : ticket, timeout: configuration.wait
        ) {
            try await self.outcome(of: id)
        }
        if let finished { return Self.response(to: finished) }
        return accepted(id, state: try await outcome(of: id)?.state ?? .ready)
    }

    func job(_ request: Request, id: String?) async throws -> Response {
        guard let client = try await client(of: request) else { return Self.unauthorized() }
        guard let id = id.flatMap(Int64.init), id > 0 else { return Self.error(404, "not_found", "no such job") }
        let row = try await pool.withConnection { connection in
            try connection.query(
                """
                SELECT id, state, attempts, result::text AS result, last_error::text AS error
                FROM queue.jobs WHERE id = \(id) AND client_id = \(client)
                """
            ).first.map { row throws(PostgresError) in
                (
                    state: try row.decode(String.self, "state"), attempts: try row.decode(Int.self, "attempts"),
                    result: try row.decode(String?.self, "result"), error: try row.decode(String?.self, "error")
                )
            }
        }
        guard let row else { return Self.error(404, "not_found", "no such job for this organization") }
        let result = row.result.flatMap { try? JSONValue.parse($0) } ?? .null
        let error = row.error.flatMap { try? JSONValue.parse($0) } ?? .null
        return Self.json(
            ["id": .number(JSONNumber(Int(id))), "state": .string(row.state), "attempts": .number(JSONNumber(row.attempts)),
             "result": result, "error": error])
    }

    func verifyWhatsApp(_ request: Request) -> Response {
        let query = request.uri.queryParameters
        guard let expected = configuration.whatsAppVerifyToken, query["hub.mode"] == "subscribe",
            let token = query["hub.verify_token"], Self.constantTimeEqual(String(token), expected),
            let challenge = query["hub.challenge"]
        else { return Self.error(403, "forbidden", "verification refused") }
        return Self.text(String(challenge))
    }

    func whatsApp(_ request: Request) async throws -> Response {
        let body: [UInt8]
        switch await Self.readBody(request) {
        case .failure(let error): return error.response
        case .success(let bytes): body = bytes
        }
        guard let secret = configuration.whatsAppAppSecret,
            WhatsAppWebhook.isSigned(body, header: request.headers[.hubSignature], secret: secret)
        else { return Self.error(401, "unauthorized", "missing or invalid X-Hub-Signature-256") }
        let notification: JSONValue
        do {
            notification = try JSONValue.parse(body)
        } catch {
            return Self.error(400, "invalid_payload", "the body is not valid JSON: \(error)")
        }
        let jobs = WhatsAppWebhook.payloads(notification).map {
            NewJob.withDefaultOrderingKey(queue: configuration.queue, kind: "contact.upsert", payload: $0)
        }
        let enqueued = try await inserts.run(jobs)
        return Self.json(["jobs": .number(JSONNumber(enqueued.count))])
    }

    func ready() async -> Response {
        do {
            let migrated = try await pool.withConnection { connection in
                try connection.query("SELECT coalesce(max(version), 0) AS v FROM queue.schema_migrations")[0]
                    .decode(Int.self, "v")
            }
            guard migrated >= Schema.latestVersion else {
                return Self.error(503, "not_ready", "the schema is not migrated")
            }
            return Self.text("ready\n")
        } catch {
            return Self.error(503, "not_ready", "the database does not answer")
        }
    }
}

extension APIFront {
    /// Makes NIO's event loops (Hummingbird's threads) Swift concurrency's global executor, so
    /// that a request's handler runs on the thread that owns its socket. Call it once, on the
    /// main thread, before any task runs; returns false where NIO cannot (then nothing changed).
    @discardableResult
    public static func runTasksOnEventLoops() -> Bool {
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }

    /// Makes swift-metrics report to a Prometheus registry (once per process) and returns it.
    public static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
            .seconds(300), .seconds(900), .seconds(3600),
        ]
        // Batch sizes (upsert_batch_jobs).
        factory.defaultValueHistogramBuckets = [1, 2, 5, 10, 25, 50, 100, 200, 300, 500, 1000]
        MetricsSystem.bootstrap(factory)
        return registry
    }
}

/// See ``APIFront/waitsEnd()``.
private struct WaitsEnd: Service {
    let waiter: JobWaiter

    func run() async throws {
        try? await gracefulShutdown()  // returns when shutdown begins (throws if cancelled)
        waiter.stopWaiting()
    }
}
