import Foundation
import JSON
import Postgres
import TestSupport

/// The organization the bench works for, and its realistic jobs: a mix of new and repeated
/// identities on all three platforms, names, e-mails, stages, agents, four custom fields (one
/// an identifier), metadata, and about 2 % bad jobs.
struct Workload {
    let client = UUID()
    let name: String
    let channels: [(id: UUID, platform: String, phone: String?)]
    let stages = (0..<3).map { _ in UUID() }
    let agents = (0..<3).map { _ in UUID() }

    /// Organization number `n` (0 to 99): its own channels, numbers and name.
    init(_ n: Int = 0, name: String = "Bench Org") {
        self.name = name
        channels = [
            (UUID(), "whatsapp", "+5622\(345 + n)0001"), (UUID(), "whatsapp", "+55419999\(String(format: "%05d", n))"),
            (UUID(), "web-whatsapp", "+5255000\(String(format: "%05d", n + 1))"), (UUID(), "webchat", nil),
        ]
    }

    /// Creates the organization's rows.
    func load(on c: isolated PostgresConnection) throws {
        try c.execute("INSERT INTO crm.clients (id, name) VALUES (\(client), \(name))")
        for channel in channels {
            try c.execute(
                "INSERT INTO crm.channels (id, client_id, platform, phone_number) VALUES (\(channel.id), \(client), \(channel.platform), \(channel.phone))")
        }
        for (i, stage) in stages.enumerated() {
            try c.execute("INSERT INTO crm.stages (id, client_id, name, position) VALUES (\(stage), \(client), \("Stage \(i)"), \(i))")
        }
        for (i, agent) in agents.enumerated() {
            try c.execute("INSERT INTO crm.team_members (id, client_id, name) VALUES (\(agent), \(client), \("Agent \(i)"))")
        }
        try c.execute(
            """
            INSERT INTO crm.custom_field_definitions (client_id, key, field_type, options, is_identifier) VALUES
                (\(client), 'rut', 'text', NULL, true), (\(client), 'budget', 'number', NULL, false),
                (\(client), 'plan', 'options', '["Free","Pro","Enterprise"]', false), (\(client), 'visit_date', 'date', NULL, false)
            """)
    }

    /// Another organization's customers and contacts, already in the CRM and analyzed, as in
    /// any CRM that has been running a while: the bench's own jobs then meet tables of a
    /// realistic size with real statistics, not empty tables whose plans change as they fill.
    func loadBackground(customers: Int, on c: isolated PostgresConnection) throws {
        let client = UUID(), channel = UUID()
        try c.execute("INSERT INTO crm.clients (id, name) VALUES (\(client), 'Background Org')")
        try c.execute(
            "INSERT INTO crm.channels (id, client_id, platform, phone_number) VALUES (\(channel), \(client), 'whatsapp', '+56223459999')")
        try c.execute(
            """
            WITH people AS (
                SELECT g, gen_random_uuid() AS customer, gen_random_uuid() AS contact,
                       '+5698' || lpad(g::text, 7, '0') AS phone
                FROM generate_series(1, \(customers)::int) AS g
            ), customers AS (
                INSERT INTO crm.customers (id, client_id, name, email, phone, meta_data)
                SELECT customer, \(client), 'Person ' || g, 'person' || g || '@example.org', phone,
                       jsonb_build_object('source', 'import', 'n', g)
                FROM people
            )
            INSERT INTO crm.contacts (id, client_id, customer_id, channel_id, platform, phone, name)
            SELECT contact, \(client), customer, \(channel), 'whatsapp', phone, 'Person ' || g FROM people
            """)
        // Their identifier values too: a CRM in use has them, and statistics taken on an empty
        // identifier table would let the planner scan it once per lookup.
        try c.execute(
            """
            WITH definition AS (
                INSERT INTO crm.custom_field_definitions (client_id, key, field_type, is_identifier)
                VALUES (\(client), 'rut', 'text', true) RETURNING id
            )
            INSERT INTO crm.customer_identifiers (client_id, definition_id, identifier_key, customer_id)
            SELECT \(client), definition.id, 'bg-' || c.id, c.id FROM crm.customers c, definition WHERE c.client_id = \(client)
            """)
        try c.executeScript("ANALYZE crm.customers; ANALYZE crm.contacts; ANALYZE crm.customer_identifiers")
    }

