@testable import ContactDomain
import Foundation
import JSON
import TextForms
import JobQueue
import Postgres
import TestSupport
import Testing

/// The set-based path must write exactly what running the same jobs one at a time writes.
@Suite("contact.upsert set-based")
struct SetBasedTests {
    /// 120 jobs over a few people who meet in every way the rules allow: one phone on three
    /// channels, webchat visitors linked by an identifier, identifier conflicts, repeated
    /// identities with changing names, e-mails, stages, metadata and field values, bad jobs.
    static func scenario(_ org: Org) -> [JSONValue] {
        var random = PropertyTests.Generator(state: 7)
        let phones = ["+56 9 1111 0001", "+56911110002", "+56911110003", "5491122223333", "+5411122223333"]
        let visitors = ["v-1", "v-2", "v-3"]
        let ruts = ["11.111.111-1", "22.222.222-2", "33.333.333-3"]
        var payloads: [JSONValue] = []
        for i in 0..<120 {
            var extra: [String: JSONValue] = [:]
            if random.next() % 3 == 0 { extra["contact_name"] = .string("Name \(random.next() % 5)") }
            if random.next() % 4 == 0 { extra["contact_email"] = .string("p\(random.next() % 4)@example.com") }
            if random.next() % 5 == 0 { extra["stageId"] = .string(UUIDText.string(random.next() % 2 == 0 ? org.stage : org.stage2)) }
            var fields: [(String, JSONValue)] = []
            if random.next() % 3 == 0 { fields.append(("rut", .string(ruts[Int(random.next() % 3)]))) }
            if random.next() % 2 == 0 { fields.append(("budget", .string(["1000", "2500.50", ""][Int(random.next() % 3)]))) }
            if random.next() % 4 == 0 { fields.append(("plan", .string(["free", "PRO"][Int(random.next() % 2)]))) }
            if !fields.isEmpty { extra["custom_field_values"] = Domain.fields(fields) }
            if random.next() % 3 == 0 {
                extra["meta_data"] = [
                    "source": .string("s\(random.next() % 3)"), "nested": ["k\(random.next() % 3)": .number(JSONNumber(i))],
                ]
            }
            if i % 29 == 28 { extra["contact_email"] = "not an email" }
            let who = Int(random.next() % 8)
            if who < 5 {
                var payload = Domain.whatsapp(org, phones[who], extra).objectValue ?? [:]
                switch random.next() % 3 {
                case 0: payload["channel_phone_number"] = .string(org.whatsapp2Number)
                case 1:
                    payload["channel"] = "web-whatsapp"
                    payload["channel_phone_number"] = .string(org.webWhatsappNumber)
                default: break
                }
                payloads.append(.object(payload))
            } else {
                payloads.append(Domain.webchat(org, visitors[who - 5], extra))
            }
        }
        return payloads
    }

    /// Every contact with its customer's data, in a form that does not depend on generated ids.
    static let snapshotSQL: PostgresQuery = """
        SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
            SELECT concat_ws(' | ', ch.phone_number, ch.platform, coalesce(c.phone, c.external_user_id), c.name, c.email,
                   cu.name, cu.email, cu.phone, cu.stage_id, cu.agent_id, cu.meta_data::text,
                   (SELECT string_agg(i, ',' ORDER BY i) FROM (
                        SELECT ch2.platform || ':' || coalesce(ch2.phone_number, '') || ':'
                               || coalesce(c2.phone, c2.external_user_id) AS i
                    FROM crm.contacts c2 JOIN crm.channels ch2 ON ch2.id = c2.channel_id
                    WHERE c2.customer_id = c.customer_id) ids),
                   (SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM crm.customer_field_values v
                    WHERE v.customer_id = c.customer_id),
                   (SELECT string_agg(d.key || '#' || i.identifier_key, ',' ORDER BY d.key) FROM crm.customer_identifiers i
                    JOIN crm.custom_field_definitions d ON d.id = i.definition_id WHERE i.customer_id = c.customer_id)) AS x
            FROM crm.contacts c JOIN crm.customers cu ON cu.id = c.customer_id JOIN crm.channels ch ON ch.id = c.channel_id
        ) s
        """

