@testable import ContactDomain
import Foundation
import JSON
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
            if random.next() % 5 == 0 { extra["stageId"] = .string(PostgresUUID.string(random.next() % 2 == 0 ? org.stage : org.stage2)) }
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
    static let snapshotSQL = """
        SELECT coalesce(string_agg(x, E'\\n' ORDER BY x), '') FROM (
            SELECT concat_ws(' | ', ch.phone_number, ch.platform, coalesce(c.phone, c.external_user_id), c.name, c.email,
                   cu.name, cu.email, cu.phone, cu.stage_id, cu.agent_id, cu.meta_data::text,
                   (SELECT string_agg(i, ',' ORDER BY i) FROM (
                        SELECT ch2.platform || ':' || coalesce(ch2.phone_number, '') || ':'
                               || coalesce(c2.phone, c2.external_user_id) AS i
                    FROM crm.contacts c2 JOIN crm.channels ch2 ON ch2.id = c2.channel_id
                    WHERE c2.customer_id = c.customer_id) ids),
                   (SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM crm.customer_field_values v
                    WHERE v.customer_id = c.customer_id)) AS x
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
                    Job(id: Int64(i + 1), queue: "contacts", kind: "contact.upsert", payload: payload)
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
                let snapshot = try c.query(snapshotSQL)[0].decode(String.self, at: 0)
                let customers = try c.query("SELECT count(*) FROM crm.customers")[0].decode(Int.self, at: 0)
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

    @Test("rounds: a job waits for every earlier job it shares a person or identifier value with")
    func rounds() {
        let pending = [("a", ["p:1"]), ("b", ["p:2", "i:x"]), ("c", ["p:1"]), ("d", ["p:3", "i:x"]), ("e", ["p:4"]),
                       ("f", ["p:3"])]
        let (round, rest) = UpsertPlanning.nextRound(pending) { $0.1 }
        #expect(round.map(\.0) == ["a", "b", "e"])
        #expect(rest.map(\.0) == ["c", "d", "f"])
        let (second, last) = UpsertPlanning.nextRound(rest) { $0.1 }
        #expect(second.map(\.0) == ["c", "d"])
        #expect(last.map(\.0) == ["f"])
    }
}
