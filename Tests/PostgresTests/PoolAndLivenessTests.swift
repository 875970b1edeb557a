import Foundation
import Postgres
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A TCP port that accepts connections (the kernel completes the handshake) and never says a
/// word: a libpq connection to it fails only when `connect_timeout` runs out, like a server
/// host that is up but whose PostgreSQL hangs.
final class SilentServer: Sendable {
    let socket: Int32
    let port: Int

    init() throws {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, bound == 0, listen(fd, 64) == 0 else {
            throw TestSetupError(message: "cannot open a listening socket")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.socket = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(socket) }
}

@Suite("Connection pool and session liveness")
struct PoolAndLivenessTests {
    @Test("connections that fail to open while others wait never strand a waiter")
    func failedOpensWakeWaiters() async throws {
        let silent = try SilentServer()
        let configuration = try PostgresConfiguration(
            "host=127.0.0.1 port=\(silent.port) dbname=nowhere user=nobody connect_timeout=2")
        // The acquire timeout is far beyond the test's deadline: only the fix ends the waits.
        let pool = PostgresConnectionPool(configuration: configuration, size: 2, acquireTimeout: .seconds(300))
        let ended = Counter()
        let failedToOpen = Counter()
        for _ in 0..<6 {
            Task {
                do {
                    _ = try await pool.withConnection { _ in 1 }
                } catch let error as PostgresError where error.code == .connection {
                    failedToOpen.add()
                } catch {}
                ended.add()
            }
        }
        // Two at a time, 2 s each: three rounds. Waiters that were stranded never end.
        let allEnded = await eventually(timeout: .seconds(20)) { ended.count == 6 }
        #expect(allEnded, "\(6 - ended.count) caller(s) still waiting")
        #expect(failedToOpen.count == 6, "every caller saw its own connection failure")
        #expect(await pool.openCount == 0)
        #expect(await pool.waitingCount == 0)
    }

    @Test("a caller waits at most the acquire timeout for a connection")
    func acquireTimeout() async throws {
        let pool = PostgresConnectionPool(
            configuration: try TestDatabase.serverConfiguration(), size: 1, acquireTimeout: .milliseconds(300))
        let holding = Counter()
        let holder = Task {
            try await pool.withConnection { c in
                holding.add()
                _ = try c.query("SELECT pg_sleep(2)")
            }
        }
        // The holder has the pool's only connection (opening it may take a while on a busy
        // machine; a fixed pause let the second caller get there first once).
        #expect(await eventually(timeout: .seconds(20)) { holding.count == 1 })
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) { try await pool.withConnection { _ in 1 } }
        #expect(error?.code == .poolTimeout)
        #expect(error?.isTransient == true)
        #expect(ContinuousClock.now - started < .seconds(1.5))
        try await holder.value
        #expect(try await pool.withConnection { c in try c.query("SELECT 1 AS one")[0].decode(Int.self, "one") } == 1)
        await pool.close()
    }

    @Test("liveness settings reach the server, and an operator's own options win")
    func livenessSettings() async throws {
        let server = try TestDatabase.serverConfiguration()
        let liveness = PostgresLiveness(
            deadPeerTimeout: .seconds(9), statementTimeout: .seconds(7), idleInTransactionTimeout: .seconds(5))
        let connection = try await PostgresConnection.connect(server.with(liveness: liveness))
        let settings = try await connection.run { c in
            try c.query(
                """
                SELECT current_setting('statement_timeout') AS statement, current_setting('idle_in_transaction_session_timeout') AS idle,
                       current_setting('tcp_keepalives_idle') AS keepalive, current_setting('tcp_user_timeout') AS user_timeout,
                       current_setting('TimeZone') AS zone
                """)[0]
        }
        #expect(try settings.decode(String.self, "statement") == "7s")
        #expect(try settings.decode(String.self, "idle") == "5s")
        #expect(try settings.decode(String.self, "keepalive") == "3")
        #expect(try settings.decode(String.self, "user_timeout") == "9000")
        #expect(try settings.decode(String.self, "zone") == "UTC")
        #expect(server.with(liveness: liveness).options["keepalives_idle"] == "3")

        let own = server.with("options", "-c statement_timeout=1234").with("keepalives_idle", "42").with(liveness: liveness)
        #expect(own.options["keepalives_idle"] == "42")
        let ownConnection = try await PostgresConnection.connect(own)
        let statement = try await ownConnection.run { c in
            try c.query("SELECT current_setting('statement_timeout') AS s")[0].decode(String.self, "s")
        }
        #expect(statement == "1234ms")
    }

    @Test("a call past its deadline is cancelled on the server, and the connection stays usable")
    func callDeadline() async throws {
        var configuration = try TestDatabase.serverConfiguration()
        configuration.callTimeout = .milliseconds(500)
        let connection = try await PostgresConnection.connect(configuration)
        let started = ContinuousClock.now
        let error = await #expect(throws: PostgresError.self) {
            try await connection.run { c in try c.query("SELECT pg_sleep(10)") }
        }
        #expect(error?.sqlState == .queryCanceled)
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await connection.run { c in try c.query("SELECT 2 AS two")[0].decode(Int.self, "two") } == 2)
    }

    @Test("every call has its own deadline: a long call after quick ones, and after a pause, is cancelled on time")
    func callDeadlineAfterOtherCalls() async throws {
        var configuration = try TestDatabase.serverConfiguration()
        configuration.callTimeout = .milliseconds(500)
        let connection = try await PostgresConnection.connect(configuration)
        // Quick calls for 300 ms, then a long one: the check set by the first call (due at
        // 500 ms) finds the long call's deadline later and must look again then.
        for _ in 0..<6 {
            _ = try await connection.run { c in try c.query("SELECT 1 AS one") }
            try await Task.sleep(for: .milliseconds(50))
        }
        for pause in [Duration.zero, .milliseconds(800)] {
            // The second time, a quick call and a pause: no call runs when that call's check
            // comes, and the next call must set a check of its own.
            if pause > .zero {
                _ = try await connection.run { c in try c.query("SELECT 1 AS one") }
                try await Task.sleep(for: pause)
            }
            let started = ContinuousClock.now
            let error = await #expect(throws: PostgresError.self) {
                try await connection.run { c in try c.query("SELECT pg_sleep(10)") }
            }
            let took = ContinuousClock.now - started
            #expect(error?.sqlState == .queryCanceled)
            #expect(took >= .milliseconds(450) && took < .seconds(5), "cancelled after \(took)")
        }
        #expect(try await connection.run { c in try c.query("SELECT 2 AS two")[0].decode(Int.self, "two") } == 2)
    }
}
