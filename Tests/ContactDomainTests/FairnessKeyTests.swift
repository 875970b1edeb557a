import ContactDomain
import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Fairness keys of contact jobs")
struct FairnessKeyTests {
    @Test("a trusted INSERT without client_id is fair among its channel's organization, whichever way it names the channel")
    func channelOrganization() async throws {
        try await Domain.withDatabase { database, c in
            let a = Org(40)
            let b = Org(41)
            try await c.run { c in
                try a.create(on: c)
                try b.create(on: c)
            }
            let payloads: [JSONValue] = [
                Domain.whatsapp(a, "+56 9 4000 0001"),
                ["channel": "whatsapp", "channel_phone_number": .string(a.whatsapp.uuidString), "contact_phone_number": "+56940000002"],
                ["channel": "web-whatsapp", "channel_phone_number": .string(b.webWhatsappNumber), "contact_phone_number": "+56940000003"],
                Domain.webchat(b, "visitor-1"),
                ["channel": "webchat", "channel_id": .string(UUID().uuidString), "external_user_id": "nobody"],
                ["channel": "whatsapp", "channel_phone_number": "+1 555 000 0000", "contact_phone_number": "+56940000004"],
                ["channel": 42],
            ]
            let keys = try await c.run { c in
                try payloads.map { payload in
                    try c.query(
                        "INSERT INTO queue.jobs (payload) VALUES (\(payload)::jsonb) RETURNING fairness_key")[0].decode(String.self, "fairness_key")
                }
            }
            let orgA = a.client.uuidString.lowercased()
            let orgB = b.client.uuidString.lowercased()
            #expect(keys == [orgA, orgA, orgB, orgB, "", "", ""])
            // A client_id wins over the channel's organization.
            let explicit = try await c.run { c in
                try c.query(
                    "INSERT INTO queue.jobs (payload, client_id) VALUES (\(Domain.whatsapp(a, "+56 9 4000 0005"))::jsonb, \(b.client)) RETURNING fairness_key")[0].decode(String.self, "fairness_key")
            }
            #expect(explicit == orgB)
        }
    }

    @Test("a job whose channel is unknown still runs, and fails with unknown_channel")
    func unknownChannelRuns() async throws {
        try await Domain.withDatabase { database, c in
            let a = Org(42)
            try await c.run { c in try a.create(on: c) }
            let unknown: JSONValue = [
                "channel": "whatsapp", "channel_phone_number": "+1 555 000 0001", "contact_phone_number": "+56940000010",
            ]
            try await c.run { c in
                try c.execute(
                    "INSERT INTO queue.jobs (payload) VALUES (\(unknown)::jsonb), (\(Domain.whatsapp(a, "+56 9 4000 0011"))::jsonb)")
            }
            let finished = try await Domain.run([], database: database, connection: c)
            #expect(finished.isEmpty)
            let states = try await c.run { c in
                try c.query("SELECT state, last_error ->> 'code' AS code FROM queue.jobs ORDER BY id").map {
                    "\(try $0.decode(String.self, "state")) \(try $0.decode(String?.self, "code") ?? "-")"
                }
            }
            #expect(states == ["failed unknown_channel", "succeeded -"])
        }
    }
}