    /// `count` payloads; about 60 % of identities are new and 40 % repeat an earlier one.
    func payloads(_ count: Int, seed: UInt64 = 42) -> [JSONValue] {
        var random = SeededGenerator(state: seed)
        let pool = max(1, count * 6 / 10)
        let plans = ["Free", "pro", "ENTERPRISE"]
        let firstNames = ["María", "José", "Ana", "João", "Lupita", "Sofía", "Pedro", "Camila", "Diego", "Valentina"]
        let lastNames = ["Pérez", "González", "Silva", "Hernández", "Gómez", "Rojas", "Soto", "Muñoz"]
        var out: [JSONValue] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let person = i < pool ? i : Int.random(in: 0..<pool, using: &random)
            let channel = channels[person % channels.count]
            var payload: [String: JSONValue] = ["channel": .string(channel.platform)]
            let first = firstNames[person % firstNames.count]
            let last = lastNames[(person / 10) % lastNames.count]
            if channel.platform == "webchat" {
                payload["channel_id"] = .string(channel.id.uuidString.lowercased())
                payload["external_user_id"] = .string("visitor-\(person)")
            } else {
                payload["channel_phone_number"] = .string(channel.phone ?? "")
                let digits = String(format: "%08d", 10_000_000 + person)
                payload["contact_phone_number"] = .string(
                    channel.platform == "whatsapp" && person % 2 == 0 ? "+56 9 \(digits.prefix(4)) \(digits.suffix(4))"
                        : "569\(digits)")
            }
            payload["contact_name"] = .string("\(first) \(last)")
            if Int.random(in: 0..<10, using: &random) < 6 {
                payload["contact_email"] = .string("\(first.lowercased().prefix(3))\(person)@example.com")
            }
            if Int.random(in: 0..<10, using: &random) < 3 {
                payload["stageId"] = .string(stages[Int.random(in: 0..<3, using: &random)].uuidString)
            }
            if Int.random(in: 0..<10, using: &random) < 2 {
                payload["agentId"] = .string(agents[Int.random(in: 0..<3, using: &random)].uuidString)
            }
            var fields: [JSONValue] = [
                ["key": "budget", "value": .string(String(Int.random(in: 100...5_000, using: &random) * 1000))],
                ["key": "plan", "value": .string(plans[Int.random(in: 0..<3, using: &random)])],
                ["key": "visit_date", "value": .string("2026-12-\(String(format: "%02d", 1 + person % 28))")],
            ]
            if i < pool, person % 2 == 0 {
                fields.append(["key": "rut", "value": .string("\(10_000_000 + person)-\(person % 10)")])
            }
            payload["custom_field_values"] = .array(fields)
            payload["meta_data"] = [
                "source": .string(i % 3 == 0 ? "landing-page" : "whatsapp-ad"), "utm_campaign": "cyber-2026",
                "page_views": .number(JSONNumber(Int.random(in: 1...40, using: &random))),
            ]
            // About 2 % bad jobs: an invalid phone or an unknown custom field.
            let roll = Int.random(in: 0..<100, using: &random)
            if roll == 0 {
                payload["channel"] = "whatsapp"
                payload["channel_phone_number"] = .string(channels[0].phone ?? "")
                payload["contact_phone_number"] = "12345"
            } else if roll == 1 {
                payload["custom_field_values"] = [["key": "no_such_field", "value": "x"]]
            }
            out.append(.object(payload))
        }
        return out
    }
}
