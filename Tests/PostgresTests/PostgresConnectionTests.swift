import Foundation
import JSON
import TextForms
import Postgres
import TestSupport
import Synchronization
import Testing

@Suite("PostgreSQL layer against a real server")
struct PostgresConnectionTests {
    @Test("parameters round-trip through the server unchanged", arguments: [
        "plain", "ñandú, São Paulo, Łódź", "emoji 👩🏽‍💻🇨🇱", "quotes ' \" `$1` \\ backslash", "",
        "tab\tnewline\ncarriage\rreturn",
    ])
    func textRoundTrip(text: String) async throws {
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        let echoed = try await connection.run { c in
            try c.query("SELECT \(text)::text AS value, length(\(text)::text) AS length")[0]
        }
        #expect(try echoed.decode(String.self, "value") == text)
        #expect(try echoed.decode(Int.self, "length") == text.unicodeScalars.count)
    }

    @Test("a 1 MB text parameter round-trips")
    func largeText() async throws {
        let text = String(repeating: "ñ0123456789", count: 100_000)
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        let echoed = try await connection.run { c in try c.query("SELECT \(text)::text AS value")[0] }
        #expect(try echoed.decode(String.self, "value") == text)
    }

    @Test("NULLs, numbers, booleans, uuids, timestamps and jsonb round-trip")
    func typedRoundTrip() async throws {
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        let id = UUID()
        let when = Date(timeIntervalSince1970: 1_764_100_000.123456)
        let json: JSONValue = ["name": "María", "n": .number(JSONNumber(text: "123456789012345678901234567890.5")!),
                               "list": [1, true, nil, "x"], "nested": ["a": ["b": "c"]]]
        let row = try await connection.run { c in
            try c.query(
                """
                SELECT \(String?.none)::text AS null_text, \(Int64.max)::bigint AS big, \(Int32.min)::int AS small, \(PostgresNumeric("-12345678901234567890.000000001"))::numeric AS num,
                       \(true)::boolean AS flag, \(id)::uuid AS id, \(when)::timestamptz AS at, \(json)::jsonb AS doc,
                       \(0.1)::double precision AS dbl, \(["a", "b,c", "\"q\"", "back\\slash"])::text[] AS list
                """)[0]
        }
        #expect(try row.decode(String?.self, "null_text") == nil)
        #expect(throws: PostgresError.self) { try row.decode(String.self, "null_text") }
        #expect(try row.decode(Int64.self, "big") == Int64.max)
        #expect(try row.decode(Int32.self, "small") == Int32.min)
        #expect(try row.decode(PostgresNumeric.self, "num").text == "-12345678901234567890.000000001")
        #expect(try row.decode(Bool.self, "flag"))
        #expect(try row.decode(UUID.self, "id") == id)
        let at = try row.decode(Date.self, "at")
        #expect(abs(at.timeIntervalSince1970 - when.timeIntervalSince1970) < 0.000_002)
        #expect(try row.decode(JSONValue.self, "doc") == json)
        #expect(try row.decode(Double.self, "dbl") == 0.1)
        #expect(try row.decode(String.self, "list") == #"{a,"b,c","\"q\"","back\\slash"}"#)
    }

    @Test("timestamps parse in every offset form the server writes")
    func timestampForms() throws {
        let utc = try #require(TimestampText.parse("2026-11-25 20:06:08.5+00"))
        #expect(utc.timeIntervalSince1970 == 1_795_637_168.5)
        #expect(TimestampText.parse("2026-11-25 17:06:08.5-03")?.timeIntervalSince1970 == 1_795_637_168.5)
        #expect(TimestampText.parse("2026-11-26 01:36:08.5+05:30")?.timeIntervalSince1970 == 1_795_637_168.5)
        #expect(TimestampText.parse("2026-11-25T20:06:08.500000Z")?.timeIntervalSince1970 == 1_795_637_168.5)
        #expect(TimestampText.format(utc) == "2026-11-25T20:06:08.500000Z")
        #expect(TimestampText.parse("1969-12-31 23:59:59+00")?.timeIntervalSince1970 == -1)
        #expect(TimestampText.parse("yesterday") == nil)
    }

