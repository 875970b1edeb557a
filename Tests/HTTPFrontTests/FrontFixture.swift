import Crypto
import ContactDomain
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

/// Two organizations, a running `upsert-worker serve` (the real binary) and, when asked, a
/// worker, on a scratch database.
struct FrontFixture: Sendable {
    static let appSecret = "test-app-secret"
    static let verifyToken = "test-verify-token"
    static let adminToken = "test-admin-token-0123456789"

    struct Org: Sendable {
        let client = UUID()
        let key = "key-\(UUID().uuidString)"
        let channelNumbers: [String]
    }

    let orgA = Org(channelNumbers: ["+15550783881", "+56223456789"])
    let orgB = Org(channelNumbers: ["+56229998877"])
    let port: Int
    let database: PostgresConfiguration
    let connection: PostgresConnection

    /// Runs `body` with the server started (`--wait` as given, the live page on when `admin`)
    /// and, if `worker`, a worker.
    static func with(
        wait: Double = 5, worker: Bool = true, admin: Bool = false,
        _ body: @Sendable (FrontFixture, ChildProcess) async throws -> Void
    ) async throws {
        try await TestDatabase.withScratchConnection { database, connection in
            let port = try freePort()
            let fixture = FrontFixture(port: port, database: database, connection: connection)
            try await connection.run { c in
                for org in [fixture.orgA, fixture.orgB] {
                    try c.execute("INSERT INTO crm.clients (id, name) VALUES (\(org.client), 'Org')")
                    try c.execute(
                        "INSERT INTO crm.api_keys (client_id, key_hash) VALUES (\(org.client), encode(sha256(convert_to(\(org.key), 'UTF8')), 'hex'))")
                    for number in org.channelNumbers {
                        try c.execute(
                            "INSERT INTO crm.channels (client_id, platform, phone_number) VALUES (\(org.client), 'whatsapp', \(number))")
                    }
                }
            }
            let server = try ChildProcess(
                TestBinaries.upsertWorker,
                ["serve", "--port", String(port), "--wait", String(wait), "--database-url", database.connectionString,
                 "--log-level", "warning"],
                environment: [
                    "WHATSAPP_APP_SECRET": appSecret, "WHATSAPP_VERIFY_TOKEN": verifyToken,
                    "UPSERT_ADMIN_TOKEN": admin ? adminToken : "",
                ])
            let up = try await eventually(timeout: .seconds(60)) {
                (try? await fixture.request("GET", "/healthz", timeout: 2).status) == 200
            }
            try #require(up, "serve did not start (running: \(server.isRunning)): \(server.outputText.suffix(2000))")
            var jobWorker: JobWorker?
            var running: Task<Void, any Error>?
            if worker {
                var configuration = WorkerConfiguration()
                configuration.pollInterval = .milliseconds(200)
                let started = JobWorker(
                    configuration: configuration, database: database, handlers: [ContactUpsertHandler()],
                    logger: TestDatabase.quietLogger)
                jobWorker = started
                running = Task { try await started.run() }
            }
            do {
                try await body(fixture, server)
            } catch {
                jobWorker?.stop()
                server.signal(SIGKILL)
                throw error
            }
            jobWorker?.stop()
            try await running?.value
            server.signal(SIGTERM)
            _ = await server.wait(timeout: .seconds(10))
        }
    }

    struct Answer: Sendable {
        let status: Int
        let headers: [String: String]
        let body: Data
        var json: JSONValue? { try? JSONValue.parse(Array(body)) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// One HTTP request to the server.
    func request(
        _ method: String, _ path: String, headers: [String: String] = [:], body: Data? = nil, timeout: Double = 30
    ) async throws -> Answer {
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { throw URLError(.badURL) }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = timeout
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = body
        let (data, response) = try await Self.session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var fields: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
        }
        return Answer(status: http.statusCode, headers: fields, body: data)
    }

    /// The tests' HTTP client: no cookie jar (a test sends the cookies it means to) and no
    /// redirects followed (a test sees the 303 and its headers).
    static let session = URLSession(configuration: sessionConfiguration, delegate: NoRedirects(), delegateQueue: nil)

    private static var sessionConfiguration: URLSessionConfiguration {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        return configuration
    }

    /// POST to the upsert endpoint as `org`.
    func upsert(
        _ payload: JSONValue, as org: Org?, headers: [String: String] = [:], timeout: Double = 30
    ) async throws -> Answer {
        var all = ["Content-Type": "application/json"]
        if let org { all["x-api-key"] = org.key }
        for (name, value) in headers { all[name] = value }
        return try await request(
            "POST", "/api/public/customer/upsert/info", headers: all, body: Data(payload.jsonText.utf8), timeout: timeout)
    }

    func payload(_ phone: String, name: String = "Ana", channel: String = "+15550783881") -> JSONValue {
        ["channel": "whatsapp", "channel_phone_number": .string(channel), "contact_phone_number": .string(phone),
         "contact_name": .string(name)]
    }

    func count(_ query: PostgresQuery) async throws -> Int {
        try await connection.run { c in try c.query(query)[0].decode(Int.self) }
    }

    /// The body signed as Meta signs it.
    static func signature(_ body: Data, secret: String = appSecret) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        return "sha256=" + code.map { String(format: "%02x", $0) }.joined()
    }

    static func fixture(_ name: String) throws -> Data {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("whatsapp/\(name).json")
        return try Data(contentsOf: url)
    }
}

/// Hands a redirect back to the caller instead of following it.
final class NoRedirects: NSObject, URLSessionTaskDelegate {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}

extension JSONValue {
    /// A whole number, for the tests' reading of ids.
    var intValue: Int? {
        if case .number(let number) = self { return number.intValue }
        return nil
    }

    /// A number, for the tests' reading of durations.
    var doubleValue: Double? {
        if case .number(let number) = self { return number.doubleValue }
        return nil
    }
}

/// A TCP port nobody listens on now: the kernel's choice for a socket bound to port 0.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EMFILE) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A plain TCP connection to the server, for requests sent in parts (URLSession sends a
/// request whole).
final class RawConnection {
    private let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == bytes.count else {
            throw POSIXError(.EPIPE)
        }
    }

    /// Everything the server sends until it closes the connection (or `seconds` pass).
    func readAll(seconds: Int = 10) -> String {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
