// libFuzzer target for the payload decoder and validator.
//
// Built by scripts/fuzz with `swiftc -sanitize=fuzzer,address` from the JSON module and the
// pure part of ContactDomain (no database): every input is parsed as JSON, and what parses is
// validated as a contact.upsert payload, re-serialized and parsed again. A crash, a sanitizer
// report or a failed invariant (a trap) is a finding.
import ContactDomain
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
        _ = RuleBasedStructurer().structure(meta, definitions: [:])
        _ = MetadataMerge.merge(meta, meta)
    }
    return 0
}