    /// What one job came to: its error code, or whether it created the contact.
    static func outcome(_ result: Result<JSONValue, any Error>) -> String {
        switch result {
        case .success(let value): return value["created"] == true ? "created" : "found"
        case .failure(let error as ContactError): return error.code
        case .failure(let error): return "other: \(error)"
        }
    }

    static func run(
        _ payloads: [JSONValue], org: Org, setBased: Bool
    ) async throws -> (outcomes: [String], snapshot: String, customers: Int) {
        try await Domain.withDatabase { _, connection in
            try await connection.run { c in
                try org.create(on: c)
                let handler = ContactUpsertHandler()
                let jobs = payloads.enumerated().map { i, payload in
                    let job = Job(id: Int64(i + 1), queue: "contacts", kind: "contact.upsert", payload: payload)
                    return DecodedJob(job: job, work: handler.decode(job))
                }
                let results: [Result<JSONValue, any Error>] = try await c.withTransaction { c in
                    try await handler.prepareBatch(jobs, on: c)
                    if setBased { return try await handler.handleBatch(jobs, on: c, logger: Domain.logger) }
                    var results: [Result<JSONValue, any Error>] = []
                    for job in jobs {
                        do {
                            results.append(.success(try await c.withSavepoint { c in
                                try await handler.handle(job, on: c, logger: Domain.logger)
                            }))
                        } catch {
                            results.append(.failure(error))
                        }
                    }
                    return results
                }
                let snapshot = try c.query(snapshotSQL)[0].decode(String.self)
                let customers = try c.query("SELECT count(*) FROM crm.customers")[0].decode(Int.self)
                return (results.map(outcome), snapshot, customers)
            }
        }
    }

    @Test("120 interlinked jobs in one set give the same outcomes and rows as one job at a time")
    func sameAsOneByOne() async throws {
        let org = Org(71)
        let payloads = Self.scenario(org)
        let sequential = try await Self.run(payloads, org: org, setBased: false)
        let setBased = try await Self.run(payloads, org: org, setBased: true)
        #expect(setBased.outcomes == sequential.outcomes)
        #expect(setBased.customers == sequential.customers)
        #expect(setBased.snapshot == sequential.snapshot)
        // The scenario exercises what it claims to.
        #expect(sequential.outcomes.contains("created") && sequential.outcomes.contains("found"))
        #expect(sequential.outcomes.contains("identifier_conflict"))
        #expect(sequential.outcomes.contains("invalid_fields"))
        #expect(sequential.customers < 8)
    }

    @Test("one person's backlog in one batch, planned in memory, writes what one job at a time writes")
    func hotPerson() async throws {
        let org = Org(72)
        func job(_ phone: String, _ extra: [String: JSONValue]) -> JSONValue { Domain.whatsapp(org, phone, extra) }
        let p = "+56 9 7200 0001"
        let payloads: [JSONValue] = [
            job(p, ["contact_name": "P one", "custom_field_values": Domain.fields([("rut", "7.777.777-7")])]),
            job(p, ["custom_field_values": Domain.fields([("rut", "")]), "stageId": .string(UUIDText.string(org.stage))]),
            job(p, ["custom_field_values": Domain.fields([("rut", "7.777.777-7"), ("budget", "10")])]),
            job(p, ["contact_email": "p@example.com", "meta_data": ["a": 1]]),
            // Another phone with the same RUT: the value belongs to P's customer now.
            job("+56 9 7200 0002", ["custom_field_values": Domain.fields([("rut", "7.777.777-7")])]),
            job(p, ["custom_field_values": Domain.fields([("rut", "")]), "meta_data": ["a": nil, "b": 2]]),
            job(p, ["contact_name": "P again", "contact_email": "not an email"]),
            job(p, ["contact_name": "P last", "stageId": .string(UUIDText.string(org.stage2))]),
            // The RUT is free again: a new person with it gets a customer of their own.
            job("+56 9 7200 0003", ["custom_field_values": Domain.fields([("rut", "7.777.777-7")])]),
        ]
        let sequential = try await Self.run(payloads, org: org, setBased: false)
        let setBased = try await Self.run(payloads, org: org, setBased: true)
        #expect(setBased.outcomes == sequential.outcomes)
        #expect(setBased.customers == sequential.customers)
        #expect(setBased.snapshot == sequential.snapshot)
        #expect(sequential.outcomes == ["created", "found", "found", "found", "created", "found", "invalid_fields", "found", "created"])
        #expect(sequential.customers == 2)
    }

