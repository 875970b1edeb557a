import Foundation
import HTTPTypes
import Hummingbird
import JSON
import JobQueue
import NIOCore

/// The live page of `serve` (docs/operations.md, "The live page"): `GET /dashboard`, its data
/// at `GET /dashboard/data.json` and the actions `POST /dashboard/jobs/{id}/retry|cancel`.
/// Off (404) unless `UPSERT_ADMIN_TOKEN` is set; see ``AdminSessions`` for how it is guarded.
extension APIFront {
    func addDashboard(to router: Router<BasicRequestContext>) {
        router.get("/dashboard") { request, _ in
            await self.measured("dashboard") { self.dashboardPage(request) }
        }
        router.get("/dashboard/app.js") { _, _ in Self.asset(DashboardPage.script, type: "text/javascript; charset=utf-8") }
        router.get("/dashboard/app.css") { _, _ in Self.asset(DashboardPage.style, type: "text/css; charset=utf-8") }
        router.post("/dashboard/login") { request, _ in
            await self.measured("dashboard_login") { await self.login(request) }
        }
        router.post("/dashboard/logout") { request, _ in
            await self.measured("dashboard_logout") { self.logout(request) }
        }
        router.get("/dashboard/data.json") { request, _ in
            await self.measured("dashboard_data") { try await self.dashboardData(request) }
        }
        router.post("/dashboard/jobs/{id}/{action}") { request, context in
            await self.measured("dashboard_action") {
                try await self.dashboardAction(
                    request, id: context.parameters.get("id"), action: context.parameters.get("action"))
            }
        }
    }

    static func dashboardOff() -> Response {
        error(404, "not_found", "the dashboard is off; set UPSERT_ADMIN_TOKEN to turn it on")
    }

    func dashboardPage(_ request: Request) -> Response {
        guard let admin else { return Self.dashboardOff() }
        switch admin.access(of: request) {
        case .denied: return Self.html(DashboardPage.login(failed: false), status: .unauthorized)
        case .bearer: return Self.html(DashboardPage.page(csrfToken: ""))
        case .session(let session): return Self.html(DashboardPage.page(csrfToken: admin.csrfToken(for: session)))
        }
    }

    /// The login form's POST: `token=<the admin token>`, form-encoded. Right: a session cookie
    /// and 303 to the page. Wrong: the form again, 401, after a second (a guess costs time).
    func login(_ request: Request) async -> Response {
        guard let admin else { return Self.dashboardOff() }
        guard AdminSessions.isSameOrigin(request) else { return Self.error(403, "forbidden", "cross-origin login refused") }
        var token = ""
        if case .success(let body) = await Self.readBody(request, limit: 4096) {
            token = Self.formField("token", in: String(decoding: body, as: UTF8.self)) ?? ""
        }
        guard admin.isToken(token) else {
            logger.warning("dashboard login refused")
            try? await Task.sleep(for: .seconds(1))
            return Self.html(DashboardPage.login(failed: true), status: .unauthorized)
        }
        return Self.toPage(settingSession: admin.newSession())
    }

    func logout(_ request: Request) -> Response {
        guard admin != nil else { return Self.dashboardOff() }
        guard AdminSessions.isSameOrigin(request) else { return Self.error(403, "forbidden", "cross-origin request refused") }
        return Self.toPage(settingSession: nil)
    }

    func dashboardData(_ request: Request) async throws -> Response {
        guard let admin else { return Self.dashboardOff() }
        guard admin.access(of: request) != .denied else { return Self.adminUnauthorized() }
        let overview = try await pool.withConnection { connection in try QueueOverview.read(on: connection).json }
        var response = Self.json(overview)
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// Retry (a failed or cancelled job) or cancel (a ready or running one): 200 with the job's
    /// state after it, 409 when the job is not in a state the action applies to.
    func dashboardAction(_ request: Request, id: String?, action: String?) async throws -> Response {
        guard let admin else { return Self.dashboardOff() }
        let access = admin.access(of: request)
        guard access != .denied else { return Self.adminUnauthorized() }
        guard admin.mayAct(request, access: access) else {
            return Self.error(403, "forbidden", "a missing or wrong X-CSRF-Token, or a request from another origin")
        }
        guard let id = id.flatMap(Int64.init), id > 0 else { return Self.error(404, "not_found", "no such job") }
        guard action == "retry" || action == "cancel" else { return Self.error(404, "not_found", "no such action") }
        let (done, state) = try await pool.withConnection { connection in
            let done = action == "retry"
                ? try QueueAdmin.retry(job: id, on: connection) : try QueueAdmin.cancel(job: id, on: connection)
            let state = try connection.query("SELECT state FROM queue.jobs WHERE id = \(id)").first?
                .decode(String.self, "state")
            return (done, state)
        }
        guard let state else { return Self.error(404, "not_found", "no such job") }
        logger.notice("dashboard action", metadata: ["action": "\(action ?? "")", "job": "\(id)", "done": "\(done)"])
        guard done else {
            return Self.error(409, "conflict", "job \(id) is \(state); \(action ?? "") does not apply to it")
        }
        return Self.json(["id": .number(JSONNumber(Int(id))), "state": .string(state)])
    }

    /// 303 to the page, setting the session cookie (`nil` clears it).
    static func toPage(settingSession session: String?) -> Response {
        var response = Response(status: .seeOther, headers: [.location: "/dashboard", .cacheControl: "no-store"])
        response.setCookie(AdminSessions.cookie(session))
        return response
    }

    static func adminUnauthorized() -> Response {
        var response = error(401, "unauthorized", "log in at /dashboard or send Authorization: Bearer <admin token>")
        response.headers[.cacheControl] = "no-store"
        return response
    }

    /// An HTML page with the headers that keep it to itself: no inline script, no framing, no
    /// caching, no referrer to other sites. (`no-referrer` would make browsers send
    /// `Origin: null` with the page's own form posts, which the origin check refuses.)
    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                .contentSecurityPolicy:
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                .xContentTypeOptions: "nosniff", .referrerPolicy: "same-origin",
            ],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: type, .cacheControl: "no-cache", .xContentTypeOptions: "nosniff"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// The value of `name` in an `application/x-www-form-urlencoded` body.
    static func formField(_ name: String, in body: String) -> String? {
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
        return nil
    }
}
