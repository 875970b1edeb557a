import JSON

/// Everything wrong with one `contact.upsert` job, collected before failing it once
/// (docs/contract.md section 6).
///
/// `code` names the first kind present in the contract's order; ``jobFailure`` carries every
/// list that applies in `details`, so a producer fixes all problems in one go.
public struct ContactError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A field with the wrong JSON type, or a payload that is not an object.
    public var invalidPayload: [FieldProblem] = []
    /// Required fields that are absent (every one).
    public var missingFields: [String] = []
    /// Fields present but invalid, with the reason.
    public var invalidFields: [FieldProblem] = []
    /// Custom field keys with no definition for the client.
    public var invalidCustomFieldKeys: [String] = []
    /// Custom field values that do not fit their definition.
    public var invalidCustomFieldValues: [KeyProblem] = []
    /// No active channel of that platform and identity for the client.
    public var unknownChannel: String?
    /// An identifier value that belongs to another customer.
    public var identifierConflicts: [IdentifierConflict] = []
    /// The job's client does not exist or is inactive.
    public var unauthorized: String?

    public init() {}

    /// One problem with one field.
    public struct FieldProblem: Sendable, Hashable {
        public var field: String
        public var reason: String
        public init(_ field: String, _ reason: String) {
            self.field = field
            self.reason = reason
        }
    }

    /// One problem with one custom field value.
    public struct KeyProblem: Sendable, Hashable {
        public var key: String
        public var reason: String
        public init(_ key: String, _ reason: String) {
            self.key = key
            self.reason = reason
        }
    }

    /// An identifier value held by another customer than the one this job resolved to.
    public struct IdentifierConflict: Sendable, Hashable {
        public var key: String
        public var reason: String
    }

    /// True when nothing is wrong.
    public var isEmpty: Bool {
        invalidPayload.isEmpty && missingFields.isEmpty && invalidFields.isEmpty && invalidCustomFieldKeys.isEmpty
            && invalidCustomFieldValues.isEmpty && unknownChannel == nil && identifierConflicts.isEmpty
            && unauthorized == nil
    }

    /// The contract's code for the first kind of problem present.
    public var code: String {
        if !invalidPayload.isEmpty { return "invalid_payload" }
        if !missingFields.isEmpty { return "missing_fields" }
        if !invalidFields.isEmpty { return "invalid_fields" }
        if !invalidCustomFieldKeys.isEmpty { return "invalid_custom_field_keys" }
        if !invalidCustomFieldValues.isEmpty { return "invalid_custom_field_values" }
        if unknownChannel != nil { return "unknown_channel" }
        if !identifierConflicts.isEmpty { return "identifier_conflict" }
        return "unauthorized"
    }

    /// 401 when the only problem is the client; 400 otherwise.
    public var status: Int { code == "unauthorized" ? 401 : 400 }

    public var message: String {
        switch code {
        case "invalid_payload": "the payload is not a JSON object or a field has the wrong JSON type"
        case "missing_fields": "required fields for the channel are missing"
        case "invalid_fields": "some fields are invalid"
        case "invalid_custom_field_keys": "some custom field keys have no definition for this client"
        case "invalid_custom_field_values": "some custom field values do not fit their definition"
        case "unknown_channel": "no active channel of that platform and identity"
        case "identifier_conflict": "an identifier value already belongs to a different customer"
        default: "the organization does not exist or is inactive"
        }
    }

    public var details: JSONValue {
        var details: [String: JSONValue] = [:]
        if !invalidPayload.isEmpty {
            details["invalid_payload"] = .array(invalidPayload.map { ["field": .string($0.field), "reason": .string($0.reason)] })
        }
        if !missingFields.isEmpty { details["missing_fields"] = .array(missingFields.map { .string($0) }) }
        if !invalidFields.isEmpty {
            details["invalid_fields"] = .array(invalidFields.map { ["field": .string($0.field), "reason": .string($0.reason)] })
        }
        if !invalidCustomFieldKeys.isEmpty {
            details["invalid_custom_field_keys"] = .array(invalidCustomFieldKeys.map { .string($0) })
        }
        if !invalidCustomFieldValues.isEmpty {
            details["invalid_custom_field_values"] = .array(
                invalidCustomFieldValues.map { ["key": .string($0.key), "reason": .string($0.reason)] })
        }
        if let unknownChannel { details["unknown_channel"] = .string(unknownChannel) }
        if !identifierConflicts.isEmpty {
            details["identifier_conflict"] = .array(
                identifierConflicts.map { ["key": .string($0.key), "reason": .string($0.reason)] })
        }
        if let unauthorized { details["unauthorized"] = .string(unauthorized) }
        return .object(details)
    }

    public var description: String { "\(status) \(code): \(details.jsonText)" }

    /// Every problem as the field it concerns and why, in the contract's order: payload fields
    /// by name, custom fields as `custom_field_values.KEY`, an unknown channel as
    /// `channel_identity` (its number or id), the organization as `client_id`.
    public var problems: [(field: String, reason: String)] {
        var out: [(field: String, reason: String)] = []
        out += invalidPayload.map { ($0.field, $0.reason) }
        out += missingFields.map { ($0, "required") }
        out += invalidFields.map { ($0.field, $0.reason) }
        out += invalidCustomFieldKeys.map { ("custom_field_values.\($0)", "no custom field with this key for the organization") }
        out += invalidCustomFieldValues.map { ("custom_field_values.\($0.key)", $0.reason) }
        if let unknownChannel { out.append(("channel_identity", unknownChannel)) }
        out += identifierConflicts.map { ("custom_field_values.\($0.key)", $0.reason) }
        if let unauthorized { out.append(("client_id", unauthorized)) }
        return out
    }
}