    @Test("the contacts' write is planned once per session, whatever the batch's size, and leaves planning as it was")
    func writePlannedOnce() async throws {
        let org = Org(73)
        let batches = 8
        let (generic, custom, modes) = try await Domain.withDatabase { _, connection in
            try await connection.run { c in
                try org.create(on: c)
                let handler = ContactUpsertHandler()
                var modes: [String] = []
                for batch in 0..<batches {
                    // Batches of different sizes, each of new people: every one writes.
                    let jobs = (0...batch * 3).map { i in
                        let payload = Domain.whatsapp(org, "+56 9 7300 \(String(format: "%02d%02d", batch, i))")
                        let job = Job(id: Int64(batch * 100 + i + 1), queue: "contacts", kind: "contact.upsert", payload: payload)
                        return DecodedJob(job: job, work: handler.decode(job))
                    }
                    modes.append(try await c.withTransaction { c in
                        try await handler.prepareBatch(jobs, on: c)
                        let results = try await handler.handleBatch(jobs, on: c, logger: Domain.logger)
                        #expect(results.allSatisfy { (try? $0.get()) != nil })
                        // The handler's later statements in the transaction are planned as usual.
                        return try c.query("SELECT current_setting('plan_cache_mode') AS mode")[0].decode(String.self, "mode")
                    })
                }
                let plans = try c.query(
                    """
                    SELECT generic_plans, custom_plans FROM pg_prepared_statements
                    WHERE statement LIKE '%INSERT INTO crm.customers%' AND statement NOT LIKE '%pg_prepared_statements%'
                    """)
                #expect(plans.count == 1)
                return (
                    try plans.first?.decode(Int.self, "generic_plans") ?? 0,
                    try plans.first?.decode(Int.self, "custom_plans") ?? -1, modes
                )
            }
        }
        #expect(custom == 0)
        #expect(generic == batches)
        #expect(modes == Array(repeating: "auto", count: batches))
    }

    @Test("rounds: a round is a prefix of independent jobs; it ends at the first job that depends on an earlier one")
    func rounds() {
        let pending = [("a", ["p:1"]), ("b", ["p:2", "i:x"]), ("c", ["p:1"]), ("d", ["p:3", "i:x"]), ("e", ["p:4"]),
                       ("f", ["p:3"])]
        let (round, rest) = UpsertPlanning.nextRound(pending) { $0.1 }
        #expect(round.map(\.head.0) == ["a", "b"])
        #expect(rest.map(\.0) == ["c", "d", "e", "f"])
        let (second, last) = UpsertPlanning.nextRound(rest) { $0.1 }
        #expect(second.map(\.head.0) == ["c", "d", "e"])
        #expect(last.map(\.0) == ["f"])
    }

    @Test("chains: later jobs of a round job's own contact ride along, until a job that must wait")
    func chains() {
        // Same letter = same contact; keys as the handler names them.
        let pending = [("a1", ["p:1"]), ("b1", ["p:2", "i:x"]), ("a2", ["p:1"]), ("b2", ["p:2"]), ("c1", ["p:3", "i:x"]),
                       ("a3", ["p:1"])]
        let (round, rest) = UpsertPlanning.nextRound(pending, keys: { $0.1 }) { head, item in
            head.0.first == item.0.first && Set(item.1).isSubset(of: head.1)
        }
        #expect(round.map(\.head.0) == ["a1", "b1"])
        #expect(round.map { $0.followers.map(\.0) } == [["a2"], ["b2"]])
        // c1 shares i:x with b1 and is no continuation of it: it ends the round, and a3 may not
        // overtake it.
        #expect(rest.map(\.0) == ["c1", "a3"])
        let (hot, none) = UpsertPlanning.nextRound((1...300).map { ("h\($0)", ["p:9"]) }, keys: { $0.1 }) { _, _ in true }
        #expect(hot.count == 1 && hot[0].followers.count == 299 && none.isEmpty)
    }
}
