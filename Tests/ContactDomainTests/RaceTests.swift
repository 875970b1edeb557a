import ContactDomain
import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

/// Jobs for one person racing in separate worker processes.
@Suite("Races between worker processes", .serialized)
struct RaceTests {
    func runWorkers(_ count: Int, _ database: PostgresConfiguration) async throws {
        let workers = try (0..<count).map { _ in
            try ChildProcess(
                TestBinaries.upsertWorker,
                ["run", "--drain", "--concurrency", "4", "--batch-size", "5", "--log-level", "warning",
                 "--database-url", database.connectionString])
        }
        for worker in workers {
            let status = await worker.wait(timeout: .seconds(300))
            #expect(status == 0, "\(worker.outputText.suffix(3000))")
        }
    }

    @Test("40 identities × 10 jobs, each identity written 4 ways, 3 processes at concurrency 4: 40 contacts, 40 customers")
    func identities() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(30)
            try await c.run { c in try org.create(on: c) }
            var payloads: [JSONValue] = []
            for round in 0..<10 {
                for person in 0..<40 {
                    let local = String(format: "%04d%04d", 8700 + person, 1000 + person)  // 8 digits, mobile (starts 8)
                    let nine = "9" + local
                    let way = (round + person) % 4
                    var payload: [String: JSONValue] = ["channel": "whatsapp", "contact_name": .string("Person \(person)")]
                    switch way {
                    case 0:
                        payload["channel_phone_number"] = .string(org.whatsappNumber)
                        payload["contact_phone_number"] = .string("+55 41 \(nine.prefix(5))-\(nine.suffix(4))")
                    case 1:
                        payload["channel_phone_number"] = .string(String(org.whatsappNumber.dropFirst()))
                        payload["contact_phone_number"] = .string("5541\(local)")  // the old 8-digit form
                    case 2:
                        payload["channel_phone_number"] = .string(org.whatsappNumber)
                        payload["contact_phone_number"] = .string("5541\(nine)@s.whatsapp.net")
                    default:
                        // The channel by UUID: a different default ordering key, so these race for real.
                        payload["channel_phone_number"] = .string(org.whatsapp.uuidString)
                        payload["contact_phone_number"] = .string("whatsapp:+5541\(nine)")
                    }
                    payload["meta_data"] = ["round": .number(JSONNumber(round))]
                    payloads.append(.object(payload))
                }
            }
            let jobs = payloads.map { NewJob(queue: "contacts", kind: "contact.upsert", payload: $0) }
            try await c.run { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
            try await runWorkers(3, db)
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE state = 'succeeded'", on: c) == 400)
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 40)
            #expect(try await Domain.count("SELECT count(*) FROM crm.customers", on: c) == 40)
            #expect(try await Domain.count("SELECT count(DISTINCT result ->> 'id') FROM queue.jobs", on: c) == 40)
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE (result ->> 'created')::boolean", on: c) == 40)
        }
    }

    @Test("new contacts racing with one identifier value end with one customer per value")
    func identifierRace() async throws {
        try await Domain.withDatabase { db, c in
            let org = Org(31)
            try await c.run { c in try org.create(on: c) }
            var payloads: [JSONValue] = []
            for pair in 0..<30 {
                for side in ["a", "b", "c"] {
                    payloads.append(
                        Domain.webchat(org, "pair-\(pair)-\(side)", ["custom_field_values": Domain.fields([("rut", .string("R-\(pair)"))])]))
                }
            }
            let jobs = payloads.map { NewJob(queue: "contacts", kind: "contact.upsert", payload: $0) }
            try await c.run { c in _ = try JobProducer.enqueueMany(jobs, on: c) }
            try await runWorkers(3, db)
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs WHERE state = 'succeeded'", on: c) == 90)
            #expect(try await Domain.count("SELECT count(*) FROM crm.contacts", on: c) == 90)
            #expect(try await Domain.count("SELECT count(*) FROM crm.customer_identifiers", on: c) == 30)
            #expect(try await Domain.count("SELECT count(*) FROM crm.customer_field_values WHERE key = 'rut'", on: c) == 30)
            #expect(
                try await Domain.count(
                    "SELECT count(*) FROM crm.customers c WHERE EXISTS (SELECT 1 FROM crm.contacts ct WHERE ct.customer_id = c.id)",
                    on: c) == 30, "each trio of contacts shares one customer")
        }
    }
}
