import ContactDomain
import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Least privilege and secrets", .serialized)
struct SecurityTests {
    /// A login role in the group `group`, dropped afterwards (roles are per cluster).
    func withLogin<T: Sendable>(
        in group: String, database: PostgresConfiguration, _ body: (PostgresConfiguration) async throws -> T
    ) async throws -> T {
        let name = "test_\(group)_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await PostgresConnection.connect(database)
        try await admin.run { c in try c.executeScript("CREATE ROLE \(name) LOGIN IN ROLE \(group)") }
        do {
            let value = try await body(database.with("user", name))
            try await admin.run { c in try c.executeScript("DROP OWNED BY \(name); DROP ROLE \(name)") }
            return value
        } catch {
            try? await admin.run { c in try c.executeScript("DROP OWNED BY \(name); DROP ROLE \(name)") }
            throw error
        }
    }

    @Test("the producer role can enqueue, and can read no contact, customer, key or job payload")
    func producer() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(40)
            try await c.run { c in try org.create(on: c) }
            _ = try await Domain.one(Domain.whatsapp(org, "+56961234567", ["contact_name": "Secret Person"]), database: db, connection: c)
            try await withLogin(in: "upsert_producer", database: db) { producerDB in
                let producer = try await PostgresConnection.connect(producerDB)
                let payload = Domain.whatsapp(org, "+56961234568")
                let viaFunction = try await producer.run { p in
                    try p.query("SELECT crm.enqueue_contact_upsert(\(org.apiKey), \(payload)::jsonb) AS id")[0]
                        .decode(Int64.self, "id")
                }
                #expect(viaFunction > 0)
                let raw = try await producer.run { p in
                    try p.query(
                        "INSERT INTO queue.jobs (payload, idempotency_key) VALUES (\(payload)::jsonb, 'k1') ON CONFLICT DO NOTHING RETURNING id").count
                }
                #expect(raw == 1)
                let client = try await producer.run { p in try APIKeys.client(forKey: org.apiKey, on: p) }
                #expect(client == org.client)
                for sql: PostgresQuery in [
                    "SELECT * FROM crm.contacts", "SELECT * FROM crm.customers", "SELECT * FROM crm.api_keys",
                    "SELECT payload FROM queue.jobs", "SELECT * FROM crm.customer_field_values",
                    "UPDATE queue.jobs SET state = 'cancelled'", "DELETE FROM queue.jobs",
                ] {
                    let error = await #expect(throws: PostgresError.self, "\(sql)") {
                        try await producer.run { p in try p.query(sql) }
                    }
                    #expect(error?.sqlState == .insufficientPrivilege, "\(sql)")
                }
                await producer.close()
            }
        }
    }

    @Test("the worker role works jobs end to end but cannot alter or drop the schema")
    func worker() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(41)
            try await c.run { c in try org.create(on: c) }
            try await withLogin(in: "upsert_worker", database: db) { workerDB in
                let jobs = try await Domain.run(
                    [Domain.whatsapp(org, "+56961234567", ["custom_field_values": Domain.fields([("rut", "1-9")])])],
                    database: workerDB, connection: c)
                #expect(jobs.first?.state == "succeeded", "\(jobs.first?.error?.jsonText ?? "")")
                let worker = try await PostgresConnection.connect(workerDB)
                for sql: PostgresQuery in [
                    "ALTER TABLE crm.contacts ADD COLUMN x int", "DROP TABLE queue.jobs", "TRUNCATE crm.customers",
                    "CREATE TABLE crm.evil (x int)", "UPDATE crm.api_keys SET revoked_at = NULL",
                    "INSERT INTO crm.clients (name) VALUES ('x')",
                ] {
                    let error = await #expect(throws: PostgresError.self, "\(sql)") {
                        try await worker.run { w in try w.execute(sql) }
                    }
                    #expect(error?.sqlState == .insufficientPrivilege, "\(sql): \(error?.description ?? "")")
                }
                await worker.close()
            }
        }
    }

    @Test("no password or API key in any log line, error message or job row of a full run")
    func secretsStayOut() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(42)
            try await c.run { c in try org.create(on: c) }
            let password = "pw-\(UUID().uuidString)"
            // Local test clusters trust loopback connections, so the password is accepted and ignored.
            let url = db.with("password", password).connectionString
            let input = [
                Domain.whatsapp(org, "+56961234567", ["contact_name": "Ana"]).jsonText,
                Domain.whatsapp(org, "12345").jsonText,
            ].joined(separator: "\n")
            var logs = ""
            // Checked first, the bad row is refused; with --no-check both reach the worker.
            let checked = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--api-key", org.apiKey, "--database-url", url, "--log-level", "trace"],
                input: input)
            #expect(checked.status == 1, "\(checked.output)")
            logs += checked.output
            let enqueue = try await ChildProcess.run(
                TestBinaries.upsertWorker,
                ["enqueue", "-", "--api-key", org.apiKey, "--no-check", "--database-url", url, "--log-level", "trace"],
                input: input)
            #expect(enqueue.status == 0, "\(enqueue.output)")
            logs += enqueue.output
            let badKey = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--api-key", "wrong-\(org.apiKey)", "--database-url", url], input: input)
            #expect(badKey.status == 1)
            logs += badKey.output
            for format in ["text", "json"] {
                let run = try await ChildProcess.run(
                    TestBinaries.upsertWorker,
                    ["run", "--drain", "--log-level", "trace", "--log-format", format, "--database-url", url])
                #expect(run.status == 0)
                logs += run.output
            }
            let stats = try await ChildProcess.run(TestBinaries.upsertWorker, ["stats", "--json", "--database-url", url])
            logs += stats.output
            let unreachable = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["stats", "--database-url", db.with("password", password).with("port", "1").connectionString])
            #expect(unreachable.status == 1)
            logs += unreachable.output
            #expect(logs.contains("job finished"), "the run logged its jobs")
            #expect(!logs.contains(password), "a password leaked into the output")
            #expect(!logs.contains(org.apiKey), "an API key leaked into the output")
            let rows = try await Domain.count(
                """
                SELECT (SELECT count(*) FROM queue.jobs WHERE row_to_json(jobs)::text LIKE '%' || \(password) || '%'
                                                      OR row_to_json(jobs)::text LIKE '%' || \(org.apiKey) || '%')
                """, on: c)
            #expect(rows == 0)
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE client_id = \(org.client)", on: c) == 2)
        }
    }
}
