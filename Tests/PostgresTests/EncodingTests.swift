import Foundation
import JSON
import TextForms
import Postgres
import TestSupport
import Testing

@Suite("Parameter encodings")
struct EncodingTests {
    @Test("UUIDs: lowercase hyphenated out, either case in, anything else refused")
    func uuidText() {
        for _ in 0..<1000 {
            let uuid = UUID()
            let text = UUIDText.string(uuid)
            #expect(text == uuid.uuidString.lowercased())
            #expect(UUIDText.parse(text) == uuid)
            #expect(UUIDText.parse(uuid.uuidString) == uuid)
        }
        for bad in [
            "", "not-a-uuid", "0e2f6a34-9c1b-4c1e-8f3e-2f6a349c1b4", "0e2f6a34-9c1b-4c1e-8f3e-2f6a349c1b4cc",
            "0e2f6a349c1b-4c1e-8f3e-2f6a349c1b4c0", "0e2f6a34-9c1b-4c1e-8f3e-2f6a349c1b4g", "ñe2f6a34-9c1b-4c1e-8f3e-2f6a349c1b4",
        ] {
            #expect(UUIDText.parse(bad) == nil, "\(bad)")
        }
    }

    @Test("array parameters round-trip: quotes, backslashes, commas, braces, NULL, empty, Unicode")
    func arrays() async throws {
        let values: [String?] = [
            "plain", "with \"quotes\"", "back\\slash", "a,b", "{braces}", nil, "", "NULL", " spaced ", "ñandú 👩🏽‍💻",
            "tab\tnew\nline",
        ]
        let uuids = (0..<5).map { _ in UUID() }
        let connection = try await PostgresConnection.connect(try TestDatabase.serverConfiguration())
        let (texts, ids, empty) = try await connection.run { c in
            let texts = try c.query("SELECT v FROM unnest(\(values)::text[]) WITH ORDINALITY AS t(v, n) ORDER BY n")
                .map { try $0.decode(String?.self, "v") }
            let ids = try c.query("SELECT v FROM unnest(\(uuids)::uuid[]) WITH ORDINALITY AS t(v, n) ORDER BY n")
                .map { try $0.decode(UUID.self, "v") }
            let empty = try c.query("SELECT cardinality(\([String]())::text[]) AS n")[0].decode(Int.self, "n")
            return (texts, ids, empty)
        }
        #expect(texts == values)
        #expect(ids == uuids)
        #expect(empty == 0)
    }
}

@Suite("Random UUIDs")
struct RandomUUIDTests {
    @Test("version 4, RFC 4122 variant, and no repeats in 100,000")
    func randomUUIDs() {
        var seen = Set<UUID>()
        for _ in 0..<100_000 {
            let uuid = UUIDText.random()
            let text = UUIDText.string(uuid)
            #expect(Array(text.utf8)[14] == UInt8(ascii: "4"))
            #expect("89ab".utf8.contains(Array(text.utf8)[19]))
            seen.insert(uuid)
        }
        #expect(seen.count == 100_000)
    }
}
