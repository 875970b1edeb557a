@testable import ContactDomain
import Foundation
import Testing

@Suite("Phone numbers")
struct PhoneNumberTests {
    struct Example: Sendable, CustomTestStringConvertible {
        let spelling: String
        let e164: String?
        let matchKey: String?
        var testDescription: String { spelling }
    }

    static let valid: [Example] = [
        .init(spelling: "+56 9 6123 4567", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "56961234567", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "  +56 (9) 6123-4567  ", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "0056 9 6123 4567", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "whatsapp:+56961234567", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "56961234567@s.whatsapp.net", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "56961234567:12@s.whatsapp.net", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "56961234567@c.us", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "+1 (202) 555-0100", e164: "+12025550100", matchKey: "12025550100"),
        .init(spelling: "+44 20 7946 0958", e164: "+442079460958", matchKey: "442079460958"),
        .init(spelling: "+56.9.6123.4567", e164: "+56961234567", matchKey: "56961234567"),
        .init(spelling: "+56/9/61234567", e164: "+56961234567", matchKey: "56961234567"),
        // Brazil: the old 8-digit mobile and the 9-digit one are one person.
        .init(spelling: "+55 41 98765-4321", e164: "+5541987654321", matchKey: "5541987654321"),
        .init(spelling: "554187654321", e164: "+554187654321", matchKey: "5541987654321"),
        .init(spelling: "+55 11 6123-4567", e164: "+551161234567", matchKey: "5511961234567"),
        // Brazil landline (starts 2-5): no ninth digit.
        .init(spelling: "+55 11 3123-4567", e164: "+551131234567", matchKey: "551131234567"),
        // Mexico: 521 + 10 digits is 52 + 10 digits.
        .init(spelling: "+5215512345678", e164: "+5215512345678", matchKey: "525512345678"),
        .init(spelling: "+52 55 1234 5678", e164: "+525512345678", matchKey: "525512345678"),
        .init(spelling: "5215512345678@s.whatsapp.net", e164: "+5215512345678", matchKey: "525512345678"),
        // Argentina: 549 + 10 digits is 54 + 10 digits.
        .init(spelling: "+54 9 11 2345-6789", e164: "+5491123456789", matchKey: "541123456789"),
        .init(spelling: "+54 11 2345-6789", e164: "+541123456789", matchKey: "541123456789"),
        // Limits: 7 and 15 digits.
        .init(spelling: "+1234567", e164: "+1234567", matchKey: "1234567"),
        .init(spelling: "+123456789012345", e164: "+123456789012345", matchKey: "123456789012345"),
    ]

    static let invalid: [(String, PhoneNumber.Problem)] = [
        ("", .empty),
        ("   ", .empty),
        ("12345", .length),
        ("+1234567890123456", .length),
        ("235085806727321@lid", .notAPhoneIdentifier),
        ("120363025246125486@g.us", .notAPhoneIdentifier),
        ("status@broadcast", .notAPhoneIdentifier),
        ("CL.1410018717833190", .notAPhoneIdentifier),
        ("IN.1410018717833190", .notAPhoneIdentifier),
        ("09 6123 4567", .leadingZero),
        ("(02) 2345 6789", .leadingZero),
        ("+0 56961234567", .leadingZero),
        ("+56 9 6123 4567 ext 2", .notAPhoneIdentifier),
        ("56961234567#", .invalidCharacters),
        ("+56+961234567", .invalidCharacters),
        ("abc@s.whatsapp.net", .notAPhoneIdentifier),
    ]

    @Test("valid spellings normalize to E.164 with their match key", arguments: valid)
    func validSpellings(_ example: Example) throws {
        let phone = try PhoneNumber.parse(example.spelling).get()
        #expect(phone.e164 == example.e164)
        #expect(phone.matchKey == example.matchKey)
    }

    @Test("invalid spellings are refused with their reason", arguments: invalid)
    func invalidSpellings(_ spelling: String, _ problem: PhoneNumber.Problem) {
        #expect(throws: problem) { try PhoneNumber.parse(spelling).get() }
    }

    @Test("normalization is idempotent: an E.164 number parses to itself", arguments: valid)
    func idempotent(_ example: Example) throws {
        let once = try PhoneNumber.parse(example.spelling).get()
        let twice = try PhoneNumber.parse(once.e164).get()
        #expect(once == twice)
        #expect(once.matchKey == twice.matchKey)
    }

    @Test("every spelling of one person gives one match key")
    func variantsFold() throws {
        let groups: [[String]] = [
            ["+55 41 98765-4321", "554187654321", "5541987654321@s.whatsapp.net", "+55 (41) 8765-4321"],
            ["+5215512345678", "+52 55 1234 5678", "5215512345678@c.us", "0052 55 1234 5678"],
            ["+54 9 11 2345-6789", "+54 11 2345 6789", "5491123456789", "whatsapp:+541123456789"],
        ]
        for group in groups {
            let keys = Set(try group.map { try PhoneNumber.parse($0).get().matchKey })
            #expect(keys.count == 1, "\(group) → \(keys)")
        }
    }
}

