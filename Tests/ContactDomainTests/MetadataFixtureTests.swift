@testable import ContactDomain
import Foundation
import JSON
import Testing

/// One row of `metadata/cases.ndjson`: a `meta_data` object as chat widgets, CRM exports and
/// form builders send it, the organization's custom field definitions (`metadata/organizations.json`),
/// and what the structurer must make of it.
struct MetadataFixture: Sendable, CustomTestStringConvertible {
    var name: String
    var organization: String
    var input: [String: JSONValue]
    /// Custom field key → the canonical value stored.
    var fields: [String: String]
    /// The metadata merged into the customer's.
    var leftovers: [String: JSONValue]
    var email: String?
    var phone: String?
    var personName: String?

    var testDescription: String { name }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("metadata")

    static func load() throws -> [MetadataFixture] {
        let text = try String(contentsOf: directory.appendingPathComponent("cases.ndjson"), encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let row = try JSONValue.parse(String(line))
            func object(_ key: String) -> [String: JSONValue] { row[key]?.objectValue ?? [:] }
            return MetadataFixture(
                name: row["case"]?.stringValue ?? "?", organization: row["org"]?.stringValue ?? "?", input: object("in"),
                fields: object("fields").compactMapValues(\.stringValue), leftovers: object("out"),
                email: row["profile"]?["email"]?.stringValue, phone: row["profile"]?["phone"]?.stringValue,
                personName: row["profile"]?["name"]?.stringValue)
        }
    }

    static func organizations() throws -> [String: [String: CustomFieldDefinition]] {
        let data = try Data(contentsOf: directory.appendingPathComponent("organizations.json"))
        var out: [String: [String: CustomFieldDefinition]] = ["none": [:]]
        for (name, list) in try JSONValue.parse(data).objectValue ?? [:] {
            var definitions: [String: CustomFieldDefinition] = [:]
            for item in list.arrayValue ?? [] {
                guard let key = item["key"]?.stringValue, let type = item["type"]?.stringValue.flatMap(CustomFieldType.init)
                else { continue }
                definitions[key] = CustomFieldDefinition(
                    id: UUID(), key: key, label: item["label"]?.stringValue, type: type,
                    options: item["options"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                    isIdentifier: item["identifier"] == .bool(true))
            }
            out[name] = definitions
        }
        return out
    }

    static let all: [MetadataFixture] = (try? load()) ?? []
    static let definitions: [String: [String: CustomFieldDefinition]] = (try? organizations()) ?? [:]
}

@Suite("meta_data fixtures: what CRM exports, chat widgets and forms send")
struct MetadataFixtureTests {
    @Test("the fixture table loads, with at least 150 objects in Spanish, Portuguese and English")
    func tableLoads() throws {
        let cases = try MetadataFixture.load()
        #expect(cases.count >= 150)
        #expect(Set(cases.map(\.name)).count == cases.count, "every case has its own name")
        let organizations = try MetadataFixture.organizations()
        for fixture in cases { #expect(organizations[fixture.organization] != nil, "\(fixture.name)") }
    }

    @Test("each object is structured as a person filling the CRM by hand would", arguments: MetadataFixture.all)
    func fixture(_ fixture: MetadataFixture) throws {
        let definitions = try #require(MetadataFixture.definitions[fixture.organization])
        let structured = RuleBasedStructurer().structure(fixture.input, definitions: definitions)
        var fields: [String: String] = [:]
        for (key, input) in structured.customFieldValues {
            let definition = try #require(definitions[key])
            fields[key] = try definition.canonicalize(input).get()
        }
        #expect(fields == fixture.fields)
        #expect(structured.metaData == fixture.leftovers)
        #expect(structured.email == fixture.email)
        #expect(structured.phone?.e164 == fixture.phone)
        #expect(structured.name == fixture.personName)
    }
}

@Suite("meta_data structuring: properties over random objects")
struct StructurerPropertyTests {
    /// Keys and values near the rules' edges: field keys, labels and synonyms in several
    /// spellings, profile keys, and values in every format the readers know and many they refuse.
    static let keys: [String] = [
        "Empresa", "empresa", "EMPRESA", "Compañía", "company", "Company Name", "Razón social", "Presupuesto",
        "presupuestos", "Orçamento", "budget", "Budget", "R.U.T.", "rut", "RUT", "CUIT", "Tax ID", "cpf", "CNPJ",
        "Fecha de visita", "fecha_visita", "visitDate", "¿Es VIP?", "is_vip", "VIP", "Plan", "plan", "Comuna",
        "Cumpleaños", "Fecha de nacimiento", "Data de nascimento", "Aniversário", "Cliente ativo?", "Cidade", "City",
        "Cities", "Segmento", "Funcionários", "Employees", "Language", "Idioma", "source", "Lead source", "Origen",
        "email", "Correo", "telefone", "WhatsApp", "Nombre", "nome", "contacto", "cliente", "user", "empresa_",
        "utm_source", "", " ", "¿?", "__", "x", "Ñandú", "📞", "a-b-c", "ABCDef",
    ]
    static let strings: [String] = [
        "$1.500.000", "1.500.000,50", "R$ 2.500,50", "US$ 2,000.50", "1,5 millones", "1.500", "1,500", "2,5", "-$3",
        "$", "R$", ".5", "1..5", "1.50.000", "USD 1,250", "1.234.567 CLP", "12e3", "0", "-0", "15/03/2026",
        "15-03-2026", "2026/03/15", "15 de marzo de 2026", "15 de março de 2026", "03/15/2026", "31/02/2026",
        "29/02/2028", "1º de abril de 2026", "March 15, 2026", "2026-03-15T10:00:00Z", "Sí", "si", "No", "sim",
        "não", "x", "X", "verdadero", "falso", "talvez", "true", "basico", "PREMIUM", "Varejo", "industria",
        "espanol", "Facebook", "ana@example.com", "not-an-email", "+56 9 6123 4567", "(11) 98765-4321", "Acme SpA",
        "", "  ", "🙂", "\u{0}", "é\u{301}", String(repeating: "9", count: 70), String(repeating: "a", count: 10_001),
    ]

