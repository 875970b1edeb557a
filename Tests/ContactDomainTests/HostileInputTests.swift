import ContactDomain
import Foundation
import JSON
import JobQueue
import Postgres
import TestSupport
import Testing

@Suite("Hostile input")
struct HostileInputTests {
    @Test("deep nesting, NUL, invalid UTF-8, lone surrogates and truncation are refused with a clear error", arguments: [
        (String(repeating: "[", count: 100_000), JSONParseError.Code.tooDeep),
        (String(repeating: "{\"a\":", count: 70) + "1" + String(repeating: "}", count: 70), .tooDeep),
        ("{\"a\":\"x\u{0}y\"}", .nulCharacter),
        (#"{"a":"\u0000"}"#, .nulCharacter),
        (#"{"a":"\ud800"}"#, .syntax),
        (#"{"a":"\udc00x"}"#, .syntax),
        (#"{"a":1,}"#, .syntax),
        (#"{"a":01}"#, .syntax),
        (#"{"a":tru}"#, .syntax),
        (#"{"a":"unterminated"#, .syntax),
        (#"{"a":1} {"b":2}"#, .syntax),
        ("", .syntax),
    ])
    func refused(_ text: String, _ code: JSONParseError.Code) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
        do {
            _ = try JSONValue.parse(text)
        } catch {
            #expect(error.code == code, "\(error)")
        }
    }

    @Test("invalid UTF-8 inside a string is refused")
    func invalidUTF8() {
        let bytes: [UInt8] = Array(#"{"a":""#.utf8) + [0xFF, 0xFE] + Array(#""}"#.utf8)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(bytes) }
    }

    @Test("numbers too large for any Swift type pass through exactly; too large for PostgreSQL are flagged")
    func hugeNumbers() throws {
        let value = try JSONValue.parse(#"{"big":123456789012345678901234567890123456789,"tiny":1e-400,"huge":1e400}"#)
        #expect(value["big"] == .number(JSONNumber(text: "123456789012345678901234567890123456789")!))
        #expect(value.jsonText.contains("123456789012345678901234567890123456789"))
        #expect(value.firstNumberOutOfPostgresRange == nil)
        #expect(try JSONValue.parse(#"{"x":1e999999}"#).firstNumberOutOfPostgresRange?.text == "1e999999")
        #expect(try JSONValue.parse(#"[1e-99999]"#).firstNumberOutOfPostgresRange != nil)
        // In a number custom field, beyond the accepted range it is "not a number", not a crash.
        let definition = CustomFieldDefinition(id: UUID(), key: "n", type: .number)
        #expect(throws: CustomFieldValueProblem.self) { try definition.canonicalize(.string("1e999999")).get() }
    }

    @Test("huge arrays: 200 custom field values pass, 201 are refused, 100,000 are refused without effort")
    func hugeArrays() {
        func payload(_ count: Int) -> JSONValue {
            [
                "channel": "webchat", "channel_id": "e663fcf8-5d0e-4092-a241-224ac44c18d0", "external_user_id": "u",
                "custom_field_values": .array((0..<count).map { ["key": .string("k\($0)"), "value": "v"] }),
            ]
        }
        #expect((try? ContactRequest.validate(payload(200)).get()) != nil)
        guard case .failure(let tooMany) = ContactRequest.validate(payload(201)) else {
            Issue.record("201 values accepted")
            return
        }
        #expect(tooMany.code == "invalid_fields")
        guard case .failure(let huge) = ContactRequest.validate(payload(100_000)) else {
            Issue.record("100,000 values accepted")
            return
        }
        #expect(huge.code == "invalid_payload", "over 256 KiB")
    }

    @Test("a stored payload nested deeper than the worker reads fails its job, not the worker")
    func deepStoredPayload() async throws {
        try await Domain.withDatabase { db, c in
            let deep = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
            try await c.run { c in
                try c.execute(
                    "INSERT INTO queue.jobs (payload) VALUES (jsonb_build_object('channel', 'webchat', 'meta_data', \(deep)::jsonb))")
            }
            let org = Org(50)
            try await c.run { c in try org.create(on: c) }
            let jobs = try await Domain.run([Domain.webchat(org, "after-the-bad-one")], database: db, connection: c)
            #expect(jobs.first?.state == "succeeded", "the worker survived and went on")
            let bad = try await c.run { c in
                try c.query("SELECT state, last_error FROM queue.jobs ORDER BY id LIMIT 1")[0]
            }
            #expect(try bad.decode(String.self, "state") == "failed")
            #expect(try bad.decode(JSONValue.self, "last_error")["code"] == "invalid_payload")
        }
    }

    @Test("CSV with invalid UTF-8 and NDJSON with numbers PostgreSQL cannot hold are refused with line numbers")
    func enqueueRefusals() async throws {
        try await Domain.withDatabase { db, c in
            let url = db.connectionString
            let csv = try await ChildProcess.run(
                "/bin/sh",
                ["-c", "printf 'channel,contact_name\\nwebchat,ok\\nwebchat,\\377bad\\n' | \"$0\" enqueue - --format csv --database-url \"$1\"",
                 TestBinaries.upsertWorker, url])
            #expect(csv.status == 1)
            #expect(csv.output.contains("line 3: invalid UTF-8"), "\(csv.output)")
            let ndjson = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--database-url", url],
                input: "{\"a\":1}\n{\"meta_data\":{\"n\":1e999999}}\n")
            #expect(ndjson.status == 1)
            #expect(ndjson.output.contains("line 2: number 1e999999 is too large"), "\(ndjson.output)")
            let nul = try await ChildProcess.run(
                TestBinaries.upsertWorker, ["enqueue", "-", "--database-url", url], input: "{\"a\":\"\\u0000\"}\n")
            #expect(nul.status == 1)
            #expect(nul.output.contains("line 1"))
            #expect(try await Domain.count("SELECT count(*) FROM queue.jobs", on: c) == 0)
        }
    }
}

@Suite("Properties, over many generated inputs")
struct PropertyTests {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("phone normalization never crashes, is idempotent, and accepts only E.164 with 7 to 15 digits")
    func phoneProperties() throws {
        var random = Generator(state: 1)
        let alphabet = Array("0123456789012345678901234567890123456789+ -./()@:whatsapp.netlidgcu\u{00A0}\t")
        for _ in 0..<20_000 {
            let length = Int.random(in: 0...24, using: &random)
            let text = String((0..<length).map { _ in alphabet.randomElement(using: &random) ?? "0" })
            guard case .success(let phone) = PhoneNumber.parse(text) else { continue }
            let digits = phone.e164.dropFirst()
            #expect(phone.e164.first == "+" && (7...15).contains(digits.count) && digits.first != "0")
            let allDigits = digits.allSatisfy { $0.isNumber }
            #expect(allDigits)
            let again = try PhoneNumber.parse(phone.e164).get()
            #expect(again == phone, "\(text)")
            #expect(again.matchKey == phone.matchKey)
            #expect(try PhoneNumber.parse(phone.matchKey).get().matchKey == phone.matchKey, "the key is a fixed point")
        }
    }

    static func randomJSON(_ random: inout Generator, depth: Int = 0) -> JSONValue {
        let strings: [JSONValue] = [
            "whatsapp", "web-whatsapp", "webchat", "", " ", "+56 9 6123 4567", "56961234567@s.whatsapp.net", "123@lid",
            "e663fcf8-5d0e-4092-a241-224ac44c18d0", "00000000-0000-0000-0000-000000000001", "a@b.co", "x", "ñ",
            "rut", "budget", "12,5", "true", "\u{1F600}",
        ]
        let keys = ["channel", "channel_phone_number", "contact_phone_number", "channel_id", "external_user_id",
                    "contact_name", "contact_email", "stageId", "agentId", "meta_data", "custom_field_values", "key", "value"]
        switch Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &random) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &random))
        case 2: return .number(JSONNumber(Int.random(in: -5...5, using: &random)))
        case 3, 4: return strings.randomElement(using: &random) ?? ""
        case 5:
            return .array((0..<Int.random(in: 0...4, using: &random)).map { _ in randomJSON(&random, depth: depth + 1) })
        default:
            var object: [String: JSONValue] = [:]
            for _ in 0..<Int.random(in: 0...8, using: &random) {
                object[keys.randomElement(using: &random) ?? "x"] = randomJSON(&random, depth: depth + 1)
            }
            return .object(object)
        }
    }

    @Test("validation never crashes, and what it accepts satisfies every rule")
    func validationProperties() {
        var random = Generator(state: 2)
        var accepted = 0
        for _ in 0..<30_000 {
            var value = Self.randomJSON(&random)
            if Bool.random(using: &random) {
                // A valid payload with a few fields replaced by random values.
                var object: [String: JSONValue] = Bool.random(using: &random)
                    ? ["channel": "whatsapp", "channel_phone_number": "+56 2 2345 6789", "contact_phone_number": "56961234567"]
                    : ["channel": "webchat", "channel_id": "e663fcf8-5d0e-4092-a241-224ac44c18d0", "external_user_id": "u-1"]
                let keys = ["contact_name", "contact_email", "stageId", "meta_data", "custom_field_values", "channel_id",
                            "contact_phone_number", "external_user_id"]
                for _ in 0..<Int.random(in: 0...2, using: &random) {
                    object[keys.randomElement(using: &random) ?? "x"] = Self.randomJSON(&random, depth: 2)
                }
                value = .object(object)
            }
            switch ContactRequest.validate(value) {
            case .success(let request):
                accepted += 1
                if case .phone(let phone) = request.identity {
                    #expect(request.platform.usesPhone)
                    #expect(phone.e164.hasPrefix("+"))
                } else {
                    #expect(request.platform == .webchat)
                }
                #expect(request.name.map { !$0.isEmpty && $0.unicodeScalars.count <= 255 } ?? true)
                #expect(request.email.map { EmailAddress.problem($0) == nil } ?? true)
                #expect(Set(request.customFieldValues.map(\.key)).count == request.customFieldValues.count)
            case .failure(let error):
                #expect(!error.isEmpty)
                #expect(error.jobFailure.status == 400 || error.jobFailure.status == 401)
            }
            // The serializer's output parses back to the same value.
            #expect((try? JSONValue.parse(value.jsonText)) == value)
        }
        #expect(accepted > 0, "the generator reaches valid payloads too")
    }
}