    @Test("array parameters of each element type round-trip, NULLs and escapes included")
    func arrayRoundTrip() async throws {
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        let texts: [String?] = ["a", nil, "b,c", "\"q\"", "back\\slash", "", "NULL", "ñ {x}"]
        let ids: [UUID?] = [UUID(), nil, UUID()]
        let plainIDs: [UUID] = [UUID(), UUID()]
        let bigs: [Int64] = [Int64.min, 0, Int64.max]
        let ints: [Int] = [-1, 0, 42]
        let flags: [Bool] = [true, false]
        let (textRows, idRows, row) = try await connection.run { c in
            (
                try c.query("SELECT t FROM unnest(\(texts)::text[]) WITH ORDINALITY u(t, o) ORDER BY o"),
                try c.query("SELECT t FROM unnest(\(ids)::uuid[]) WITH ORDINALITY u(t, o) ORDER BY o"),
                try c.query(
                    """
                    SELECT \(plainIDs)::uuid[]::text AS plain_ids, \(bigs)::bigint[]::text AS bigs,
                           \(ints)::int[]::text AS ints, \(flags)::boolean[]::text AS flags
                    """)[0]
            )
        }
        #expect(try textRows.map { try $0.decode(String?.self, "t") } == texts)
        #expect(try idRows.map { try $0.decode(UUID?.self, "t") } == ids)
        #expect(try row.decode(String.self, "plain_ids") == "{" + plainIDs.map(UUIDText.string).joined(separator: ",") + "}")
        #expect(try row.decode(String.self, "bigs") == "{-9223372036854775808,0,9223372036854775807}")
        #expect(try row.decode(String.self, "ints") == "{-1,0,42}")
        #expect(try row.decode(String.self, "flags") == "{t,f}")
    }

