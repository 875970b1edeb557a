import ContactDomain
import Foundation
import JSON
import Testing

@Suite("Custom field values")
struct CustomFieldTests {
    static func definition(_ type: CustomFieldType, options: [String] = []) -> CustomFieldDefinition {
        CustomFieldDefinition(id: UUID(), key: "f", type: type, options: options)
    }

    static let good: [(CustomFieldType, CustomFieldInput, String)] = [
        (.text, .string("Acme SpA"), "Acme SpA"),
        (.text, .string("  spaced  "), "  spaced  "),
        (.text, .number(JSONNumber(text: "12.50")!), "12.50"),
        (.text, .bool(true), "true"),
        (.text, .string(String(repeating: "é", count: 10_000)), String(repeating: "é", count: 10_000)),
        (.number, .string("1500000"), "1500000"),
        (.number, .string("-12.5"), "-12.5"),
        (.number, .string("3e4"), "30000"),
        (.number, .string("1.50e1"), "15.0"),
        (.number, .string("1e-2"), "0.01"),
        (.number, .string(".5"), "0.5"),
        (.number, .string("5."), "5"),
        (.number, .string("007"), "7"),
        (.number, .string("-0"), "0"),
        (.number, .string("-0.00"), "0.00"),
        (.number, .string(" 42 "), "42"),
        (.number, .string("+3"), "3"),
        (.number, .number(JSONNumber(text: "2.50")!), "2.50"),
        (.number, .number(JSONNumber(text: "1E+3")!), "1000"),
        (.date, .string("2026-12-03"), "2026-12-03"),
        (.date, .string("2024-02-29"), "2024-02-29"),
        (.date, .string("2026-12-11T09:30:00-03:00"), "2026-12-11"),
        (.date, .string("2026-12-11T23:30:00Z"), "2026-12-11"),
        (.date, .string("2026-12-11T23:30:00.123+0530"), "2026-12-11"),
        (.date, .string("2026-12-11 23:30"), "2026-12-11"),
        (.boolean, .string("true"), "true"),
        (.boolean, .string("FALSE"), "false"),
        (.boolean, .string("1"), "true"),
        (.boolean, .string("0"), "false"),
        (.boolean, .string("Yes"), "true"),
        (.boolean, .string("no"), "false"),
        (.boolean, .string("si"), "true"),
        (.boolean, .string("Sí"), "true"),
        (.boolean, .bool(false), "false"),
        (.boolean, .number(JSONNumber(1)), "true"),
        (.options, .string("pro"), "Pro"),
        (.options, .string("ENTERPRISE"), "Enterprise"),
        (.options, .string(" Free "), "Free"),
    ]

    static let bad: [(CustomFieldType, CustomFieldInput, String)] = [
        (.text, .string(String(repeating: "x", count: 10_001)), "text longer than 10,000 characters"),
        (.number, .string("12,5"), "not a number"),
        (.number, .string("1.2.3"), "not a number"),
        (.number, .string("abc"), "not a number"),
        (.number, .string("1e"), "not a number"),
        (.number, .string("."), "not a number"),
        (.number, .string("NaN"), "not a number"),
        (.number, .string("Infinity"), "not a number"),
        (.number, .string("1e999999"), "not a number"),
        (.number, .bool(true), "not a number"),
        (.date, .string("2026-02-30"), "not a date (YYYY-MM-DD)"),
        (.date, .string("2025-02-29"), "not a date (YYYY-MM-DD)"),
        (.date, .string("2026-13-01"), "not a date (YYYY-MM-DD)"),
        (.date, .string("03/12/2026"), "not a date (YYYY-MM-DD)"),
        (.date, .string("2026-12-3"), "not a date (YYYY-MM-DD)"),
        (.date, .string("2026-12-03T25:00:00Z"), "not a date (YYYY-MM-DD)"),
        (.date, .string("2026-12-03Tnoon"), "not a date (YYYY-MM-DD)"),
        (.date, .string("0000-01-01"), "not a date (YYYY-MM-DD)"),
        (.boolean, .string("maybe"), "not a boolean (true/false, 1/0, yes/no, si/no)"),
        (.boolean, .number(JSONNumber(2)), "not a boolean (true/false, 1/0, yes/no, si/no)"),
        (.options, .string("Platinum"), "not one of the options: Free, Pro, Enterprise"),
    ]

    @Test("good values and their canonical forms", arguments: good)
    func goodValues(_ type: CustomFieldType, _ input: CustomFieldInput, _ canonical: String) throws {
        let value = try Self.definition(type, options: ["Free", "Pro", "Enterprise"]).canonicalize(input).get()
        #expect(value == canonical)
    }

    @Test("bad values and their reasons", arguments: bad)
    func badValues(_ type: CustomFieldType, _ input: CustomFieldInput, _ reason: String) {
        let result = Self.definition(type, options: ["Free", "Pro", "Enterprise"]).canonicalize(input)
        guard case .failure(let problem) = result else {
            Issue.record("\(input) was accepted as \(type)")
            return
        }
        #expect(problem.description == reason)
    }

    @Test("identifier values compare case-insensitively; other fields have no identifier key")
    func identifierKeys() {
        let rut = CustomFieldDefinition(id: UUID(), key: "rut", type: .text, isIdentifier: true)
        #expect(rut.identifierKey("12.345.678-K") == "12.345.678-k")
        #expect(Self.definition(.text).identifierKey("x") == nil)
    }

    @Test("an empty string means 'remove', whatever the type")
    func emptyRemoves() {
        #expect(CustomFieldInput.string("").isEmptyString)
        #expect(CustomFieldInput.string("  ").isEmptyString)
        #expect(!CustomFieldInput.string("0").isEmptyString)
        #expect(!CustomFieldInput.bool(false).isEmptyString)
    }
}
