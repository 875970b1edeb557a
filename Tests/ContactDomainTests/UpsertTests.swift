import ContactDomain
import Foundation
import JSON
import TextForms
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("contact.upsert through the queue, against PostgreSQL")
struct UpsertTests {
    @Test("the first job creates contact and customer; the same person again finds them and overwrites nothing")
    func createdThenFound() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(1)
            try await c.run { c in try org.create(on: c) }
            let first = try await Domain.one(
                Domain.whatsapp(org, "+56 9 6123 4567", [
                    "contact_name": "María José Pérez", "contact_email": "MJ.Perez@Example.cl",
                    "stageId": .string(org.stage.uuidString), "agentId": .string(org.agent.uuidString),
                ]), database: db, connection: c)
            #expect(first.state == "succeeded", "\(first.error?.jsonText ?? "")")
            #expect(first.created == true)
            let result = try #require(first.result)
            #expect(result["name"] == "María José Pérez")
            #expect(result["phone"] == "+56961234567")
            #expect(result["email"] == "MJ.Perez@Example.cl")
            #expect(result["platform"] == "whatsapp")
            #expect(result["client_id"] == .string(org.client.uuidString.lowercased()))
            #expect(result["default_stage_id"] == .string(org.stage.uuidString.lowercased()))
            #expect(TimestampText.parse(result["created_at"]?.stringValue ?? "") != nil)

