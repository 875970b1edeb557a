import Foundation
import HTTPFront
import JSON
import Postgres
import TestSupport
import Testing

@Suite("The HTTP front, end to end")
struct FrontTests {
    @Test("a synchronous upsert answers 200 with the stored result, byte for byte; the job status route shows it")
    func syncUpsert() async throws {
        try await FrontFixture.with { f, _ in
            let answer = try await f.upsert(f.payload("+1 650 555 0100"), as: f.orgA)
            #expect(answer.status == 200, "\(answer.text)")
            let stored = try await f.connection.run { c in
                try c.query("SELECT result::text AS r FROM queue.jobs")[0].decode(String.self, "r")
            }
            #expect(answer.text == stored)
            #expect(answer.json?["phone"] == "+16505550100")
            #expect(answer.json?["created"] == true)
            let id = try await f.count("SELECT max(id)::int FROM queue.jobs")
            let status = try await f.request("GET", "/api/public/jobs/\(id)", headers: ["x-api-key": f.orgA.key])
            #expect(status.status == 200)
            #expect(status.json?["state"] == "succeeded")
            #expect(status.json?["result"]?["phone"] == "+16505550100")
        }
    }

    @Test("problems found without the database answer 400 at once, and nothing is enqueued")
    func badPayload() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            let answer = try await f.upsert(["channel": "fax", "contact_email": "nope"], as: f.orgA)
            #expect(answer.status == 400)
            #expect(answer.json?["code"] == "invalid_fields")
            #expect(answer.json?["details"]?["invalid_fields"]?.arrayValue?.count == 2)
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs") == 0)
        }
    }

    @Test("a missing, unknown or revoked API key is 401, and nothing is enqueued")
    func unauthorized() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            #expect(try await f.upsert(f.payload("+16505550101"), as: nil).status == 401)
            #expect(
                try await f.upsert(f.payload("+16505550101"), as: nil, headers: ["x-api-key": "no-such-key"]).status == 401)
            #expect(
                try await f.upsert(f.payload("+16505550101"), as: f.orgA, headers: ["Prefer": "respond-async"]).status
                    == 202)
            try await f.connection.run { c in try c.execute("UPDATE crm.api_keys SET revoked_at = now()") }
            // The key cache lets a revoked key go within its time to live (5 s).
            let revoked = try await eventually(timeout: .seconds(15)) {
                try await f.upsert(f.payload("+16505550102"), as: f.orgA, headers: ["Prefer": "respond-async"]).status
                    == 401
            }
            #expect(revoked)
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs") >= 1)
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs WHERE payload ->> 'contact_phone_number' = '+16505550101'") == 1)
        }
    }

    @Test("Prefer: respond-async and a job unfinished within the wait both answer 202 with where to look")
    func accepted() async throws {
        try await FrontFixture.with(wait: 0.5, worker: false) { f, _ in
            let async = try await f.upsert(f.payload("+16505550103"), as: f.orgA, headers: ["Prefer": "respond-async"])
            #expect(async.status == 202)
            let id = try #require(async.json?["job_id"]?.intValue)
            #expect(async.headers["location"] == "/api/public/jobs/\(id)")
            #expect(async.json?["status_url"] == .string("/api/public/jobs/\(id)"))
            let started = ContinuousClock.now
            let waited = try await f.upsert(f.payload("+16505550104"), as: f.orgA, timeout: 10)
            let took = ContinuousClock.now - started
            #expect(waited.status == 202)
            #expect(waited.json?["state"] == "ready")
            // The wait ends at --wait (0.5 s), not before, and not much after.
            #expect(took >= .milliseconds(490) && took < .seconds(3), "answered after \(took)")
        }
    }

    @Test("an idempotency key enqueues one job, and other organizations' jobs are 404")
    func idempotencyAndScope() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            let headers = ["Prefer": "respond-async", "Idempotency-Key": "event-42"]
            let first = try await f.upsert(f.payload("+16505550105"), as: f.orgA, headers: headers)
            let second = try await f.upsert(f.payload("+16505550105"), as: f.orgA, headers: headers)
            #expect(first.status == 202 && second.status == 202)
            #expect(first.json?["job_id"] == second.json?["job_id"])
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs") == 1)
            let id = try #require(first.json?["job_id"]?.intValue)
            #expect(try await f.request("GET", "/api/public/jobs/\(id)", headers: ["x-api-key": f.orgB.key]).status == 404)
            #expect(try await f.request("GET", "/api/public/jobs/\(id)", headers: ["x-api-key": f.orgA.key]).status == 200)
            #expect(try await f.request("GET", "/api/public/jobs/\(id)").status == 401)
        }
    }

    @Test("a repeated Idempotency-Key whose job finished unannounced answers the stored result at once")
    func finishedReplay() async throws {
        try await FrontFixture.with(wait: 5) { f, _ in
            let headers = ["Idempotency-Key": "import-row-7"]
            let first = try await f.upsert(
                f.payload("+16505550107"), as: f.orgA, headers: headers.merging(["Prefer": "respond-async"]) { a, _ in a })
            #expect(first.status == 202)
            let done = try await eventually(timeout: .seconds(20)) {
                try await f.count("SELECT count(*)::int FROM queue.jobs WHERE state = 'succeeded'") == 1
            }
            try #require(done)
            let started = ContinuousClock.now
            let again = try await f.upsert(f.payload("+16505550107"), as: f.orgA, headers: headers)
            #expect(again.status == 200, "\(again.text)")
            #expect(ContinuousClock.now - started < .seconds(2), "waited for an announcement that never comes")
            let stored = try await f.connection.run { c in
                try c.query("SELECT result::text AS r FROM queue.jobs")[0].decode(String.self, "r")
            }
            #expect(again.text == stored)
        }
    }

    @Test("hostile bodies: too large is 413, a wrong content type 415, malformed or deeply nested JSON 400")
    func hostileBodies() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            let path = "/api/public/customer/upsert/info"
            let big = Data(repeating: UInt8(ascii: " "), count: 300 * 1024)
            let headers = ["x-api-key": f.orgA.key, "Content-Type": "application/json"]
            #expect(try await f.request("POST", path, headers: headers, body: big).status == 413)
            let text = try await f.request(
                "POST", path, headers: ["x-api-key": f.orgA.key, "Content-Type": "text/plain"], body: Data("{}".utf8))
            #expect(text.status == 415)
            #expect(text.json?["code"] == "unsupported_media_type")
            #expect(try await f.request("POST", path, headers: headers, body: Data("{\"channel\":".utf8)).status == 400)
            let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
            let nested = try await f.request("POST", path, headers: headers, body: Data(deep.utf8))
            #expect(nested.status == 400)
            #expect(nested.json?["code"] == "invalid_payload")
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs") == 0)
        }
    }

    @Test("the WhatsApp handshake answers the challenge only for the right token")
    func handshake() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            let good = try await f.request(
                "GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=\(FrontFixture.verifyToken)&hub.challenge=1158201444")
            #expect(good.status == 200)
            #expect(good.text == "1158201444")
            let bad = try await f.request(
                "GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444")
            #expect(bad.status == 403)
        }
    }

    @Test("WhatsApp notifications: a good signature enqueues one job per sender, a bad or missing one nothing")
    func webhook() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            let body = try FrontFixture.fixture("several-entries")
            func post(_ body: Data, signature: String?) async throws -> FrontFixture.Answer {
                var headers = ["Content-Type": "application/json"]
                if let signature { headers["X-Hub-Signature-256"] = signature }
                return try await f.request("POST", "/webhooks/whatsapp", headers: headers, body: body)
            }
            #expect(try await post(body, signature: nil).status == 401)
            #expect(try await post(body, signature: FrontFixture.signature(body, secret: "other")).status == 401)
            var tampered = body
            tampered[tampered.count - 5] ^= 0x01
            #expect(try await post(tampered, signature: FrontFixture.signature(body)).status == 401)
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs") == 0)

            let answer = try await post(body, signature: FrontFixture.signature(body))
            #expect(answer.status == 200)
            #expect(answer.json?["jobs"] == 3)
            let senders = try await f.connection.run { c in
                try c.query(
                    """
                    SELECT payload ->> 'channel_phone_number' || ' ' || (payload ->> 'contact_phone_number') || ' '
                           || coalesce(payload ->> 'contact_name', '-') || ' ' || (fairness_key = \(f.orgA.client.uuidString.lowercased()))::text AS s
                    FROM queue.jobs ORDER BY id
                    """
                ).map { row throws(PostgresError) in try row.decode(String.self, "s") }
            }
            #expect(senders == [
                "15550783881 16505551234 Sheena Nelson true", "15550783881 5215512345678 Lupita Hernández true",
                "56223456789 56987654321 Pedro Morales true",
            ])
            let statuses = try FrontFixture.fixture("status-only")
            let none = try await post(statuses, signature: FrontFixture.signature(statuses))
            #expect(none.status == 200)
            #expect(none.json?["jobs"] == 0)
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs") == 3)
        }
    }

    @Test("the OpenAPI document and the metrics are served; /readyz knows the schema")
    func documents() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            let document = try await f.request("GET", "/openapi.json")
            #expect(document.status == 200)
            #expect(document.json?["openapi"] == "3.1.0")
            #expect(try await f.request("GET", "/readyz").status == 200)
            _ = try await f.upsert(f.payload("+16505550106"), as: nil)
            let metrics = try await f.request("GET", "/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.text.contains(#"upsert_http_requests_total{route="upsert",status="401"} 1"#), "\(metrics.text.prefix(2000))")
            #expect(metrics.text.contains("upsert_http_request_duration_seconds_bucket"))
        }
    }

    @Test("SIGTERM answers the requests waiting for their jobs at once (202, the job kept), not after --wait")
    func sigtermEndsWaits() async throws {
        try await FrontFixture.with(wait: 60, worker: false) { f, server in
            // Failures become nil, not errors: an error would cancel the other requests, and
            // cancelling URLSession's requests can deadlock FoundationNetworking on Linux.
            let answers = Task {
                await withTaskGroup(of: FrontFixture.Answer?.self) { group in
                    for n in 0..<5 {
                        group.addTask { try? await f.upsert(f.payload("+1650555700\(n)"), as: f.orgA, timeout: 90) }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
            }
            // Every request has its job and waits for it (no worker runs).
            let waiting = try await eventually(timeout: .seconds(20)) {
                (try? await f.count("SELECT count(*)::int FROM queue.jobs")) == 5
            }
            try #require(waiting)
            try await Task.sleep(for: .milliseconds(300))
            let (status, took) = await server.signalAndWait(SIGTERM, timeout: .seconds(30))
            #expect(status == 0, "\(server.outputText.suffix(2000))")
            #expect(took < .seconds(5), "serve took \(took) to exit with requests waiting (--wait 60)")
            let answered = await answers.value.compactMap { $0 }
            #expect(answered.map(\.status) == Array(repeating: 202, count: 5))
            let ids = answered.compactMap { $0.json?["job_id"]?.intValue }.map(Int64.init)
            #expect(ids.count == 5)
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs WHERE id = ANY(\(ids)::bigint[]) AND state = 'ready'") == 5)
        }
    }

    @Test("SIGTERM finishes a request in flight: its body, sent after the signal, is read, answered and its job kept")
    func sigtermFinishesInFlight() async throws {
        try await FrontFixture.with(worker: false) { f, server in
            let body = f.payload("+16505557100").jsonText
            let connection = try RawConnection(port: f.port)
            try connection.send(
                "POST /api/public/customer/upsert/info HTTP/1.1\r\nHost: test\r\nx-api-key: \(f.orgA.key)\r\n"
                    + "Content-Type: application/json\r\nPrefer: respond-async\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
            try await Task.sleep(for: .milliseconds(300))
            server.signal(SIGTERM)
            try await Task.sleep(for: .milliseconds(700))
            #expect(server.isRunning, "serve exited with a request in flight")
            try connection.send(body)
            let answer = connection.readAll()
            #expect(answer.hasPrefix("HTTP/1.1 202"), "\(answer.prefix(300))")
            #expect(await server.wait(timeout: .seconds(10)) == 0, "\(server.outputText.suffix(2000))")
            #expect(try await f.count("SELECT count(*)::int FROM queue.jobs WHERE payload->>'contact_phone_number' = '+16505557100'") == 1)
        }
    }

    @Test("SIGTERM under load: exit 0, and every request answered 202 has its job")
    func sigtermUnderLoad() async throws {
        try await FrontFixture.with(worker: false) { f, server in
            let pid = server.pid
            let accepted = try await withThrowingTaskGroup(of: Int?.self) { group in
                for n in 0..<300 {
                    group.addTask {
                        if n == 150 { kill(pid, SIGTERM) }
                        let answer = try? await f.upsert(
                            f.payload("+1650555\(String(format: "%04d", n))"), as: f.orgA,
                            headers: ["Prefer": "respond-async"])
                        guard let answer, answer.status == 202 else { return nil }
                        return answer.json?["job_id"]?.intValue
                    }
                }
                var ids: [Int] = []
                for try await id in group { if let id { ids.append(id) } }
                return ids
            }
            #expect(await server.wait(timeout: .seconds(15)) == 0, "\(server.outputText.suffix(2000))")
            #expect(!accepted.isEmpty)
            let stored = try await f.count("SELECT count(*)::int FROM queue.jobs WHERE id = ANY(\(accepted.map(Int64.init))::bigint[])")
            #expect(stored == accepted.count)
        }
    }
}

@Suite("WhatsApp notifications become jobs")
struct WhatsAppPayloadTests {
    @Test("text, image and interactive messages each give their sender's job; statuses give none", arguments: [
        ("text-message", ["15550783881 16505551234 Sheena Nelson"]),
        ("image-message", ["15550783881 56961234567 Pablo Morales"]),
        ("interactive-reply", ["15550783881 5541987654321 João Silva"]),
        ("status-only", []),
    ])
    func payloads(fixture: String, expected: [String]) throws {
        let notification = try JSONValue.parse(Array(FrontFixture.fixture(fixture)))
        let jobs = WhatsAppWebhook.payloads(notification).map { payload in
            [payload["channel_phone_number"], payload["contact_phone_number"], payload["contact_name"]]
                .map { $0?.stringValue ?? "-" }.joined(separator: " ")
        }
        #expect(jobs == expected)
        for payload in WhatsAppWebhook.payloads(notification) { #expect(payload["channel"] == "whatsapp") }
    }

    @Test("a signature is checked over the raw bytes with the app secret")
    func signatures() {
        let body = Data(#"{"object":"whatsapp_business_account"}"#.utf8)
        let good = FrontFixture.signature(body)
        #expect(WhatsAppWebhook.isSigned(body, header: good, secret: FrontFixture.appSecret))
        #expect(!WhatsAppWebhook.isSigned(body, header: good, secret: "other"))
        #expect(!WhatsAppWebhook.isSigned(body + Data(" ".utf8), header: good, secret: FrontFixture.appSecret))
        #expect(!WhatsAppWebhook.isSigned(body, header: nil, secret: FrontFixture.appSecret))
        #expect(!WhatsAppWebhook.isSigned(body, header: "sha256=zz", secret: FrontFixture.appSecret))
    }
}