@Suite("UUIDs and e-mail addresses")
struct IdentifierTests {
    @Test("the seed's UUID pattern, exactly", arguments: [
        ("e663fcf8-5d0e-4092-a241-224ac44c18d0", true),
        ("E663FCF8-5D0E-4092-A241-224AC44C18D0", true),
        ("e663fcf8-5d0e-1092-8241-224ac44c18d0", true),
        ("e663fcf8-5d0e-8092-b241-224ac44c18d0", true),
        ("00000000-0000-0000-0000-000000000000", true),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", true),
        ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", false),
        ("00000000-0000-0000-0000-000000000001", false),
        ("e663fcf8-5d0e-0092-a241-224ac44c18d0", false),
        ("e663fcf8-5d0e-9092-a241-224ac44c18d0", false),
        ("e663fcf8-5d0e-4092-c241-224ac44c18d0", false),
        ("e663fcf8-5d0e-4092-7241-224ac44c18d0", false),
        ("e663fcf85d0e4092a241224ac44c18d0", false),
        ("{e663fcf8-5d0e-4092-a241-224ac44c18d0}", false),
        ("e663fcf8-5d0e-4092-a241-224ac44c18d", false),
        ("g663fcf8-5d0e-4092-a241-224ac44c18d0", false),
        (" e663fcf8-5d0e-4092-a241-224ac44c18d0", false),
        ("not-a-uuid", false),
    ])
    func seedUUID(_ text: String, _ matches: Bool) {
        #expect(SeedUUID.matches(text) == matches)
    }

    @Test("plausible e-mail addresses", arguments: [
        ("MJ.Perez@Example.cl", true),
        ("ana+crm@example.co.uk", true),
        ("josé@correo.es", true),
        ("a@b.co", true),
        ("no-at-sign.example.com", false),
        ("two@@example.com", false),
        ("a@b@example.com", false),
        ("@example.com", false),
        ("ana@", false),
        ("ana@localhost", false),
        ("ana@example.c", false),
        ("ana@exa mple.com", false),
        ("ana maria@example.com", false),
        ("ana@-example.com", false),
        ("ana..x@example.com", false),
        ("ana@example..com", false),
        ("ana@example.123", false),
        (String(repeating: "a", count: 64) + "@" + String(repeating: String(repeating: "b", count: 63) + ".", count: 2)
            + String(repeating: "c", count: 57) + ".com", true),
        (String(repeating: "a", count: 64) + "@" + String(repeating: String(repeating: "b", count: 63) + ".", count: 2)
            + String(repeating: "c", count: 58) + ".com", false),
        ("ana@" + String(repeating: "b", count: 64) + ".com", false),
    ])
    func email(_ text: String, _ plausible: Bool) {
        #expect((EmailAddress.problem(text) == nil) == plausible, "\(text): \(EmailAddress.problem(text) ?? "ok")")
    }
}

@Suite("PhoneNumber byte path")
struct PhoneNumberBytePathTests {
    @Test("the ASCII byte path and the Character path agree on 60,000 generated spellings")
    func agree() {
        let pieces = [
            "+", "00", "0", "5", "9", "1", "56", "549", "521", "55", " ", "\t", "\n", "\r", "\r\n", "\u{0B}", "\u{0C}",
            "\u{1C}", "\u{1F}", "-", ".", "/", "(", ")", "@", ":", "s.whatsapp.net", "S.WhatsApp.NET", "c.us", "C.US",
            "whatsapp:", "WhatsApp:", "g.us", "lid", "CL", "x", "#", "*", "1234567", "96123456",
        ]
        var random = PropertyTests.Generator(state: 11)
        var differences: [String] = []
        for _ in 0..<60_000 {
            var spelling = ""
            for _ in 0..<(1 + Int(random.next() % 8)) { spelling += pieces[Int(random.next() % UInt64(pieces.count))] }
            let fast = PhoneNumber.parseASCII(spelling)
            if let fast, fast != PhoneNumber.parseCharacters(spelling) { differences.append(spelling.debugDescription) }
        }
        #expect(differences.isEmpty, "\(differences.prefix(10))")
        #expect(PhoneNumber.parseASCII("+56 9 6123 4567\r\n") == nil)
        #expect(PhoneNumber.parseASCII("+56 9 6123 4567\u{00A0}") == nil)
    }
}

@Suite("ASCII fast paths")
struct ASCIIFastPathTests {
    @Test("e-mail: the byte checks and the scalar checks agree on 60,000 generated addresses")
    func emails() {
        let pieces = ["a", "Z", "9", ".", "..", "@", "-", "_", "+", " ", "\t", "\u{7F}", "\u{01}", "com", "cl", "x-y",
                      "mail", "example", "ñ", String(repeating: "a", count: 64), String(repeating: "b", count: 70)]
        var random = PropertyTests.Generator(state: 3)
        for _ in 0..<60_000 {
            var text = ""
            for _ in 0..<(1 + Int(random.next() % 9)) { text += pieces[Int(random.next() % UInt64(pieces.count))] }
            guard let verdict = EmailAddress.asciiVerdict(text) else { continue }
            let fast: String? = verdict == .valid ? nil : { if case .invalid(let p) = verdict { return p } else { return nil } }()
            #expect(fast == EmailAddress.scalarProblem(text), "\(text.debugDescription)")
        }
    }

    @Test("SeedUUID.uuid reads exactly what Foundation reads, for every text the seed's pattern accepts")
    func seedUUIDs() {
        var texts = ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]
        for _ in 0..<2000 {
            let uuid = UUID()
            texts.append(uuid.uuidString)
            texts.append(uuid.uuidString.lowercased())
        }
        for text in texts {
            #expect(SeedUUID.uuid(text) == UUID(uuidString: text), "\(text)")
        }
        for bad in ["00000000-0000-0000-0000-000000000001", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "not-a-uuid", ""] {
            #expect(SeedUUID.uuid(bad) == nil, "\(bad)")
        }
    }

    @Test("trimming: printable ASCII at both ends is returned as it is; anything else is trimmed as before")
    func trimming() {
        for text in ["abc", " abc", "abc ", "\tabc\n", "a b", "\u{00A0}x\u{2003}", "x\u{0301}", "\r\n", "", " "] {
            let expected = String(text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
            #expect(text.trimmingSpaces == expected, "\(text.debugDescription)")
        }
    }
}
