import ContactDomain
import Foundation
import JSON
import TextForms
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Tenants, clients and the authenticated enqueue")
struct TenantAndEnqueueTests {
    @Test("every lookup is scoped by the client: another client's rows are 'not found'")
    func isolation() async throws {
        try await Domain.withDatabase { db, c in
            let mine = Org(20)
            let theirs = Org(21)
            try await c.run { c in
                try mine.create(on: c)
                try theirs.create(on: c)
                try c.execute(
                    "INSERT INTO crm.custom_field_definitions (client_id, key, field_type) VALUES (\(theirs.client), 'their_only', 'text')")
            }
            // Their customer, with a phone and an identifier value.
            let theirCustomer = try await Domain.one(
                Domain.whatsapp(theirs, "+56 9 1234 0000", ["custom_field_values": Domain.fields([("rut", "7-7")])]),
                database: db, connection: c)
            #expect(theirCustomer.state == "succeeded")

            // Channel: their channel named by UUID, by a job of my client.
            let channel = try await Domain.one(
                ["channel": "webchat", "channel_id": .string(theirs.webchat.uuidString), "external_user_id": "x"],
                clientID: mine.client, database: db, connection: c)
            #expect(channel.code == "unknown_channel")
            let channelByPhone = try await Domain.one(
                Domain.whatsapp(theirs, "+56 9 1234 0001"), clientID: mine.client, database: db, connection: c)
            #expect(channelByPhone.code == "unknown_channel")

            // Stage and agent of theirs.
            let stage = try await Domain.one(
                Domain.whatsapp(mine, "+56 9 1234 0002", ["stageId": .string(theirs.stage.uuidString), "agentId": .string(theirs.agent.uuidString)]),
                clientID: mine.client, database: db, connection: c)
            #expect(stage.code == "invalid_fields")
            #expect(stage.details?["invalid_fields"]?.arrayValue?.compactMap { $0["field"]?.stringValue } == ["stageId", "agentId"])

            // An inactive agent of mine is refused too.
            let inactive = try await Domain.one(
                Domain.whatsapp(mine, "+56 9 1234 0002", ["agentId": .string(mine.inactiveAgent.uuidString)]),
                database: db, connection: c)
            #expect(inactive.code == "invalid_fields")

            // Custom field definitions of theirs.
            let definition = try await Domain.one(
                Domain.whatsapp(mine, "+56 9 1234 0003", ["custom_field_values": Domain.fields([("their_only", "x")])]),
                database: db, connection: c)
            #expect(definition.details?["invalid_custom_field_keys"] == ["their_only"])

            // Identifier values and customers by phone of theirs never link to my contacts.
            let samePerson = try await Domain.one(
                Domain.whatsapp(mine, "+56 9 1234 0000", ["custom_field_values": Domain.fields([("rut", "7-7")])]),
                database: db, connection: c)
            #expect(samePerson.state == "succeeded")
            #expect(samePerson.customerID != theirCustomer.customerID)
            #expect(samePerson.result?["client_id"] == .string(mine.client.uuidString.lowercased()))
            #expect(try await Domain.count("SELECT count(DISTINCT client_id) FROM crm.customers", on: c) == 2)
        }
    }