            let second = try await Domain.one(
                Domain.whatsapp(org, "56961234567", ["channel_phone_number": .string(String(org.whatsappNumber.dropFirst()))]),
                database: db, connection: c)
            #expect(second.created == false)
            #expect(second.contactID == first.contactID)
            #expect(second.customerID == first.customerID)
            #expect(second.result?["name"] == "María José Pérez", "nothing overwritten by an absent name")
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 1)
            #expect(try await Domain.count("SELECT count(*) FROM crm.customers", on: c) == 1)
        }
    }

    @Test("every spelling of one number (Brazil, Mexico, Argentina, wa_id, JID) finds one contact that keeps its number")
    func phoneVariants() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(2)
            try await c.run { c in try org.create(on: c) }
            let spellings = [
                ["+55 41 98765-4321", "554187654321", "5541987654321@s.whatsapp.net"],
                ["+5215512345678", "+52 55 1234 5678", "whatsapp:5215512345678"],
                ["+54 9 11 2345-6789", "+54 11 2345 6789", "0054 9 11 2345 6789"],
            ]
            for group in spellings {
                let jobs = try await Domain.run(group.map { Domain.whatsapp(org, $0) }, database: db, connection: c)
                #expect(jobs.allSatisfy { $0.state == "succeeded" })
                #expect(Set(jobs.compactMap(\.contactID)).count == 1, "\(group)")
                #expect(jobs.map(\.created) == [true, false, false])
                #expect(Set(jobs.compactMap { $0.result?["phone"] }).count == 1, "the contact keeps the number it has")
            }
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 3)
        }
    }

    @Test("the same person on two of the client's numbers: two contacts, one customer (the oldest with that phone)")
    func crossChannelCustomer() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(3)
            try await c.run { c in try org.create(on: c) }
            let a = try await Domain.one(Domain.whatsapp(org, "+56 9 1111 2222", ["contact_name": "Ana"]), database: db, connection: c)
            let b = try await Domain.one(
                Domain.whatsapp(org, "56911112222", ["channel_phone_number": .string(org.whatsapp2Number)]), database: db,
                connection: c)
            let web = try await Domain.one(
                [
                    "channel": "web-whatsapp", "channel_phone_number": .string(org.webWhatsappNumber),
                    "contact_phone_number": "56911112222@c.us",
                ], database: db, connection: c)
            #expect(a.contactID != b.contactID && b.contactID != web.contactID)
            #expect(a.customerID == b.customerID && b.customerID == web.customerID)
            #expect(b.created == true)
        }
    }

    @Test("an identifier value links a new contact to its customer; on another customer it is a conflict and nothing is written")
    func identifiers() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(4)
            try await c.run { c in try org.create(on: c) }
            let owner = try await Domain.one(
                Domain.whatsapp(org, "+56 9 3333 4444", ["custom_field_values": Domain.fields([("rut", "12.345.678-5")])]),
                database: db, connection: c)
            let linked = try await Domain.one(
                Domain.webchat(org, "visitor-1", ["custom_field_values": Domain.fields([("rut", "12.345.678-5")])]),
                database: db, connection: c)
            #expect(linked.created == true)
            #expect(linked.customerID == owner.customerID, "the identifier found the customer")

            let other = try await Domain.one(Domain.whatsapp(org, "+56 9 5555 6666"), database: db, connection: c)
            let before = try await Domain.count("SELECT count(*) FROM crm.customer_field_values", on: c)
            let conflict = try await Domain.one(
                Domain.whatsapp(org, "+56 9 5555 6666", [
                    "contact_name": "Should not be written",
                    "custom_field_values": Domain.fields([("rut", "12.345.678-5"), ("company_name", "X")]),
                ]), database: db, connection: c)
            #expect(conflict.state == "failed")
            #expect(conflict.code == "identifier_conflict")
            #expect(conflict.error?["status"] == 400)
            #expect(conflict.details?["identifier_conflict"]?.arrayValue?.first?["key"] == "rut")
            #expect(try await Domain.count("SELECT count(*) FROM crm.customer_field_values", on: c) == before)
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts WHERE name IS NOT NULL", on: c) == 0)
            #expect(other.customerID != owner.customerID)
            // The identifier compares case-insensitively (a RUT's check digit may be K or k).
            let lower = try await Domain.one(
                Domain.whatsapp(org, "+56 9 7777 8888", ["custom_field_values": Domain.fields([("rut", "7.654.321-k")])]),
                database: db, connection: c)
            let upper = try await Domain.one(
                Domain.webchat(org, "visitor-2", ["custom_field_values": Domain.fields([("rut", "7.654.321-K")])]),
                database: db, connection: c)
            #expect(upper.created == true)
            #expect(upper.customerID == lower.customerID)
            #expect(lower.customerID != owner.customerID)
        }
    }

    @Test("identifier values of two different customers in one new contact's job: identifier_conflict")
    func identifiersOfTwoCustomers() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(5)
            try await c.run { c in
                try org.create(on: c)
                try c.execute(
                    "INSERT INTO crm.custom_field_definitions (client_id, key, field_type, is_identifier) VALUES (\(org.client), 'passport', 'text', true)")
            }
            _ = try await Domain.run(
                [
                    Domain.webchat(org, "a", ["custom_field_values": Domain.fields([("rut", "1-9")])]),
                    Domain.webchat(org, "b", ["custom_field_values": Domain.fields([("passport", "P123")])]),
                ], database: db, connection: c)
            let both = try await Domain.one(
                Domain.webchat(org, "c", ["custom_field_values": Domain.fields([("rut", "1-9"), ("passport", "P123")])]),
                database: db, connection: c)
            #expect(both.code == "identifier_conflict")
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 2)
        }
    }

    @Test("contact name and email replace the contact's; the customer's are only filled where blank")
    func nameAndEmailRules() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(6)
            try await c.run { c in try org.create(on: c) }
            let first = try await Domain.one(Domain.whatsapp(org, "+56 9 7777 8888"), database: db, connection: c)
            let second = try await Domain.one(
                Domain.whatsapp(org, "+56 9 7777 8888", ["contact_name": "Profile Name", "contact_email": "a@example.com"]),
                database: db, connection: c)
            let third = try await Domain.one(
                Domain.whatsapp(org, "+56 9 7777 8888", ["contact_name": "New Profile", "contact_email": "b@example.com"]),
                database: db, connection: c)
            #expect(third.result?["name"] == "New Profile")
            #expect(third.result?["email"] == "b@example.com")
            let customer = try await Domain.customer(first.customerID, on: c)
            #expect(try customer.decode(String?.self, "name") == "Profile Name", "filled once, where blank")
            #expect(try customer.decode(String?.self, "email") == "a@example.com")
            #expect(second.customerID == first.customerID)
        }
    }

    @Test("stageId and agentId set the customer's; absent leaves them unchanged")
    func stageAndAgent() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(7)
            try await c.run { c in try org.create(on: c) }
            let set = try await Domain.one(
                Domain.webchat(org, "u1", ["stageId": .string(org.stage.uuidString), "agentId": .string(org.agent.uuidString)]),
                database: db, connection: c)
            _ = try await Domain.one(Domain.webchat(org, "u1"), database: db, connection: c)
            var customer = try await Domain.customer(set.customerID, on: c)
            #expect(try customer.decode(UUID?.self, "stage_id") == org.stage)
            #expect(try customer.decode(UUID?.self, "agent_id") == org.agent)
            let moved = try await Domain.one(
                Domain.webchat(org, "u1", ["stageId": .string(org.stage2.uuidString)]), database: db, connection: c)
            #expect(moved.result?["default_stage_id"] == .string(org.stage2.uuidString.lowercased()))
            customer = try await Domain.customer(set.customerID, on: c)
            #expect(try customer.decode(UUID?.self, "agent_id") == org.agent)
        }
    }

    @Test("meta_data merges into the customer's: nested objects merge, values replace, null removes; keys become snake_case")
    func metaDataMerge() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(8)
            try await c.run { c in try org.create(on: c) }
            let first = try await Domain.one(
                Domain.webchat(org, "u", ["meta_data": ["crm_id": "crm_1029", "Preferred Language": "es", "address": ["city": "Santiago", "zip": "8320000"]]]),
                database: db, connection: c)
            _ = try await Domain.one(
                Domain.webchat(org, "u", ["meta_data": ["crm_id": nil, "lastPage": "/pricing", "address": ["zip": nil, "street": "Alameda 1"]]]),
                database: db, connection: c)
            let meta = try await Domain.customer(first.customerID, on: c).decode(JSONValue.self, "meta_data")
            #expect(meta == ["preferred_language": "es", "last_page": "/pricing", "address": ["city": "Santiago", "street": "Alameda 1"]])
        }
    }

    @Test("metadata keys naming custom fields (by key, label or synonym) become values; well-known keys fill blanks; explicit values win")
    func structurerThroughTheJob() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(9)
            try await c.run { c in try org.create(on: c) }
            let job = try await Domain.one(
                Domain.webchat(org, "u", [
                    "meta_data": [
                        "Presupuesto": "$2.500.000", "Plan": "pro", "Visit Date": "not a date", "Compañía": "Acme SpA",
                        "¿Es VIP?": "Sí", "contacto": ["correo": "ana@example.com"], "Nombre": "Ana",
                    ],
                    "custom_field_values": Domain.fields([("plan", "Enterprise")]),
                ]), database: db, connection: c)
            #expect(job.state == "succeeded", "\(job.error?.jsonText ?? "")")
            #expect(try await Domain.customFields(job.customerID, on: c) == [
                "budget": "2500000", "plan": "Enterprise", "company_name": "Acme SpA", "is_vip": "true",
            ])
            let customer = try await Domain.customer(job.customerID, on: c)
            #expect(try customer.decode(String?.self, "email") == "ana@example.com")
            #expect(try customer.decode(String?.self, "name") == "Ana")
            let meta = try customer.decode(JSONValue.self, "meta_data")
            #expect(meta["presupuesto"] == nil && meta["compania"] == nil && meta["visit_date"] == "not a date")
            #expect(meta["plan"] == "pro", "the explicit value won, so the metadata keeps its own")
            #expect(meta["contacto"] == ["correo": "ana@example.com"])
        }
    }

    @Test("custom field values are stored canonically, and an empty string removes one")
    func customFieldValues() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(10)
            try await c.run { c in try org.create(on: c) }
            let job = try await Domain.one(
                Domain.webchat(org, "u", ["custom_field_values": Domain.fields([
                    ("budget", "3e4"), ("visit_date", "2026-12-11T09:30:00-03:00"), ("is_vip", "Sí"), ("plan", "pro"),
                    ("company_name", .number(JSONNumber(text: "42")!)), ("rut", "1-9"),
                ])]), database: db, connection: c)
            #expect(try await Domain.customFields(job.customerID, on: c) == [
                "budget": "30000", "visit_date": "2026-12-11", "is_vip": "true", "plan": "Pro", "company_name": "42", "rut": "1-9",
            ])
            _ = try await Domain.one(
                Domain.webchat(org, "u", ["custom_field_values": Domain.fields([("budget", ""), ("rut", "")])]), database: db,
                connection: c)
            #expect(try await Domain.customFields(job.customerID, on: c) == [
                "visit_date": "2026-12-11", "is_vip": "true", "plan": "Pro", "company_name": "42",
            ])
        }
    }

    @Test("replaying a job rewrites nothing: no new row versions but the job's own")
    func replayWritesNothing() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(11)
            try await c.run { c in try org.create(on: c) }
            let payload = Domain.whatsapp(org, "+56 9 6123 4567", [
                "contact_name": "María", "contact_email": "m@example.com", "stageId": .string(org.stage.uuidString),
                "agentId": .string(org.agent.uuidString), "meta_data": ["source": "ads", "n": ["a": 1]],
                "custom_field_values": Domain.fields([("rut", "1-9"), ("budget", "1.50"), ("plan", "Pro")]),
            ])
            _ = try await Domain.one(payload, database: db, connection: c)
            let versions: PostgresQuery = """
                SELECT (SELECT string_agg(xmin::text || ctid::text, ',' ORDER BY id) FROM crm.contacts) || '|' ||
                       (SELECT string_agg(xmin::text || ctid::text, ',' ORDER BY id) FROM crm.customers) || '|' ||
                       (SELECT string_agg(xmin::text || ctid::text, ',' ORDER BY definition_id) FROM crm.customer_identifiers)
                """
            let before = try await c.run { c in try c.query(versions)[0].decode(String.self) }
            let replay = try await Domain.one(payload, database: db, connection: c)
            #expect(replay.state == "succeeded")
            #expect(replay.created == false)
            let after = try await c.run { c in try c.query(versions)[0].decode(String.self) }
            #expect(before == after)
        }
    }

    @Test("every error code of the contract", arguments: [
        "invalid_payload", "missing_fields", "invalid_fields", "invalid_custom_field_keys", "invalid_custom_field_values",
        "unknown_channel", "unauthorized",
    ])
    func errorCodes(_ code: String) async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(12)
            try await c.run { c in try org.create(on: c) }
            let payload: JSONValue
            var client: UUID? = nil
            switch code {
            case "invalid_payload": payload = Domain.whatsapp(org, "+56961234567", ["meta_data": "text"])
            case "missing_fields": payload = ["channel": "webchat"]
            case "invalid_fields": payload = Domain.whatsapp(org, "+56961234567", ["stageId": .string(UUID().uuidString)])
            case "invalid_custom_field_keys":
                payload = Domain.whatsapp(org, "+56961234567", ["custom_field_values": Domain.fields([("nope", "x"), ("also_nope", "y"), ("budget", "12,5")])])
            case "invalid_custom_field_values":
                payload = Domain.whatsapp(org, "+56961234567", ["custom_field_values": Domain.fields([("budget", "12,5"), ("visit_date", "2026-02-30")])])
            case "unknown_channel": payload = Domain.whatsapp(org, "+56961234567", ["channel_phone_number": "+19995550000"])
            default:
                payload = Domain.whatsapp(org, "+56961234567")
                client = UUID()
            }
            let job = try await Domain.one(payload, clientID: client, database: db, connection: c)
            #expect(job.state == "failed")
            #expect(job.code == code)
            #expect(job.error?["status"] == .number(JSONNumber(code == "unauthorized" ? 401 : 400)))
            #expect(job.error?["message"]?.stringValue?.isEmpty == false)
            if code == "invalid_custom_field_keys" {
                #expect(job.details?["invalid_custom_field_keys"] == ["nope", "also_nope"])
                #expect(job.details?["invalid_custom_field_values"] == [["key": "budget", "reason": "not a number"]])
            }
            if code == "invalid_custom_field_values" {
                #expect(job.details?["invalid_custom_field_values"]?.arrayValue?.count == 2)
            }
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 0, "nothing written")
            #expect(try await Domain.count("SELECT jsonb_array_length(errors) FROM queue.jobs", on: c) == 1, "failed at once")
        }
    }

    @Test("a transient database error is status 500 'internal', retried, and the job then succeeds")
    func internalErrorIsRetried() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(13)
            try await c.run { c in
                try org.create(on: c)
                try c.executeScript(
                    """
                    CREATE SEQUENCE fail_once;
                    CREATE FUNCTION crm.fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                        -- The set-based run of the job and its re-run on its own.
                        IF nextval('fail_once') <= 2 THEN
                            RAISE EXCEPTION 'simulated statement timeout' USING ERRCODE = '57014';
                        END IF;
                        RETURN NEW;
                    END $$;
                    CREATE TRIGGER fail_once BEFORE INSERT ON crm.contacts FOR EACH ROW EXECUTE FUNCTION crm.fail_once();
                    """)
            }
            let jobs = try await Domain.run([Domain.whatsapp(org, "+56961234567")], database: db, connection: c)
            // The retry waits for its backoff, which --drain does not; once it is due, run again.
            let due = try await eventually(timeout: .seconds(10)) {
                try await Domain.count("SELECT count(*) FROM queue.jobs WHERE run_at <= now()", on: c) == 1
            }
            #expect(due)
            _ = try await Domain.run([], database: db, connection: c)
            let row = try await c.run { c in
                try c.query("SELECT state, attempts, errors FROM queue.jobs WHERE id = \(jobs[0].id)")[0]
            }
            #expect(try row.decode(String.self, "state") == "succeeded")
            #expect(try row.decode(Int.self, "attempts") == 2)
            let errors = try row.decode(JSONValue.self, "errors")
            #expect(errors.arrayValue?.first?["status"] == 500)
            #expect(errors.arrayValue?.first?["code"] == "internal")
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 1)
        }
    }
}
