import ContactDomain
import Foundation
import HTTPTypes
import Hummingbird
import JSON
import JobQueue
import Metrics
import Postgres
import Synchronization

extension HTTPField.Name {
    // Valid header tokens, fixed in the source: the initializer cannot fail for them.
    static let apiKey = HTTPField.Name("x-api-key")!
    static let prefer = HTTPField.Name("Prefer")!
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    static let hubSignature = HTTPField.Name("X-Hub-Signature-256")!
}

extension APIFront {
    /// Runs a route, turning an unexpected error into `500 internal`, and records
    /// `upsert_http_requests_total{route,status}` and `upsert_http_request_duration_seconds{route}`.
    func measured(_ route: String, _ body: () async throws -> Response) async -> Response {
        let started = ContinuousClock.now
        let response: Response
        do {
            response = try await body()
        } catch {
            logger.warning("request failed", metadata: ["route": "\(route)", "error": "\(error)"])
            response = Self.error(500, "internal", "the request could not be completed; retry it")
        }
        metrics.record(route: route, status: Int(response.status.code), elapsed: ContinuousClock.now - started)
        return response
    }

    /// The organization of the request's `x-api-key`; nil when it is missing, unknown or revoked.
    func client(of request: Request) async throws -> UUID? {
        guard let key = request.headers[.apiKey], !key.isEmpty else { return nil }
        return try await client(for: key)
    }

    static func unauthorized() -> Response {
        error(401, "unauthorized", "a valid x-api-key header is required")
    }

    /// The organization of an API key, through the cache.
    func client(for key: String) async throws -> UUID? {
        try await keys.client(for: key) { key in
            try await pool.withConnection { connection in
                try connection.query("SELECT crm.api_key_client(\(key)) AS client")[0].decode(UUID?.self, "client")
            }
        }
    }

    /// Job `id` as the table holds it now (nil: no such job). Concurrent requests share one read.
    func outcome(of id: Int64) async throws -> JobOutcome? {
        try await outcomes.run([id]).first ?? nil
    }

    /// 200 with the stored result, byte for byte, or the stored error with its status.
    static func response(to outcome: JobOutcome) -> Response {
        if outcome.state == .succeeded { return json(text: outcome.body ?? "null") }
        return json(
            text: outcome.body ?? #"{"status": 500, "code": "cancelled", "message": "cancelled", "details": {}}"#,
            status: HTTPResponse.Status(code: outcome.status ?? 500))
    }

    /// 202 with where to look.
    func accepted(_ id: Int64, state: JobState) -> Response {
        let location = "/api/public/jobs/\(id)"
        // Numbers and fixed words only: written directly, no JSON value to build.
        var response = Self.json(
            text: #"{"job_id":\#(id),"state":"\#(state.rawValue)","status_url":"\#(location)"}"#, status: .accepted)
        response.headers[.location] = location
        return response
    }

    // MARK: Reading requests

    /// The body, at most `limit` bytes (413 beyond, reading no further).
    static func readBody(_ request: Request, limit: Int = maximumBody) async -> Result<[UInt8], ResponseError> {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
            return .failure(ResponseError(tooLarge()))
        }
        var bytes: [UInt8] = []
        do {
            for try await chunk in request.body {
                guard bytes.count + chunk.readableBytes <= limit else { return .failure(ResponseError(tooLarge())) }
                bytes += chunk.readableBytesView
            }
        } catch {
            return .failure(ResponseError(Self.error(400, "invalid_payload", "the body could not be read")))
        }
        return .success(bytes)
    }

    /// A JSON body: `application/json` (415 otherwise), at most ``maximumBody`` bytes (413),
    /// parsed by the bounded parser the worker uses (400 `invalid_payload`).
    static func readJSON(_ request: Request) async -> Result<JSONValue, ResponseError> {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        guard type.hasPrefix("application/json") else {
            return .failure(ResponseError(Self.error(415, "unsupported_media_type", "the body must be application/json")))
        }
        switch await readBody(request) {
        case .failure(let error): return .failure(error)
        case .success(let bytes):
            do {
                return .success(try JSONValue.parse(bytes))
            } catch {
                return .failure(ResponseError(Self.error(400, "invalid_payload", "the body is not valid JSON: \(error)")))
            }
        }
    }

    static func tooLarge() -> Response {
        error(413, "payload_too_large", "the body is larger than 256 KiB")
    }

    // MARK: Writing responses

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        json(text: value.jsonText, status: status)
    }

    static func json(text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    public static func text(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The error object of docs/contract.md section 6.
    public static func error(_ status: Int, _ code: String, _ message: String) -> Response {
        json(
            ["status": .number(JSONNumber(status)), "code": .string(code), "message": .string(message), "details": [:]],
            status: HTTPResponse.Status(code: status))
    }

    static func failure(_ failure: JobFailure) -> Response {
        json(failure.errorObject, status: HTTPResponse.Status(code: failure.status))
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        constantTimeEqual(Array(a.utf8), Array(b.utf8))
    }

    static func constantTimeEqual(_ x: [UInt8], _ y: [UInt8]) -> Bool {
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}

/// The front's two series, each made once per route (and status) rather than per request.
final class HTTPMetrics: Sendable {
    private let counters = Mutex<[String: Counter]>([:])
    private let timers = Mutex<[String: Metrics.Timer]>([:])

    /// `upsert_http_requests_total{route,status}` + 1 and `upsert_http_request_duration_seconds{route}`.
    func record(route: String, status: Int, elapsed: Duration) {
        let counter = counters.withLock { counters in
            let key = route + " " + String(status)
            if let known = counters[key] { return known }
            let made = Counter(label: "upsert_http_requests_total", dimensions: [("route", route), ("status", String(status))])
            counters[key] = made
            return made
        }
        counter.increment()
        let timer = timers.withLock { timers in
            if let known = timers[route] { return known }
            let made = Metrics.Timer(label: "upsert_http_request_duration_seconds", dimensions: [("route", route)])
            timers[route] = made
            return made
        }
        timer.recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
    }
}

/// A response that ends a request early (an error answer), carried through a `Result`.
struct ResponseError: Error {
    let response: Response
    init(_ response: Response) { self.response = response }
}

extension JobOutcome {
    /// The outcomes of `ids`, in order (nil for a job that is not there), with one query.
    static func read(_ ids: [Int64], on connection: isolated PostgresConnection) throws(PostgresError)
        -> [JobOutcome?]
    {
        var found: [Int64: JobOutcome] = [:]
        for row in try connection.query(
            """
            SELECT id, state, (CASE WHEN state = 'succeeded' THEN result ELSE last_error END)::text AS body,
                   (last_error ->> 'status')::int AS status
            FROM queue.jobs WHERE id = ANY(\(ids)::bigint[])
            """)
        {
            found[try row.decode(Int64.self, "id")] = JobOutcome(
                state: try row.decode(JobState.self, "state"), body: try row.decode(String?.self, "body"),
                status: try row.decode(Int?.self, "status"))
        }
        return ids.map { found[$0] }
    }
}
