@testable import ContactDomain
import Foundation
import JSON
import Testing

@Suite("The metadata structurer and the merge")
struct StructurerTests {
    @Test("keys become snake_case", arguments: [
        ("source", "source"), ("Fecha de Visita", "fecha_de_visita"), ("preferredLanguage", "preferred_language"),
        ("UTM-Campaign", "utm_campaign"), ("HTTPStatus", "http_status"), ("  Teléfono  ", "telefono"),
        ("Correo Electrónico", "correo_electronico"), ("crm_id", "crm_id"), ("utm__source", "utm_source"),
        ("Año", "ano"), ("orderID2", "order_id2"), ("already_snake", "already_snake"), ("ÉXITO", "exito"),
        ("wa-bsuid", "wa_bsuid"), ("!!", "!!"),
    ])
    func snakeCase(_ key: String, _ expected: String) {
        #expect(RuleBasedStructurer.snakeCase(key) == expected)
    }

    static let definitions: [String: CustomFieldDefinition] = [
        "budget": CustomFieldDefinition(id: UUID(), key: "budget", type: .number),
        "preferred_language": CustomFieldDefinition(id: UUID(), key: "preferred_language", type: .options, options: ["es", "pt", "en"]),
        "visit_date": CustomFieldDefinition(id: UUID(), key: "visit_date", type: .date),
    ]

    @Test("metadata keys that name a custom field, with a valid value, become that field")
    func customFieldsFromMetadata() {
        let structured = RuleBasedStructurer().structure(
            ["Budget": "1500", "preferredLanguage": "ES", "Visit Date": "someday", "source": "landing"],
            definitions: Self.definitions)
        #expect(structured.customFieldValues == ["budget": .string("1500"), "preferred_language": .string("es")], "the option's own spelling")
        #expect(structured.metaData == ["visit_date": "someday", "source": "landing"], "invalid values stay, not an error")
    }

    @Test("well-known keys with valid values fill the profile and stay in the metadata")
    func wellKnownKeys() {
        let structured = RuleBasedStructurer().structure(
            ["Correo": " ana@example.com ", "Teléfono": "+56 9 6123 4567", "Nombre": "Ana Torres", "other": 1],
            definitions: [:])
        #expect(structured.email == "ana@example.com")
        #expect(structured.phone?.e164 == "+56961234567")
        #expect(structured.name == "Ana Torres")
        #expect(structured.metaData["correo"] == " ana@example.com ")
        #expect(structured.metaData["other"] == 1)
        let invalid = RuleBasedStructurer().structure(["email": "not-an-email", "phone": "123"], definitions: [:])
        #expect(invalid.email == nil && invalid.phone == nil)
        #expect(invalid.metaData == ["email": "not-an-email", "phone": "123"])
    }

    @Test("structuring is deterministic when two keys normalize alike")
    func collisions() {
        let a = RuleBasedStructurer().structure(["Source": "A", "source": "B"], definitions: [:])
        #expect(a.metaData == ["source": "B"], "the key already in snake_case wins")
    }

    @Test("merge: objects merge key by key, other values replace, null removes at any depth")
    func merge() {
        let existing: [String: JSONValue] = [
            "crm_id": "crm_1", "tags": ["a"], "address": ["city": "Santiago", "zip": "8320000"], "keep": true,
        ]
        let patch: [String: JSONValue] = [
            "crm_id": nil, "tags": ["b"], "address": ["zip": nil, "street": "Alameda 1"], "new": 1, "absent": nil,
        ]
        #expect(
            MetadataMerge.merge(existing, patch) == [
                "tags": ["b"], "address": ["city": "Santiago", "street": "Alameda 1"], "keep": true, "new": 1,
            ])
        #expect(MetadataMerge.merge(existing, [:]) == existing)
        #expect(MetadataMerge.merge(["a": 1], ["a": ["b": nil, "c": 2]]) == ["a": ["c": 2]])
    }
}

@Suite("snake_case is a fixed point")
struct SnakeCaseFixedPointTests {
    /// Every scalar that has case, or whose lowercase differs from it, next to letters of
    /// either case and digits: snakeCase of the result is the result. A scalar that is
    /// uppercase but has no lowercase (`ϒ`, U+03D2) once came out as it went in, and the
    /// second pass took it for a new word (found by the fuzzer: `"aaԜϒ6"`).
    @Test("snakeCase of snakeCase is snakeCase, for every cased scalar")
    func fixedPoint() {
        var checked = 0
        for value in UInt32(0x80)...0x1_FFFF {
            guard let scalar = Unicode.Scalar(value) else { continue }
            guard scalar.properties.isCased || scalar.properties.changesWhenLowercased else { continue }
            let s = String(scalar)
            for key in ["a" + s + "6", "A" + s + "B", "Ԝ" + s + "6", "x" + s + s + "y", s + "Ab", "9" + s] {
                let once = RuleBasedStructurer.snakeCase(key)
                #expect(RuleBasedStructurer.snakeCase(once) == once, "\(key) → \(once)")
            }
            checked += 1
        }
        #expect(checked > 2_000)
        let found = "eta_d9@aa4284\u{51C}\u{3DA}6-688x_d9:@aa4284\u{51C}\u{3D2}6e-44el"
        let once = RuleBasedStructurer.snakeCase(found)
        #expect(RuleBasedStructurer.snakeCase(once) == once)
    }
}

@Suite("snake_case fast path")
struct SnakeCaseFastPathTests {
    @Test("keys taken as already snake_case are exactly those snakeCase leaves unchanged")
    func fastPathAgrees() {
        let alphabet = Array("ab_z09_A-. é")
        var random = PropertyTests.Generator(state: 5)
        for _ in 0..<20_000 {
            let key = String((0..<(Int(random.next() % 7))).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
            if RuleBasedStructurer.isSnakeCase(key) {
                #expect(RuleBasedStructurer.snakeCase(key) == key, "\(key)")
            }
        }
        #expect(RuleBasedStructurer.isSnakeCase("utm_campaign"))
        // The ASCII path gives what the scalar path gives.
        let ascii = Array("aZ_z9- .?Hb\tAB")
        for _ in 0..<20_000 {
            let key = String((0..<(Int(random.next() % 9))).map { _ in ascii[Int(random.next() % UInt64(ascii.count))] })
            #expect(RuleBasedStructurer.asciiSnakeCase(key) == RuleBasedStructurer.scalarSnakeCase(key), "\(key)")
        }
        #expect(RuleBasedStructurer.asciiSnakeCase("Año") == nil)
        #expect(!RuleBasedStructurer.isSnakeCase("_x") && !RuleBasedStructurer.isSnakeCase("x_") && !RuleBasedStructurer.isSnakeCase("a__b"))
        #expect(!RuleBasedStructurer.isSnakeCase("") && !RuleBasedStructurer.isSnakeCase("pageViews"))
    }
}
