import ContactDomain
import Foundation
import JSON
import JobQueue
import Logging
import Postgres
import TestSupport
import Testing

/// One organization with a channel of every platform, stages, agents and one custom field
/// definition of every type, written straight into the crm tables as other services do.
struct Org: Sendable {
    let client = UUID()
    let whatsapp = UUID()
    let whatsapp2 = UUID()
    let webWhatsapp = UUID()
    let webchat = UUID()
    let stage = UUID()
    let stage2 = UUID()
    let agent = UUID()
    let inactiveAgent = UUID()
    /// The phone numbers of the two WhatsApp channels and the web-whatsapp one.
    let whatsappNumber: String
    let whatsapp2Number: String
    let webWhatsappNumber: String
    let apiKey: String

    init(_ n: Int) {
        whatsappNumber = "+5622345\(String(format: "%04d", n))"
        whatsapp2Number = "+5622346\(String(format: "%04d", n))"
        webWhatsappNumber = "+5255000\(String(format: "%05d", n))"
        apiKey = "test-key-\(n)-\(UUID().uuidString)"
    }

    func create(on c: isolated PostgresConnection, active: Bool = true) throws {
        try c.execute("INSERT INTO crm.clients (id, name, active) VALUES (\(client), \("Org \(client)"), \(active))")
        try c.execute(
            "INSERT INTO crm.api_keys (client_id, key_hash) VALUES (\(client), encode(sha256(convert_to(\(apiKey), 'UTF8')), 'hex'))")
        try c.execute(
            """
            INSERT INTO crm.channels (id, client_id, platform, phone_number) VALUES
                (\(whatsapp), \(client), 'whatsapp', \(whatsappNumber)), (\(whatsapp2), \(client), 'whatsapp', \(whatsapp2Number)), (\(webWhatsapp), \(client), 'web-whatsapp', \(webWhatsappNumber)), (\(webchat), \(client), 'webchat', NULL)
            """)
        try c.execute(
            "INSERT INTO crm.stages (id, client_id, name, position) VALUES (\(stage), \(client), 'New', 1), (\(stage2), \(client), 'Won', 2)")
        try c.execute(
            """
            INSERT INTO crm.team_members (id, client_id, name, active) VALUES (\(agent), \(client), 'Camila', true), (\(inactiveAgent), \(client), 'Gone', false)
            """)
        try c.execute(
            """
            INSERT INTO crm.custom_field_definitions (client_id, key, label, field_type, options, is_identifier) VALUES
                (\(client), 'rut', NULL, 'text', NULL, true), (\(client), 'company_name', 'Empresa', 'text', NULL, false),
                (\(client), 'budget', 'Presupuesto', 'number', NULL, false), (\(client), 'visit_date', 'Fecha de visita', 'date', NULL, false),
                (\(client), 'is_vip', NULL, 'boolean', NULL, false), (\(client), 'plan', NULL, 'options', '["Free","Pro","Enterprise"]', false)
            """)
    }
}

/// A finished job, as the tests read it.
struct Finished: Sendable {
    let id: Int64
    let state: String
    let result: JSONValue?
    let error: JSONValue?

    var code: String? { error?["code"]?.stringValue }
    var details: JSONValue? { error?["details"] }
    var contactID: String? { result?["id"]?.stringValue }
    var customerID: String? { result?["ai_customer_id"]?.stringValue }
    var created: Bool? {
        if case .bool(let b)? = result?["created"] { return b }
        return nil
    }
}

enum Domain {
    static let logger = TestDatabase.quietLogger

    static func withDatabase<T: Sendable>(_ body: (PostgresConfiguration, PostgresConnection) async throws -> T)
        async throws -> T
    {
        try await TestDatabase.withScratchConnection(body)
    }

    /// Enqueues the payloads in order and works them to the end with the contact handler,
    /// one job at a time unless `concurrency` says otherwise; returns every job in id order.
    @discardableResult
    static func run(
        _ payloads: [JSONValue], clientID: UUID? = nil, database: PostgresConfiguration, connection: PostgresConnection,
        concurrency: Int = 1
    ) async throws -> [Finished] {
        let first = try await connection.run { c in
            try c.query("SELECT coalesce(max(id), 0) AS id FROM queue.jobs")[0].decode(Int64.self, "id")
        }
        let jobs = payloads.map { NewJob(queue: "contacts", kind: "contact.upsert", payload: $0, clientID: clientID) }
        try await connection.run { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
        var configuration = WorkerConfiguration()
        configuration.concurrency = concurrency
        configuration.batchSize = 10
        configuration.drain = true
        configuration.pollInterval = .milliseconds(100)
        configuration.retryPolicy = RetryPolicy(base: .milliseconds(10), maximum: .milliseconds(20), jitter: 0)
        let worker = JobWorker(
            configuration: configuration, database: database, handlers: [ContactUpsertHandler()], logger: logger)
        try await worker.run()
        return try await connection.run { c in
            try c.query("SELECT id, state, result, last_error FROM queue.jobs WHERE id > \(first) ORDER BY id").map {
                row in
                Finished(
                    id: try row.decode(Int64.self, "id"), state: try row.decode(String.self, "state"),
                    result: try row.decode(JSONValue?.self, "result"), error: try row.decode(JSONValue?.self, "last_error"))
            }
        }
    }

    static func one(
        _ payload: JSONValue, clientID: UUID? = nil, database: PostgresConfiguration, connection: PostgresConnection
    ) async throws -> Finished {
        let jobs = try await run([payload], clientID: clientID, database: database, connection: connection)
        return try #require(jobs.first)
    }

    static func count(_ query: PostgresQuery, on connection: PostgresConnection) async throws -> Int {
        try await connection.run { c in try c.query(query)[0].decode(Int.self) }
    }

    static func whatsapp(_ org: Org, _ phone: String, _ extra: [String: JSONValue] = [:]) -> JSONValue {
        var object: [String: JSONValue] = [
            "channel": "whatsapp", "channel_phone_number": .string(org.whatsappNumber), "contact_phone_number": .string(phone),
        ]
        object.merge(extra) { _, new in new }
        return .object(object)
    }

    static func webchat(_ org: Org, _ user: String, _ extra: [String: JSONValue] = [:]) -> JSONValue {
        var object: [String: JSONValue] = [
            "channel": "webchat", "channel_id": .string(org.webchat.uuidString.lowercased()), "external_user_id": .string(user),
        ]
        object.merge(extra) { _, new in new }
        return .object(object)
    }

    static func fields(_ pairs: [(String, JSONValue)]) -> JSONValue {
        .array(pairs.map { ["key": .string($0.0), "value": $0.1] })
    }

    static func customFields(_ customerID: String?, on connection: PostgresConnection) async throws -> [String: String] {
        guard let customerID, let id = UUID(uuidString: customerID) else { return [:] }
        return try await connection.run { c in
            var values: [String: String] = [:]
            for row in try c.query("SELECT key, value FROM crm.customer_field_values WHERE customer_id = \(id)") {
                values[try row.decode(String.self, "key")] = try row.decode(String.self, "value")
            }
            return values
        }
    }

    static func customer(_ customerID: String?, on connection: PostgresConnection) async throws -> PostgresRow {
        let id = try #require(customerID.flatMap(UUID.init(uuidString:)))
        return try await connection.run { c in
            try c.query("SELECT name, email, phone, stage_id, agent_id, meta_data FROM crm.customers WHERE id = \(id)")[0]
        }
    }
}