    @Test("a missing or inactive client is 401 unauthorized", arguments: ["missing job client", "inactive job client", "inactive channel client"])
    func unauthorized(_ situation: String) async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(22)
            try await c.run { c in try org.create(on: c, active: situation == "missing job client") }
            let client: UUID? =
                switch situation {
                case "missing job client": UUID()
                case "inactive job client": org.client
                default: nil
                }
            let job = try await Domain.one(Domain.whatsapp(org, "+56961234567"), clientID: client, database: db, connection: c)
            #expect(job.code == "unauthorized")
            #expect(job.error?["status"] == 401)
        }
    }

    @Test("crm.enqueue_contact_upsert: the key's client becomes client_id; unknown and revoked keys raise 28000")
    func enqueueFunction() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(23)
            try await c.run { c in try org.create(on: c) }
            let payload = Domain.whatsapp(org, "+56961234567")
            let (key, event) = (org.apiKey, "evt-1")
            let enqueue: PostgresQuery = "SELECT crm.enqueue_contact_upsert(\(key), \(payload)::jsonb, \(event)) AS id"
            let (first, again) = try await c.run { c in
                (try c.query(enqueue)[0].decode(Int64.self, "id"), try c.query(enqueue)[0].decode(Int64.self, "id"))
            }
            #expect(first == again, "a repeated idempotency key returns the first job's id")
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE client_id = \(org.client)", on: c) == 1)

            for key in ["wrong-key", "", org.apiKey.uppercased()] {
                let error = await #expect(throws: PostgresError.self) {
                    try await c.run { c in try c.query("SELECT crm.enqueue_contact_upsert(\(key), \(payload)::jsonb)") }
                }
                #expect(error?.sqlState == "28000")
            }
            try await c.run { c in try c.execute("UPDATE crm.api_keys SET revoked_at = now() WHERE client_id = \(org.client)") }
            let revoked = await #expect(throws: PostgresError.self) {
                try await c.run { c in try c.query("SELECT crm.enqueue_contact_upsert(\(org.apiKey), \(payload)::jsonb)") }
            }
            #expect(revoked?.sqlState == "28000")
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs", on: c) == 1, "nothing enqueued on refusal")
            // The raw key is stored nowhere.
            let leaks = try await Domain.count(
                """
                SELECT (SELECT count(*) FROM queue.jobs WHERE row_to_json(jobs)::text LIKE '%' || \(key) || '%')
                     + (SELECT count(*) FROM crm.api_keys WHERE row_to_json(api_keys)::text LIKE '%' || \(key) || '%')
                """, on: c)
            #expect(leaks == 0)
            // The one job the key enqueued runs for the key's client.
            _ = try await Domain.run([], database: db, connection: c)
            let ran = try await c.run { c in
                try c.query("SELECT state, result ->> 'client_id' AS client FROM queue.jobs WHERE id = \(first)")[0]
            }
            #expect(try ran.decode(String.self, "state") == "succeeded")
            #expect(try ran.decode(String.self, "client") == UUIDText.string(org.client))
        }
    }

    @Test("the default ordering key is the same for every spelling of one identity")
    func defaultOrderingKey() async throws {
        try await Domain.withDatabase { _, c in
            let payloads: [JSONValue] = [
                ["channel": "whatsapp", "channel_phone_number": "+55 41 99999-0000", "contact_phone_number": "+55 41 98765-4321"],
                ["channel": "whatsapp", "channel_phone_number": "5541999990000", "contact_phone_number": "554187654321"],
                ["channel": "whatsapp", "channel_phone_number": "+5541999990000", "contact_phone_number": "5541987654321@s.whatsapp.net"],
                ["channel": "webchat", "channel_id": "A4FB82CE-71CE-4412-B1E6-6FF866D9BD77", "external_user_id": " user-1 "],
                ["channel": "webchat", "channel_id": "a4fb82ce-71ce-4412-b1e6-6ff866d9bd77", "external_user_id": "user-1"],
                ["channel": "sms"],
            ]
            for payload in payloads {
                try await c.run { c in try c.execute("INSERT INTO queue.jobs (payload) VALUES (\(payload)::jsonb)") }
            }
            try await c.run { c in
                try c.execute("INSERT INTO queue.jobs (payload, ordering_key) VALUES (\(payloads[0])::jsonb, 'mine')")
            }
            let keys = try await c.run { c in
                try c.query("SELECT ordering_key FROM queue.jobs ORDER BY id").map { try $0.decode(String?.self, "ordering_key") }
            }
            #expect(Set(keys[0...2]).count == 1)
            #expect(keys[0] == "whatsapp:5541999990000:5541987654321")
            #expect(keys[3] == keys[4])
            #expect(keys[5] == nil)
            #expect(keys[6] == "mine", "a producer's own key is kept")
        }
    }
}

@Suite("Swift rules and SQL functions agree")
struct AgreementTests {
    @Test("crm.normalize_phone and crm.phone_key match PhoneNumber on every example")
    func phones() async throws {
        let spellings = PhoneNumberTests.valid.map(\.spelling) + PhoneNumberTests.invalid.map(\.0) + [
            "\t+56 9 6123 4567\u{00A0}", "(+56) 9 6123 4567", "+55 21 7123-4567", "+551161234567", "5491123456789@c.us",
            // E.164 spellings take crm.phone_key's fast path.
            "+1234567", "+123456789012345", "+1234567890123456", "+0123456789", "+123456", "+5541961234567",
            "+554161234567", "+5215512345678", "+5491123456789", "+56961234567 ", "+56 961234567",
        ] + PhoneNumberTests.valid.compactMap { try? PhoneNumber.parse($0.spelling).get().e164 }
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        try await TestDatabase.withScratch { db in
            let c = try await PostgresConnection.connect(db)
            for spelling in spellings {
                let row = try await c.run { c in
                    try c.query("SELECT crm.normalize_phone(\(spelling)) AS e164, crm.phone_key(\(spelling)) AS key")[0]
                }
                let swift = try? PhoneNumber.parse(spelling).get()
                #expect(try row.decode(String?.self, "e164") == swift?.e164, "\(spelling)")
                #expect(try row.decode(String?.self, "key") == swift?.matchKey, "\(spelling)")
            }
            await c.close()
        }
        await connection.close()
    }

