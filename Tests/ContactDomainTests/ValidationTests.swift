import ContactDomain
import Foundation
import JSON
import Testing

@Suite("Payload validation (no database)")
struct ValidationTests {
    static let channelUUID = "e663fcf8-5d0e-4092-a241-224ac44c18d0"

    struct Case: Sendable, CustomTestStringConvertible {
        let name: String
        let payload: String
        let code: String?
        let details: JSONValue?
        var testDescription: String { name }
    }

    static func parse(_ text: String) -> JSONValue {
        (try? JSONValue.parse(text)) ?? .null
    }

    static let cases: [Case] = [
        .init(name: "whatsapp, minimal", payload: #"{"channel":"whatsapp","channel_phone_number":"+56 2 2345 6789","contact_phone_number":"+56 9 6123 4567"}"#, code: nil, details: nil),
        .init(name: "webchat, minimal", payload: #"{"channel":"webchat","channel_id":"\#(channelUUID)","external_user_id":" user-1 "}"#, code: nil, details: nil),
        .init(name: "channel by UUID in channel_phone_number", payload: #"{"channel":"web-whatsapp","channel_phone_number":"\#(channelUUID)","contact_phone_number":"+12025550100"}"#, code: nil, details: nil),
        .init(name: "nulls are absent, unknown fields ignored", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","contact_name":null,"stageId":null,"meta_data":null,"custom_field_values":null,"whatever":{"x":1}}"#, code: nil, details: nil),
        .init(name: "fields of the other channel kind are ignored", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","channel_id":"bad","external_user_id":123}"#, code: nil, details: nil),
        .init(name: "not an object", payload: #"[1,2]"#, code: "invalid_payload", details: ["invalid_payload": [["field": "payload", "reason": "must be a JSON object, not array"]]]),
        .init(name: "a string payload", payload: #""hello""#, code: "invalid_payload", details: ["invalid_payload": [["field": "payload", "reason": "must be a JSON object, not string"]]]),
        .init(name: "channel missing", payload: #"{}"#, code: "missing_fields", details: ["missing_fields": ["channel"]]),
        .init(name: "unsupported channel", payload: #"{"channel":"sms","contact_phone_number":"+12025550100"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "channel", "reason": "must be whatsapp, web-whatsapp or webchat"]]]),
        .init(name: "channel is case-sensitive", payload: #"{"channel":"WhatsApp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "channel", "reason": "must be whatsapp, web-whatsapp or webchat"]]]),
        .init(name: "channel of the wrong type", payload: #"{"channel":1}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "channel", "reason": "must be a string, not number"]]]),
        .init(name: "whatsapp without phones", payload: #"{"channel":"whatsapp"}"#, code: "missing_fields", details: ["missing_fields": ["channel_phone_number", "contact_phone_number"]]),
        .init(name: "empty strings are missing", payload: #"{"channel":"web-whatsapp","channel_phone_number":" ","contact_phone_number":""}"#, code: "missing_fields", details: ["missing_fields": ["channel_phone_number", "contact_phone_number"]]),
        .init(name: "webchat: bad UUID and empty user", payload: #"{"channel":"webchat","channel_id":"not-a-uuid","external_user_id":""}"#, code: "missing_fields", details: ["missing_fields": ["external_user_id"], "invalid_fields": [["field": "channel_id", "reason": "must be a UUID"]]]),
        .init(name: "webchat: nothing", payload: #"{"channel":"webchat"}"#, code: "missing_fields", details: ["missing_fields": ["channel_id", "external_user_id"]]),
        .init(name: "webchat: version-0 UUID refused", payload: #"{"channel":"webchat","channel_id":"00000000-0000-0000-0000-000000000001","external_user_id":"u"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "channel_id", "reason": "must be a UUID"]]]),
        .init(name: "webchat: external_user_id too long", payload: #"{"channel":"webchat","channel_id":"\#(channelUUID)","external_user_id":"\#(String(repeating: "u", count: 256))"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "external_user_id", "reason": "longer than 255 characters"]]]),
        .init(name: "webchat: external_user_id a number", payload: #"{"channel":"webchat","channel_id":"\#(channelUUID)","external_user_id":12345}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "external_user_id", "reason": "must be a string, not number"]]]),
        .init(name: "short contact phone", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"12345"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "contact_phone_number", "reason": "must have 7 to 15 digits with the country code (E.164)"]]]),
        .init(name: "LID is not a phone", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"235085806727321@lid"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "contact_phone_number", "reason": "a WhatsApp identifier that is not a phone number (@lid, @g.us, @broadcast or business-scoped id)"]]]),
        .init(name: "bad channel phone", payload: #"{"channel":"whatsapp","channel_phone_number":"sender","contact_phone_number":"+56961234567"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "channel_phone_number", "reason": "not a phone number or channel UUID: a WhatsApp identifier that is not a phone number (@lid, @g.us, @broadcast or business-scoped id)"]]]),
        .init(name: "stage and agent must be UUIDs", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","stageId":"stage-1","agentId":"00000000-0000-0000-0000-000000000001"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "stageId", "reason": "must be a UUID"], ["field": "agentId", "reason": "must be a UUID"]]]),
        .init(name: "name too long", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","contact_name":"\#(String(repeating: "n", count: 256))"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "contact_name", "reason": "longer than 255 characters"]]]),
        .init(name: "bad email", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","contact_email":"ana at example"}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "contact_email", "reason": "contains spaces or control characters"]]]),
        .init(name: "meta_data not an object", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","meta_data":[1,2]}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "meta_data", "reason": "must be an object, not array"]]]),
        .init(name: "meta_data too large", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","meta_data":{"blob":"\#(String(repeating: "m", count: 65_536))"}}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "meta_data", "reason": "larger than 64 KiB"]]]),
        .init(name: "custom field value an object", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","custom_field_values":[{"key":"budget","value":{"n":1}}]}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "custom_field_values[0].value", "reason": "must be a string, number or boolean, not object"]]]),
        .init(name: "custom field value missing", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","custom_field_values":[{"key":"budget"}]}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "custom_field_values[0].value", "reason": "must be a string, number or boolean, not null"]]]),
        .init(name: "custom field key not a string", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","custom_field_values":[{"key":7,"value":"x"},"rut"]}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "custom_field_values[0].key", "reason": "must be a string"], ["field": "custom_field_values[1]", "reason": "must be an object, not string"]]]),
        .init(name: "custom_field_values not an array", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","custom_field_values":{"rut":"1"}}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "custom_field_values", "reason": "must be an array, not object"]]]),
        .init(name: "duplicate custom field key", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","custom_field_values":[{"key":"rut","value":"1"},{"key":"rut","value":"2"},{"key":"rut","value":"3"}]}"#, code: "invalid_custom_field_values", details: ["invalid_custom_field_values": [["key": "rut", "reason": "duplicate key"]]]),
        .init(name: "more than 200 custom field values", payload: #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","custom_field_values":[\#((0...200).map { #"{"key":"k\#($0)","value":"v"}"# }.joined(separator: ","))]}"#, code: "invalid_fields", details: ["invalid_fields": [["field": "custom_field_values", "reason": "more than 200 values"]]]),
        .init(name: "every problem at once", payload: #"{"channel":"whatsapp","contact_phone_number":"123","contact_email":"x","meta_data":"text"}"#, code: "invalid_payload", details: ["invalid_payload": [["field": "meta_data", "reason": "must be an object, not string"]], "missing_fields": ["channel_phone_number"], "invalid_fields": [["field": "contact_phone_number", "reason": "must have 7 to 15 digits with the country code (E.164)"], ["field": "contact_email", "reason": "must contain exactly one @"]]]),
    ]

    @Test("each rule and reason", arguments: cases)
    func rule(_ example: Case) {
        let result = ContactRequest.validate(Self.parse(example.payload))
        switch result {
        case .success:
            #expect(example.code == nil, "accepted, but expected \(example.code ?? "")")
        case .failure(let error):
            #expect(error.code == example.code)
            #expect(error.details == example.details, "details: \(error.details.jsonText)")
            #expect(error.jobFailure.isRetryable == false)
            #expect(error.jobFailure.status == 400)
        }
    }

    @Test("a valid payload is normalized: trimmed strings, E.164 phones, UUIDs")
    func normalized() throws {
        let request = try ContactRequest.validate(
            Self.parse(
                #"""
                {"channel":"whatsapp","channel_phone_number":"+56 2 2345 6789","contact_phone_number":"56961234567@s.whatsapp.net",
                 "contact_name":"  María José  ","contact_email":" MJ@Example.cl ","stageId":"\#(Self.channelUUID)",
                 "custom_field_values":[{"key":"budget","value":1500},{"key":"is_vip","value":true}],"meta_data":{"a":1}}
                """#)
        ).get()
        #expect(request.platform == .whatsapp)
        #expect(request.channel == .phone(try PhoneNumber.parse("+56223456789").get()))
        #expect(request.identity == .phone(try PhoneNumber.parse("+56961234567").get()))
        #expect(request.name == "María José")
        #expect(request.email == "MJ@Example.cl")
        #expect(request.stageID == UUID(uuidString: Self.channelUUID))
        #expect(request.customFieldValues.map(\.key) == ["budget", "is_vip"])
        #expect(request.metaData == ["a": 1])
        let empty = try ContactRequest.validate(
            Self.parse(
                #"{"channel":"whatsapp","channel_phone_number":"+56223456789","contact_phone_number":"+56961234567","contact_name":"  ","contact_email":""}"#
            )
        ).get()
        #expect(empty.name == nil && empty.email == nil, "empty name and email mean absent")
    }

    @Test("a payload over 256 KiB is refused as a whole")
    func payloadLimit() {
        let big = JSONValue.object(["channel": "whatsapp", "padding": .string(String(repeating: "p", count: 262_144))])
        guard case .failure(let error) = ContactRequest.validate(big) else {
            Issue.record("accepted")
            return
        }
        #expect(error.code == "invalid_payload")
        #expect(error.invalidPayload.first?.reason == "larger than 256 KiB")
    }
}
