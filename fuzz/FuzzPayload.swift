// libFuzzer target for the payload decoder and validator.
//
// Built by scripts/fuzz with `swiftc -sanitize=fuzzer,address` from the JSON module and the
// pure part of ContactDomain (no database): every input is parsed as JSON, and what parses is
// validated as a contact.upsert payload, re-serialized and parsed again. A crash, a sanitizer
// report or a failed invariant (a trap) is a finding.
import ContactDomain
import Foundation
import JSON

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPayload(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    guard let value = try? JSONValue.parse(bytes) else { return 0 }
    let text = value.jsonText
    guard let again = try? JSONValue.parse(text), again == value else {
        fatalError("serialize/parse round trip changed the value")
    }
    switch ContactRequest.validate(value) {
    case .success(let request):
        if case .phone(let phone) = request.identity {
            guard let reparsed = try? PhoneNumber.parse(phone.e164).get(), reparsed == phone else {
                fatalError("phone normalization is not idempotent")
            }
        }
    case .failure(let error):
        if error.isEmpty { fatalError("a refusal without a problem") }
        _ = error.details.jsonText
    }
    if case .object(let object) = value, case .object(let meta)? = object["meta_data"] {
        // Structured against fields of every type (labels, options, synonyms), the output is
        // a fixed point and every derived value fits its field.
        let structurer = RuleBasedStructurer()
        let out = structurer.structure(meta, definitions: definitions)
        let again = structurer.structure(out.metaData, definitions: definitions)
        if again.metaData != out.metaData || !again.customFieldValues.isEmpty { fatalError("structuring is not idempotent") }
        for (key, input) in out.customFieldValues {
            guard let definition = definitions[key], case .success = definition.canonicalize(input) else {
                fatalError("a derived value does not fit its field")
            }
        }
        _ = MetadataMerge.merge(meta, meta)
    }
    return 0
}

let definitions: [String: CustomFieldDefinition] = {
    let list: [(String, String?, CustomFieldType, [String])] = [
        ("company_name", "Empresa", .text, []), ("budget", "Presupuesto", .number, []), ("rut", nil, .text, []),
        ("visit_date", "Fecha de visita", .date, []), ("is_vip", nil, .boolean, []),
        ("plan", "Plan", .options, ["Básico", "Premium", "Empresas"]), ("city", nil, .text, []),
    ]
    var out: [String: CustomFieldDefinition] = [:]
    for (i, (key, label, type, options)) in list.enumerated() {
        let id = UUID(uuid: (UInt8(i), 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0))
        out[key] = CustomFieldDefinition(id: id, key: key, label: label, type: type, options: options)
    }
    return out
}()