    @Test("a bulk enqueue sends every job's keys itself, the trigger's keys, while it streams")
    func bulkEnqueueSendsKeys() async throws {
        try await Domain.withDatabase { _, c in
            let org = Org(30)
            try await c.run { c in try org.create(on: c) }
            let payloads: [JSONValue] = (0..<50).map { i in
                i % 5 == 4
                    ? ["channel": "webchat", "channel_id": .string(UUIDText.string(org.webchat)), "external_user_id": .string("v-\(i % 7)")]
                    : ["channel": "whatsapp", "channel_phone_number": .string(org.whatsappNumber), "contact_phone_number": .string("+56 9 6123 45\(10 + i % 9)")]
            }
            let sent = try await c.run { c in
                // Without the insert trigger, what the rows hold is what enqueueMany sent.
                try c.execute("ALTER TABLE queue.jobs DISABLE TRIGGER jobs_contact_keys")
                let jobs = try ContactJobs.newJobs(payloads, queue: "contacts", on: c)
                return try JobProducer.enqueueMany(jobs, completing: ContactJobs.completeOrderingKey, on: c)
            }
            #expect(sent == payloads.count)
            let wrong = try await c.run { c in
                try c.query(
                    """
                    SELECT count(*) FILTER (WHERE ordering_key IS DISTINCT FROM crm.contact_ordering_key(payload)) AS keys,
                           count(*) FILTER (WHERE fairness_key <> \(org.client.uuidString.lowercased())) AS fairness,
                           count(DISTINCT ordering_key) AS people
                    FROM queue.jobs
                    """)[0]
            }
            #expect(try wrong.decode(Int.self, "keys") == 0)
            #expect(try wrong.decode(Int.self, "fairness") == 0)
            #expect(try wrong.decode(Int.self, "people") == 9 + 7)
        }
    }

    @Test("ContactRequest.orderingKey equals crm.contact_ordering_key on every payload it keys")
    func orderingKeys() async throws {
        let spellings = PhoneNumberTests.valid.map(\.spelling) + PhoneNumberTests.invalid.map(\.0) + [
            "\t+56 9 6123 4567\u{00A0}", "(+56) 9 6123 4567", "+55 21 7123-4567", "+551161234567", "5491123456789@c.us",
        ]
        let channelID = UUID()
        let channels = [
            "+56 2 2345 0001", " +5622345000 1 ", "56223450001", UUIDText.string(channelID), channelID.uuidString,
            " \(channelID.uuidString) ", "not a phone", "",
        ]
        var payloads: [JSONValue] = []
        for platform in ["whatsapp", "web-whatsapp"] {
            for channel in channels {
                for spelling in spellings {
                    payloads.append([
                        "channel": .string(platform), "channel_phone_number": .string(channel),
                        "contact_phone_number": .string(spelling),
                    ])
                }
            }
        }
        for user in ["visitor-1", " spaced ", "\tTabbed\t", "ñandú 👩🏽‍💻", "", "   ", "UPPER"] {
            for channel in [UUIDText.string(channelID), " \(channelID.uuidString) ", "x"] {
                payloads.append(["channel": "webchat", "channel_id": .string(channel), "external_user_id": .string(user)])
            }
        }
        payloads += [
            "not an object", ["channel": 7], ["channel": "sms", "contact_phone_number": "+56961234567"],
            ["channel": "whatsapp", "channel_phone_number": 5, "contact_phone_number": "+56961234567"],
            ["channel": "webchat", "channel_id": .string(UUIDText.string(channelID)), "external_user_id": 12],
        ]
        let all = payloads
        try await TestDatabase.withScratch { db in
            let c = try await PostgresConnection.connect(db)
            let sql = try await c.run { c in
                try c.query(
                    "SELECT crm.contact_ordering_key(p) AS k FROM unnest(\(all)::jsonb[]) WITH ORDINALITY AS t(p, n) ORDER BY n").map { try $0.decode(String?.self, "k") }
            }
            var keyed = 0
            for (payload, expected) in zip(all, sql) {
                let swift = ContactRequest.orderingKey(payload)
                // Nil leaves the key to the insert trigger; a key must be the trigger's.
                if let swift {
                    keyed += 1
                    #expect(swift == expected, "\(payload.jsonText)")
                } else {
                    #expect(expected == nil, "\(payload.jsonText)")
                }
            }
            #expect(keyed > all.count / 3)
            await c.close()
        }
    }

    @Test("number canonical forms equal PostgreSQL's numeric output")
    func numbers() async throws {
        let inputs = ["0", "-0", "-0.00", "007", "1.50", "1.50e1", "1.55e1", "3e4", "3E+4", "1e-2", "12.345e-1", ".5", "5.",
                      "-12.5", "+3", "123456789012345678901234567890.000001", "1e-20", "-1.0e3", "0.000e5", "10e-1"]
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        for input in inputs {
            let postgres = try await connection.run { c in try c.query("SELECT \(input)::numeric::text AS n")[0].decode(String.self, "n") }
            #expect(DecimalText.canonical(input) == postgres, "\(input)")
        }
        await connection.close()
    }
}
