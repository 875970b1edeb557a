import Foundation
@testable import HTTPFront
import JSON
import Postgres
import TestSupport
import Testing

/// The live page's guard and data, over HTTP against a running `serve` (the browser's view of
/// it is scripts/browser-tests).
@Suite("The live page (/dashboard)")
struct DashboardTests {
    @Test("without UPSERT_ADMIN_TOKEN the page, its data and its actions are 404")
    func offWithoutToken() async throws {
        try await FrontFixture.with(worker: false) { f, _ in
            for (method, path) in [("GET", "/dashboard"), ("GET", "/dashboard/data.json"), ("POST", "/dashboard/login"),
                                   ("POST", "/dashboard/jobs/1/retry")] {
                let answer = try await f.request(method, path, headers: ["Authorization": "Bearer \(FrontFixture.adminToken)"])
                #expect(answer.status == 404, "\(method) \(path)")
                #expect(answer.json?["code"] == "not_found")
            }
        }
    }

    @Test("login: a wrong token is 401 without a cookie; the right one a Secure, HttpOnly, SameSite=Strict session that opens the data")
    func login() async throws {
        try await FrontFixture.with(worker: false, admin: true) { f, _ in
            let anonymous = try await f.request("GET", "/dashboard")
            #expect(anonymous.status == 401)
            #expect(anonymous.text.contains("name=\"token\""))
            #expect(anonymous.headers["content-security-policy"]?.contains("script-src 'self'") == true)
            #expect(try await f.request("GET", "/dashboard/data.json").status == 401)

            let wrong = try await f.login(token: FrontFixture.adminToken + "x")
            #expect(wrong.status == 401)
            #expect(wrong.headers["set-cookie"] == nil)

            let right = try await f.login(token: FrontFixture.adminToken)
            #expect(right.status == 303)
            #expect(right.headers["location"] == "/dashboard")
            let cookie = try #require(right.headers["set-cookie"])
            for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/dashboard", "Max-Age=28800"] {
                #expect(cookie.contains(attribute), "\(cookie) lacks \(attribute)")
            }
            #expect(!cookie.contains(FrontFixture.adminToken))
            let session = try #require(cookie.split(separator: ";").first.map(String.init))
            let page = try await f.request("GET", "/dashboard", headers: ["Cookie": session])
            #expect(page.status == 200)
            #expect(page.text.contains("name=\"csrf-token\" content=\"") && page.text.contains("/dashboard/app.js"))
            #expect(try await f.request("GET", "/dashboard/data.json", headers: ["Cookie": session]).status == 200)

            // A cookie that was not made with this token, or has expired, opens nothing.
            let value = String(session.dropFirst("upsert_admin=".count))
            let parts = value.split(separator: ".")
            let forged = "upsert_admin=\(parts[0]).\(String(repeating: "0", count: parts[1].count))"
            let expired = "upsert_admin=\(Int(Date().timeIntervalSince1970) - 1).\(parts[1])"
            let extended = "upsert_admin=\(Int(parts[0])! + 3600).\(parts[1])"
            for bad in [forged, expired, extended, "upsert_admin=\(FrontFixture.adminToken)"] {
                #expect(try await f.request("GET", "/dashboard/data.json", headers: ["Cookie": bad]).status == 401, "\(bad)")
            }
            #expect(
                try await f.request("GET", "/dashboard/data.json", headers: ["Authorization": "Bearer wrong-token"]).status
                    == 401)
        }
    }

    @Test("a session lasts eight hours, belongs to its token, and its expiry cannot be moved")
    func sessions() {
        let sessions = AdminSessions(token: FrontFixture.adminToken)
        let now = Date()
        let session = sessions.newSession(now: now)
        #expect(sessions.isValid(session: session, now: now))
        #expect(sessions.isValid(session: session, now: now.addingTimeInterval(8 * 3600 - 5)))
        #expect(!sessions.isValid(session: session, now: now.addingTimeInterval(8 * 3600 + 5)))
        #expect(!sessions.isValid(session: sessions.newSession(now: now.addingTimeInterval(-8 * 3600 - 5)), now: now))
        #expect(!AdminSessions(token: FrontFixture.adminToken + "2").isValid(session: session, now: now))
        #expect(sessions.isToken(FrontFixture.adminToken) && !sessions.isToken(FrontFixture.adminToken + " "))
        #expect(sessions.csrfToken(for: session) != sessions.csrfToken(for: sessions.newSession(now: now.addingTimeInterval(1))))
    }

    @Test("the data holds the database's numbers: counts, errors by code, failed and waiting jobs, finished per bucket")
    func data() async throws {
        try await FrontFixture.with(worker: false, admin: true) { f, _ in
            try await f.connection.run { c in
                try c.execute("INSERT INTO queue.jobs (queue, kind, payload) SELECT 'a', 'k', '{}' FROM generate_series(1, 7)")
                try c.execute(
                    """
                    INSERT INTO queue.jobs (queue, kind, payload, state, attempts, run_at, started_at, finished_at, last_error)
                    SELECT 'a', 'k', '{}', 'failed', 1, now() - interval '5 minutes', now() - interval '5 minutes',
                           now() - interval '5 minutes',
                           jsonb_build_object('status', 422, 'code', CASE WHEN n <= 2 THEN 'missing_fields' ELSE 'unknown_channel' END,
                                              'message', 'm' || n, 'details', '{}'::jsonb)
                    FROM generate_series(1, 5) n
                    """)
                try c.execute(
                    """
                    INSERT INTO queue.jobs (queue, kind, payload, state, attempts, run_at, started_at, finished_at, result)
                    SELECT 'b', 'k', '{}', 'succeeded', 1, now() - interval '61 seconds', now() - interval '60 seconds',
                           now() - interval '59 seconds', '{}'
                    FROM generate_series(1, 11)
                    """)
            }
            let data = try await f.adminData()
            let counts = Dictionary(
                uniqueKeysWithValues: (data["counts"]?.arrayValue ?? []).compactMap { row -> (String, Int)? in
                    guard case .string(let queue)? = row["queue"], case .string(let state)? = row["state"],
                        let jobs = row["jobs"]?.intValue
                    else { return nil }
                    return ("\(queue).\(state)", jobs)
                })
            #expect(counts == ["a.ready": 7, "a.failed": 5, "b.succeeded": 11])
            let codes = (data["top_error_codes"]?.arrayValue ?? []).map { "\($0["code"]!):\($0["jobs"]!)" }
            #expect(codes == ["\"unknown_channel\":3", "\"missing_fields\":2"])
            let failed = data["latest_failed"]?.arrayValue ?? []
            #expect(failed.count == 5)
            #expect(failed.first?["error"]?["message"] == "m5")
            #expect(data["longest_waiting"]?.arrayValue?.count == 7)
            let series = data["series"]?.arrayValue ?? []
            #expect(series.count == 30)
            #expect(series.compactMap { $0["finished"]?.intValue }.reduce(0, +) == 16)
            // Sampled where they finished: 11 jobs 59 s ago (2 s from due, 1 s running), 5 five minutes ago.
            #expect(series.compactMap { $0["sampled"]?.intValue }.filter { $0 > 0 }.sorted() == [5, 11])
            let sampled = series.filter { $0["sampled"]?.intValue == 11 }
            #expect(sampled.first?["latency_p99"]?.doubleValue.map { abs($0 - 2) < 0.01 } == true)
            #expect(sampled.first?["run_p99"]?.doubleValue.map { abs($0 - 1) < 0.01 } == true)
        }
    }

    @Test("an action needs the CSRF token and the page's own origin with a cookie, nothing more with the bearer token")
    func actions() async throws {
        try await FrontFixture.with(worker: false, admin: true) { f, _ in
            let (failed, ready) = try await f.connection.run { c in
                let failed = try c.query(
                    "INSERT INTO queue.jobs (payload, state, attempts, finished_at) VALUES ('{}', 'failed', 3, now()) RETURNING id"
                )[0].decode(Int64.self, "id")
                let ready = try c.query("INSERT INTO queue.jobs (payload) VALUES ('{}') RETURNING id")[0].decode(Int64.self, "id")
                return (failed, ready)
            }
            let login = try await f.login(token: FrontFixture.adminToken)
            let session = try #require(login.headers["set-cookie"]?.split(separator: ";").first.map(String.init))
            let page = try await f.request("GET", "/dashboard", headers: ["Cookie": session]).text
            let csrf = try #require(
                page.range(of: #"csrf-token" content="[0-9a-f]{64}"#, options: .regularExpression).map {
                    String(page[$0].suffix(64))
                })
            let origin = "http://127.0.0.1:\(f.port)"
            let state = { @Sendable (id: Int64) async throws -> String in
                try await f.connection.run { c in try c.query("SELECT state FROM queue.jobs WHERE id = \(id)")[0].decode(String.self) }
            }

            for headers in [
                ["Cookie": session],
                ["Cookie": session, "X-CSRF-Token": String(repeating: "0", count: 64)],
                ["Cookie": session, "X-CSRF-Token": csrf, "Origin": "https://evil.example"],
                ["Cookie": session, "X-CSRF-Token": csrf, "Origin": "null"],
            ] {
                let refused = try await f.request("POST", "/dashboard/jobs/\(failed)/retry", headers: headers)
                #expect(refused.status == 403, "\(headers)")
            }
            #expect(try await f.request("POST", "/dashboard/jobs/\(failed)/retry", headers: ["X-CSRF-Token": csrf]).status == 401)
            #expect(try await state(failed) == "failed")

            let retried = try await f.request(
                "POST", "/dashboard/jobs/\(failed)/retry", headers: ["Cookie": session, "X-CSRF-Token": csrf, "Origin": origin])
            #expect(retried.status == 200, "\(retried.text)")
            #expect(retried.json?["state"] == "ready")
            #expect(try await f.count("SELECT attempts FROM queue.jobs WHERE id = \(failed)") == 0)
            // Retrying a ready job does not apply: 409, nothing changes.
            let again = try await f.request(
                "POST", "/dashboard/jobs/\(failed)/retry", headers: ["Cookie": session, "X-CSRF-Token": csrf])
            #expect(again.status == 409)
            #expect(again.json?["code"] == "conflict")

            let bearer = ["Authorization": "Bearer \(FrontFixture.adminToken)"]
            let cancelled = try await f.request("POST", "/dashboard/jobs/\(ready)/cancel", headers: bearer)
            #expect(cancelled.status == 200)
            #expect(try await state(ready) == "cancelled")
            #expect(try await f.request("POST", "/dashboard/jobs/999999/cancel", headers: bearer).status == 404)
            #expect(try await f.request("POST", "/dashboard/jobs/\(ready)/delete", headers: bearer).status == 404)
        }
    }
}

extension FrontFixture {
    /// The login form's POST.
    func login(token: String) async throws -> Answer {
        let body = "token=" + (token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        return try await request(
            "POST", "/dashboard/login", headers: ["Content-Type": "application/x-www-form-urlencoded"], body: Data(body.utf8))
    }

    /// `GET /dashboard/data.json` with the bearer token.
    func adminData() async throws -> JSONValue {
        let answer = try await request(
            "GET", "/dashboard/data.json", headers: ["Authorization": "Bearer \(FrontFixture.adminToken)"])
        #expect(answer.status == 200, "\(answer.text)")
        return try #require(answer.json)
    }
}