    typealias Generator = PropertyTests.Generator

    static func value(_ random: inout Generator, depth: Int = 0) -> JSONValue {
        switch Int.random(in: 0..<10, using: &random) {
        case 0...4: return .string(strings.randomElement(using: &random) ?? "")
        case 5: return .number(JSONNumber(Int.random(in: -5...3_000_000, using: &random)))
        case 6: return .bool(Bool.random(using: &random))
        case 7: return .null
        case 8 where depth < 2: return .array((0..<Int.random(in: 0...3, using: &random)).map { _ in value(&random, depth: depth + 1) })
        default:
            guard depth < 2 else { return .string("deep") }
            return .object(object(&random, depth: depth + 1))
        }
    }

    static func object(_ random: inout Generator, depth: Int = 0) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for _ in 0..<Int.random(in: 0...8, using: &random) {
            var key = keys.randomElement(using: &random) ?? "k"
            if Bool.random(using: &random) { key = Bool.random(using: &random) ? key.uppercased() : " \(key) " }
            out[key] = value(&random, depth: depth)
        }
        return out
    }

    static let organizations = MetadataFixture.definitions.values.sorted { $0.count < $1.count }

    @Test("structuring is deterministic, idempotent, loses nothing, and fills fields only with values of their type")
    func properties() throws {
        #expect(Self.organizations.count >= 4)
        var random = Generator(state: 17)
        let structurer = RuleBasedStructurer()
        for _ in 0..<10_000 {
            let definitions = Self.organizations.randomElement(using: &random) ?? [:]
            let input = Self.object(&random)
            let out = structurer.structure(input, definitions: definitions)

            // Deterministic: the same members in another order give the same result.
            var reordered: [String: JSONValue] = [:]
            for (key, value) in input.sorted(by: { $0.key > $1.key }) { reordered[key] = value }
            #expect(structurer.structure(reordered, definitions: definitions) == out)

            // Idempotent: what stays is already structured.
            let again = structurer.structure(out.metaData, definitions: definitions)
            #expect(again.metaData == out.metaData, "\(input)")
            #expect(again.customFieldValues.isEmpty, "\(input)")

            // Nothing lost: every key's value stays or became its field's value.
            let winners = Dictionary(input.map { (RuleBasedStructurer.snakeCase($0.key), $0.key) }) { a, b in
                // The same choice as the structurer: the key already in snake_case, else the later one.
                let aIsSnake = RuleBasedStructurer.snakeCase(a) == a, bIsSnake = RuleBasedStructurer.snakeCase(b) == b
                return aIsSnake != bIsSnake ? (aIsSnake ? a : b) : max(a, b)
            }
            var accounted = out.metaData
            for (field, origin) in out.fieldOrigins {
                #expect(out.customFieldValues[field] != nil)
                #expect(accounted[origin.key] == nil)
                accounted[origin.key] = origin.value
            }
            #expect(accounted == winners.mapValues { input[$0] ?? .null }, "\(input)")

            // Each field gets only a value of its type.
            for (field, value) in out.customFieldValues {
                let definition = try #require(definitions[field])
                switch (definition.type, value) {
                case (.number, .string(let text)):
                    #expect(text.wholeMatch(of: /-?[0-9]+(\.[0-9]+)?/) != nil, "\(text)")
                case (.date, .string(let text)):
                    #expect(text.wholeMatch(of: /[0-9]{4}-[0-9]{2}-[0-9]{2}/) != nil && CalendarDate.canonical(text) == text)
                case (.boolean, .bool): break
                case (.options, .string(let text)): #expect(definition.options.contains(text))
                case (.text, .string(let text)):
                    #expect(!text.trimmingSpaces.isEmpty && text.unicodeScalars.count <= 10_000)
                case (.text, .number), (.text, .bool): break
                default: Issue.record("\(field) (\(definition.type)) got \(value)")
                }
            }
        }
    }

    @Test("no synonym belongs to two concepts, and none is empty")
    func synonymTable() {
        var owner: [String: String] = [:]
        for concept in FieldSynonyms.concepts {
            for name in concept.names {
                let form = KeyForm.compact(name)
                #expect(!form.isEmpty, "\(name)")
                for variant in KeyForm.variants(form) {
                    if let other = owner[variant], other != concept.name {
                        Issue.record("\(name) (\(variant)) is in \(other) and \(concept.name)")
                    }
                    owner[variant] = concept.name
                }
            }
        }
        #expect(FieldSynonyms.concepts.count >= 20)
    }

    @Test("key forms", arguments: [
        ("¿Es VIP?", "vip"), ("is_vip", "vip"), ("R.U.T.", "rut"), ("Fecha de visita", "fechavisita"),
        ("fecha_visita", "fechavisita"), ("e-mail", "email"), ("Tax ID", "taxid"), ("Razão Social", "razaosocial"),
        ("Nombre de la empresa", "nombreempresa"), ("Es", "es"), ("¿?", ""),
    ])
    func keyForms(_ key: String, _ form: String) {
        #expect(KeyForm.compact(key) == form)
    }
}
