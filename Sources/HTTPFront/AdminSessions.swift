import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// Who may open the live page (`GET /dashboard`) and act on jobs from it: whoever knows the
/// admin token (`UPSERT_ADMIN_TOKEN`), shown either as `Authorization: Bearer <token>` or
/// through a session cookie that the login form sets.
///
/// Sessions are stateless: the cookie is `<expiry>.<HMAC-SHA256(token, "session " + expiry)>`,
/// so every `serve` replica that has the same token accepts it, and changing the token ends
/// every session at once. A cookie-authenticated POST also needs the page's CSRF token
/// (`HMAC-SHA256(token, "csrf " + session)`, in the `X-CSRF-Token` header) and, when the
/// browser sends one, an `Origin` equal to the page's own; the cookie is `SameSite=Strict`,
/// `HttpOnly`, `Secure` and scoped to `/dashboard`. A bearer request carries no ambient
/// credential, so it needs no CSRF token.
struct AdminSessions: Sendable, CustomStringConvertible {
    /// How the request proved itself.
    enum Access: Equatable {
        case denied
        case bearer
        case session(String)
    }

    static let cookieName = "upsert_admin"
    /// How long a login lasts.
    static let lifetime = 8 * 3600

    /// The token's bytes: the key of the sessions' and CSRF tokens' HMACs.
    private let key: [UInt8]
    private let tokenDigest: [UInt8]

    init(token: String) {
        self.key = Array(token.utf8)
        self.tokenDigest = Array(SHA256.hash(data: Data(token.utf8)))
    }

    /// Never the token, wherever the value is printed.
    var description: String { "AdminSessions(token: redacted)" }

    /// Whether `candidate` is the token. Compares digests, so the time taken says nothing of
    /// the token's length or content.
    func isToken(_ candidate: String) -> Bool {
        APIFront.constantTimeEqual(Array(SHA256.hash(data: Data(candidate.utf8))), tokenDigest)
    }

    /// A new session's cookie value, valid for ``lifetime`` seconds from `now`.
    func newSession(now: Date = Date()) -> String {
        let expiry = Int(now.timeIntervalSince1970) + Self.lifetime
        return "\(expiry).\(mac("session \(expiry)"))"
    }

    /// Whether `session` is a cookie value this token made and it has not expired.
    func isValid(session: String, now: Date = Date()) -> Bool {
        let parts = session.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let expiry = Int(parts[0]), expiry > Int(now.timeIntervalSince1970) else { return false }
        return APIFront.constantTimeEqual(String(parts[1]), mac("session \(expiry)"))
    }

    /// The CSRF token of a session: what the page sends back with each action.
    func csrfToken(for session: String) -> String { mac("csrf \(session)") }

    /// How `request` proves itself, if it does.
    func access(of request: Request) -> Access {
        if let authorization = request.headers[.authorization] {
            let prefix = "bearer "
            guard authorization.lowercased().hasPrefix(prefix) else { return .denied }
            return isToken(String(authorization.dropFirst(prefix.count))) ? .bearer : .denied
        }
        if let session = request.cookies[Self.cookieName]?.value, isValid(session: session) { return .session(session) }
        return .denied
    }

    /// Whether a state-changing request may go ahead: a bearer one always; a session one only
    /// with its CSRF token and from the page's own origin.
    func mayAct(_ request: Request, access: Access) -> Bool {
        switch access {
        case .denied: return false
        case .bearer: return true
        case .session(let session):
            guard let sent = request.headers[.csrfToken], APIFront.constantTimeEqual(sent, csrfToken(for: session))
            else { return false }
            return Self.isSameOrigin(request)
        }
    }

    /// True when the request has no `Origin` (not sent by every browser on same-origin
    /// requests) or one whose host and port are the request's `Host`.
    static func isSameOrigin(_ request: Request) -> Bool {
        guard let origin = request.headers[.origin] else { return true }
        guard let host = request.head.authority else { return false }
        for scheme in ["http://", "https://"] where origin.lowercased() == scheme + host.lowercased() { return true }
        return false
    }

    /// The cookie that holds `session`; `nil` clears it.
    static func cookie(_ session: String?) -> Cookie {
        Cookie(
            name: cookieName, value: session ?? "", maxAge: session == nil ? 0 : lifetime, path: "/dashboard",
            secure: true, httpOnly: true, sameSite: .strict)
    }

    private static let hexDigits = Array("0123456789abcdef")

    private func mac(_ message: String) -> String {
        var hex = ""
        for byte in HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: key)) {
            hex.append(Self.hexDigits[Int(byte >> 4)])
            hex.append(Self.hexDigits[Int(byte & 0x0f)])
        }
        return hex
    }
}

extension HTTPField.Name {
    // Valid header tokens, fixed in the source: the initializer cannot fail for them.
    static let csrfToken = HTTPField.Name("X-CSRF-Token")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}