    @Test("a string holding NUL is refused before it reaches the server")
    func nulParameter() async throws {
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        await #expect(throws: PostgresError.self) {
            try await connection.run { c in try c.query("SELECT \("a\u{0}b")::text") }
        }
    }

    @Test("a server error carries its SQLSTATE, constraint and table")
    func serverError() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            let error = try await connection.run { c -> PostgresError in
                try c.executeScript("CREATE TABLE t (id int CONSTRAINT t_pkey PRIMARY KEY)")
                try c.execute("INSERT INTO t VALUES (\(1))")
                do {
                    try c.execute("INSERT INTO t VALUES (\(1))")
                } catch let error as PostgresError {
                    return error
                }
                throw TestSetupError(message: "the duplicate insert succeeded")
            }
            #expect(error.code == .server)
            #expect(error.sqlState == .uniqueViolation)
            #expect(error.constraint == "t_pkey")
            #expect(error.table == "t")
            #expect(!error.isTransient)
            #expect(error.detail?.contains("(id)=(1)") == true)
            #expect(!error.description.contains("(id)=(1)"), "row values stay out of log lines")

            let syntax = await #expect(throws: PostgresError.self) {
                try await connection.run { c in try c.query("SELEC 1") }
            }
            #expect(syntax?.sqlState == "42601")
        }
    }

    @Test("a terminated backend is reported as transient, and the next call reconnects")
    func reconnectAfterTermination() async throws {
        let configuration = try TestDatabase.serverConfiguration()
        let connection = try await PostgresConnection.connect(configuration)
        let admin = try await PostgresConnection.connect(configuration)
        let pid = try await connection.backendPID()
        try await admin.run { a in _ = try a.query("SELECT pg_terminate_backend(\(pid))") }
        #expect(try await backendGone(pid, admin: admin))
        let error = await #expect(throws: PostgresError.self) {
            try await connection.run { c in try c.query("SELECT 1") }
        }
        #expect(error?.isTransient == true)
        #expect(error?.code == .connection)
        let one = try await connection.run { c in try c.query("SELECT 1 AS one")[0].decode(Int.self, "one") }
        #expect(one == 1)
        #expect(await connection.reconnects == 1)
        #expect(try await connection.backendPID() != pid)
    }

    @Test("a connection lost inside a transaction fails the transaction and never continues outside it")
    func lostInsideTransaction() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            let admin = try await PostgresConnection.connect(configuration)
            try await connection.run { c in try c.executeScript("CREATE TABLE t (v int)") }
            let pid = try await connection.backendPID()
            await #expect(throws: PostgresError.self) {
                try await connection.run { c in
                    try await c.withTransaction { c in
                        try c.execute("INSERT INTO t VALUES (\(1))")
                        try await admin.run { a in _ = try a.query("SELECT pg_terminate_backend(\(pid))") }
                        #expect(try await backendGone(pid, admin: admin))
                        do { try c.execute("INSERT INTO t VALUES (\(2))") } catch {}
                        // The session is gone: this must not run in autocommit on a new session.
                        try c.execute("INSERT INTO t VALUES (\(3))")
                    }
                }
            }
            let count = try await connection.run { c in try c.query("SELECT count(*) AS n FROM t")[0].decode(Int.self, "n") }
            #expect(count == 0)
        }
    }

    @Test("transactions commit or roll back, and savepoints isolate one failure")
    func transactionsAndSavepoints() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            let values = try await connection.run { c -> [Int] in
                try c.executeScript("CREATE TABLE t (v int PRIMARY KEY)")
                try await c.withTransaction { c in
                    try c.execute("INSERT INTO t VALUES (\(1))")
                    try? await c.withSavepoint { c in
                        try c.execute("INSERT INTO t VALUES (\(2))")
                        try c.execute("INSERT INTO t VALUES (\(1))")  // fails: duplicate
                    }
                    try c.execute("INSERT INTO t VALUES (\(3))")
                }
                do {
                    try await c.withTransaction { c in
                        try c.execute("INSERT INTO t VALUES (\(4))")
                        throw TestSetupError(message: "abort")
                    }
                } catch is TestSetupError {}
                let stillInTransaction = c.inTransaction
                #expect(!stillInTransaction)
                return try c.query("SELECT v FROM t ORDER BY v").map { try $0.decode(Int.self, "v") }
            }
            #expect(values == [1, 3])
        }
    }

    @Test("statements sent ahead share the next round trip; their error stops it, and savepoints stay exact")
    func sentAhead() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            let values = try await connection.run { c -> [Int] in
                try c.executeScript("CREATE TABLE t (v int PRIMARY KEY)")
                // A statement sent ahead runs before the next one, in order.
                try c.sendAhead("INSERT INTO t VALUES (\(1))")
                #expect(try c.query("SELECT count(*)::int AS n FROM t")[0].decode(Int.self, "n") == 1)
                // Its error is the next statement's, and that statement does not run.
                try c.sendAhead("INSERT INTO t VALUES (\(1))")  // duplicate
                #expect(throws: PostgresError.self) { try c.execute("INSERT INTO t VALUES (\(2))") }
                // A savepoint whose body failed before any statement was never sent: the
                // transaction goes on; one whose body ran statements is rolled back to.
                try await c.withTransaction { c in
                    try? await c.withSavepoint { _ in throw TestSetupError(message: "before any statement") }
                    try c.execute("INSERT INTO t VALUES (\(3))")
                    try? await c.withSavepoint { c in
                        try c.execute("INSERT INTO t VALUES (\(4))")
                        try await c.withSavepoint { c in try c.execute("INSERT INTO t VALUES (\(5))") }
                        throw TestSetupError(message: "after two")
                    }
                    try await c.withSavepoint { c in try c.execute("INSERT INTO t VALUES (\(6))") }
                }
                // An empty transaction and a script after statements sent ahead.
                try await c.withTransaction { _ in }
                try c.sendAhead("INSERT INTO t VALUES (\(7))")
                try c.executeScript("INSERT INTO t VALUES (8)")
                let stillInTransaction = c.inTransaction
                #expect(!stillInTransaction)
                return try c.query("SELECT v FROM t ORDER BY v").map { try $0.decode(Int.self, "v") }
            }
            #expect(values == [1, 3, 6, 7, 8])
            // A transaction of two statements in a savepoint: three round trips, not six.
            let trips = try await connection.run { c -> Int in
                _ = try c.query("SELECT 1 AS warm")  // prepared already, like the worker's statements
                _ = try c.query("SELECT 2 AS warm")
                let before = c.roundTrips
                try await c.withTransaction { c in
                    try await c.withSavepoint { c in
                        _ = try c.query("SELECT 1 AS warm")  // BEGIN and SAVEPOINT ride with it
                        _ = try c.query("SELECT 2 AS warm")
                    }
                }  // RELEASE rides with COMMIT
                return c.roundTrips - before
            }
            #expect(trips == 3)
        }
    }

    @Test("rows kept from a statement sent ahead: read after the round trip that ran it, with COMMIT, or on their own; its error and a statement that never ran are told apart")
    func keptRows() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            try await connection.run { c in
                try c.executeScript("CREATE TABLE t (v int PRIMARY KEY)")
                func values(_ rows: PostgresRows) throws -> [Int] { try rows.map { try $0.decode(Int.self, "v") } }
                // Warm: every statement below prepared once, so the counts are the steady state's.
                for _ in 0..<2 {
                    try? await c.withTransaction { c in
                        let sent = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(1)) RETURNING v")
                        _ = try c.query("SELECT count(*)::int AS n FROM t")
                        _ = try c.rows(of: sent)
                        throw TestSetupError(message: "roll back")
                    }
                }

                // Kept rows are read after the statement that ran them, in the same round trip.
                var before = c.roundTrips
                let first = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(1)) RETURNING v")
                #expect(try c.query("SELECT count(*)::int AS n FROM t")[0].decode(Int.self, "n") == 1)
                #expect(try values(c.rows(of: first)) == [1])
                #expect(c.roundTrips - before == 1)
                // Read twice: the rows were handed over once.
                let again = #expect(throws: PostgresError.self) { try c.rows(of: first) }
                #expect(again?.code == .transactionAborted)

                // Not run yet: reading sends what waits, in one round trip.
                before = c.roundTrips
                let alone = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(2)) RETURNING v")
                #expect(try values(c.rows(of: alone)) == [2])
                #expect(c.roundTrips - before == 1)

                // In a transaction, a statement sent last rides with the COMMIT, and its rows
                // are there after it.
                before = c.roundTrips
                let last = try await c.withTransaction { c in
                    try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(3)) RETURNING v")
                }
                #expect(c.roundTrips - before == 1, "BEGIN, the insert and COMMIT in one round trip")
                #expect(try values(c.rows(of: last)) == [3])

                // Its own error is its own; a statement behind a failed one never ran; the
                // transaction is rolled back and what it kept is gone.
                var failed: PostgresConnection.AheadRows?
                var behind: PostgresConnection.AheadRows?
                let commitError = await #expect(throws: PostgresError.self) {
                    try await c.withTransaction { c in
                        _ = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(4)) RETURNING v")
                        failed = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(1)) RETURNING v")  // duplicate
                        behind = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(5)) RETURNING v")
                    }
                }
                #expect(commitError?.sqlState == .uniqueViolation)
                let own = #expect(throws: PostgresError.self) { try c.rows(of: try #require(failed)) }
                #expect(own?.code == .transactionAborted, "rolled back: nothing kept")
                let never = #expect(throws: PostgresError.self) { try c.rows(of: try #require(behind)) }
                #expect(never?.code == .transactionAborted)
                #expect(try values(c.query("SELECT v FROM t ORDER BY v")) == [1, 2, 3])

                // Outside a transaction, the failed statement's error is its own, read from it.
                let duplicate = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(2)) RETURNING v")
                let next = try c.sendAhead(keepingRows: "INSERT INTO t VALUES (\(6)) RETURNING v")
                #expect(throws: PostgresError.self) { try c.query("SELECT 1 AS one") }
                let its = #expect(throws: PostgresError.self) { try c.rows(of: duplicate) }
                #expect(its?.sqlState == .uniqueViolation)
                let skipped = #expect(throws: PostgresError.self) { try c.rows(of: next) }
                #expect(skipped?.code == .transactionAborted)
                #expect(try values(c.query("SELECT v FROM t ORDER BY v")) == [1, 2, 3])
            }
        }
    }

    @Test("a statement sent ahead before the session was lost runs as itself on the new session, not as whatever took its prepared name")
    func sentAheadAcrossReconnect() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let admin = try await PostgresConnection.connect(configuration)
            let connection = try await PostgresConnection.connect(configuration)
            let pid = try await connection.run { c in
                try c.executeScript("CREATE TABLE t (v int)")
                return try c.query("SELECT pg_backend_pid() AS pid")[0].decode(Int32.self, "pid")
            }
            try await connection.run { c in
                // Prepared on this session as its second statement, after the pid query.
                try c.sendAhead("INSERT INTO t VALUES (1)")
            }
            _ = try await admin.run { c in try c.query("SELECT pg_terminate_backend(\(pid))") }
            #expect(try await backendGone(pid, admin: admin))
            // Preparing another statement finds the session gone.
            await #expect(throws: PostgresError.self) {
                try await connection.run { c in try c.sendAhead("INSERT INTO t VALUES (\(2))") }
            }
            // The next call reconnects; its own statement is prepared first on the new session,
            // under the names the lost one used, and the insert sent ahead goes before it.
            let values = try await connection.run { c -> [Int] in
                _ = try c.query("SELECT v FROM t WHERE v = \(0)")
                return try c.query("SELECT v FROM t ORDER BY v").map { try $0.decode(Int.self, "v") }
            }
            #expect(values == [1])
        }
    }

    /// Waits (with a deadline) until the server no longer lists backend `pid`.
    func backendGone(_ pid: Int32, admin: PostgresConnection) async throws -> Bool {
        try await eventually(timeout: .seconds(10)) {
            try await admin.run { a in
                try a.query("SELECT count(*) = 0 AS gone FROM pg_stat_activity WHERE pid = \(pid)")[0].decode(Bool.self)
            }
        }
    }

    @Test("a NOTIFY wakes a waiting listener at once, not at the end of its wait")
    func notifyLatency() async throws {
        let configuration = try TestDatabase.serverConfiguration()
        let listener = try await PostgresConnection.connect(configuration)
        let sender = try await PostgresConnection.connect(configuration)
        let channel = "test_\(UInt32.random(in: 0...UInt32.max))"
        try await listener.listen(channel)
        let waiting = Task { () -> (ContinuousClock.Instant, [PostgresNotification]) in
            let received = try await listener.waitForNotifications(timeout: .seconds(60))
            return (ContinuousClock.now, received)
        }
        try await Task.sleep(for: .milliseconds(200))
        let sent = ContinuousClock.now
        try await sender.run { s in _ = try s.query("SELECT pg_notify(\(channel), \("hello"))") }
        let (arrived, received) = try await waiting.value
        #expect(received.map(\.payload) == ["hello"])
        // Far below the wait's 60 s: the notification, not the timeout, ended it. (How fast is
        // the bench's to measure: idle enqueue-to-start.)
        #expect(arrived - sent < .seconds(10), "latency \(arrived - sent)")
    }

    @Test("wakeUp ends a notification wait at once")
    func wakeUp() async throws {
        let listener = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        try await listener.listen("never_used")
        let start = ContinuousClock.now
        let waiting = Task { try await listener.waitForNotifications(timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(50))
        listener.wakeUp()
        #expect(try await waiting.value.isEmpty)
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test("COPY FROM STDIN writes 100,000 rows with escaping intact")
    func copy() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            let (copied, count, tricky) = try await connection.run { c -> (Int, Int, String?) in
                try c.executeScript("CREATE TABLE t (id int, note text)")
                let rows = (0..<100_000).lazy.map { i -> [String?] in
                    [String(i), i == 7 ? "tab\there\nnew \\N line\\" : (i % 10 == 0 ? nil : "row \(i)")]
                }
                let copied = try c.copyFrom("COPY t (id, note) FROM STDIN", rows: rows)
                let count = try c.query("SELECT count(*) AS n FROM t")[0].decode(Int.self, "n")
                let tricky = try c.query("SELECT note FROM t WHERE id = \(7)")[0].decode(String?.self, "note")
                return (copied, count, tricky)
            }
            #expect(copied == 100_000)
            #expect(count == 100_000)
            #expect(tricky == "tab\there\nnew \\N line\\")
        }
    }

    @Test("a COPY with a bad row reports the server's error and leaves the connection usable")
    func copyFailure() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            try await connection.run { c in try c.executeScript("CREATE TABLE t (id int)") }
            let error = await #expect(throws: PostgresError.self) {
                try await connection.run { c in try c.copyFrom("COPY t (id) FROM STDIN", rows: [["1"], ["x"]]) }
            }
            #expect(error?.sqlState == "22P02")
            let n = try await connection.run { c in try c.query("SELECT count(*) AS n FROM t")[0].decode(Int.self, "n") }
            #expect(n == 0)
        }
    }

    @Test("the password never appears in a description or an error")
    func passwordIsHidden() async throws {
        let server = try TestDatabase.serverConfiguration()
        let secret = "s3cr3t-Pa55word"
        let configuration = server.with("password", secret).with("user", "no_such_role")
        // The description names the user (it is meant for log lines) but never the password.
        #expect(configuration.description.contains("no_such_role"), "\(configuration.description)")
        #expect(!configuration.description.contains(secret), "\(configuration.description)")
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(server.with("password", secret).with("port", "1"))
        }
        #expect(error?.code == .connection)
        #expect(error?.isTransient == true)
        #expect(!(error?.description.contains(secret) ?? true))
        let malformed = "postgresql://a:\(secret)@host/db?no_such_option=\(secret)"
        let parseError = #expect(throws: PostgresError.self) { try PostgresConfiguration(malformed) }
        #expect(parseError?.code == .configuration)
        #expect(!(parseError?.description.contains(secret) ?? true), "\(parseError.map(String.init(describing:)) ?? "")")
    }

    @Test("URI and key=value connection strings both pass every libpq option through")
    func connectionStrings() throws {
        let uri = try PostgresConfiguration(
            "postgresql://worker:pw@db.internal:6432/crm?sslmode=verify-full&application_name=upsert-worker")
        #expect(uri.options["host"] == "db.internal")
        #expect(uri.options["port"] == "6432")
        #expect(uri.options["sslmode"] == "verify-full")
        #expect(uri.options["application_name"] == "upsert-worker")
        #expect(uri.database == "crm")
        let pairs = try PostgresConfiguration("host=/run/postgresql dbname='my db' sslmode=require")
        #expect(pairs.options["dbname"] == "my db")
        let rebuilt = try PostgresConfiguration(pairs.connectionString)
        #expect(rebuilt.options == pairs.options)
    }

    @Test("sslmode and other libpq options reach libpq: verify-full against a server without TLS is refused")
    func sslModePassesThrough() async throws {
        let server = try TestDatabase.serverConfiguration()
        let error = await #expect(throws: PostgresError.self) {
            _ = try await PostgresConnection.connect(server.with("sslmode", "verify-full").with("host", "127.0.0.1"))
        }
        #expect(error?.code == .connection)
        #expect(error?.message.localizedLowercase.contains("ssl") == true, "\(error?.message ?? "")")
        let named = try await PostgresConnection.connect(server.with("application_name", "upsert-worker-test"))
        let name = try await named.run { c in try c.query("SELECT current_setting('application_name') AS n")[0].decode(String.self, "n") }
        #expect(name == "upsert-worker-test")
    }

    @Test("the pool lends at most its size, all of it at once, and every caller gets a turn")
    func pool() async throws {
        let pool = PostgresConnectionPool(configuration: try TestDatabase.serverConfiguration(), size: 3)
        let inUse = InUse()
        let pids = try await withThrowingTaskGroup(of: Int32.self) { group in
            for _ in 0..<12 {
                group.addTask {
                    try await pool.withConnection { c in
                        inUse.enter()
                        defer { inUse.leave() }
                        let pid = try c.backendPID()
                        _ = try c.query("SELECT pg_sleep(0.2)")
                        return pid
                    }
                }
            }
            var pids: [Int32] = []
            for try await pid in group { pids.append(pid) }
            return pids
        }
        #expect(pids.count == 12)
        #expect(Set(pids).count == 3)
        #expect(inUse.most == 3)
        await pool.close()
    }
}

/// Counts the callers holding a connection at once, and the most there ever were.
final class InUse: Sendable {
    private let state = Mutex((now: 0, most: 0))
    func enter() { state.withLock { $0.now += 1; $0.most = max($0.most, $0.now) } }
    func leave() { state.withLock { $0.now -= 1 } }
    var most: Int { state.withLock { $0.most } }
}
