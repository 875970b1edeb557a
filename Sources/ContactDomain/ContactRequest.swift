#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms

/// The three platforms a contact can come from.
public enum Platform: String, Sendable, Hashable, CaseIterable {
    case whatsapp
    case webWhatsapp = "web-whatsapp"
    case webchat

    /// True for the platforms identified by phone number.
    public var usesPhone: Bool { self != .webchat }
}

/// How a job names its channel.
public enum ChannelReference: Sendable, Hashable {
    /// By the channel's UUID (`channel_id`, or a UUID in `channel_phone_number`).
    case id(UUID)
    /// By the channel's own phone number (`channel_phone_number`).
    case phone(PhoneNumber)
}

/// The contact's identity on its channel.
public enum ContactIdentity: Sendable, Hashable {
    case phone(PhoneNumber)
    case externalUser(String)
}

/// A `contact.upsert` payload that passed every rule that needs no database (docs/rules.md
/// section 1): typed, trimmed and normalized.
public struct ContactRequest: Sendable, Hashable {
    public var platform: Platform
    public var channel: ChannelReference
    public var identity: ContactIdentity
    /// Trimmed; nil when absent or empty.
    public var name: String?
    /// Trimmed; nil when absent or empty.
    public var email: String?
    public var stageID: UUID?
    public var agentID: UUID?
    /// The free-form metadata, before the structurer.
    public var metaData: [String: JSONValue]?
    /// The explicit custom field values, in payload order, keys unique.
    public var customFieldValues: [(key: String, value: CustomFieldInput)]

    public static func == (a: ContactRequest, b: ContactRequest) -> Bool {
        a.platform == b.platform && a.channel == b.channel && a.identity == b.identity && a.name == b.name
            && a.email == b.email && a.stageID == b.stageID && a.agentID == b.agentID && a.metaData == b.metaData
            && a.customFieldValues.map(\.key) == b.customFieldValues.map(\.key)
            && a.customFieldValues.map(\.value) == b.customFieldValues.map(\.value)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(platform)
        hasher.combine(identity)
    }

    /// The largest payload accepted, serialized.
    public static let maxPayloadBytes = 256 * 1024
    /// The largest `meta_data` accepted, serialized.
    public static let maxMetaDataBytes = 64 * 1024
    /// The most custom field values in one job.
    public static let maxCustomFieldValues = 200
    /// The longest name and external user id, in characters.
    public static let maxNameLength = 255

    /// Applies every rule of docs/rules.md section 1 and collects every problem.
    ///
    /// A JSON null is the same as an absent field; fields of the other kind of channel are
    /// ignored; unknown fields are ignored. Custom field *keys* and *types* need the client's
    /// definitions and are checked later; here only their JSON shape and duplicates.
    public static func validate(_ payload: JSONValue) -> Result<ContactRequest, ContactError> {
        let draft = check(payload)
        if let request = draft.request { return .success(request) }
        return .failure(draft.errors)
    }

    /// What the rules without a database made of a payload: every problem found, and every
    /// part that was valid. The handler uses the valid parts (platform, channel, stage, agent,
    /// custom fields) to look for the problems that need the database too, so that one
    /// failure reports them all.
    public struct Draft: Sendable {
        public var errors = ContactError()
        public var platform: Platform?
        public var channel: ChannelReference?
        public var identity: ContactIdentity?
        public var stageID: UUID?
        public var agentID: UUID?
        public var customFieldValues: [(key: String, value: CustomFieldInput)] = []
        public var metaData: [String: JSONValue]?
        /// The request, when there was no problem at all.
        public var request: ContactRequest?

        /// The person, when the platform, the channel and the contact's identity are valid
        /// (whatever else is wrong).
        public var person: Person? {
            guard let platform, let channel, let identity else { return nil }
            return Person(platform: platform, channel: channel, identity: identity)
        }
    }

    /// Applies the rules of docs/rules.md section 1 (see ``validate(_:)``) and keeps the valid parts.
    public static func check(_ payload: JSONValue) -> Draft {
        var draft = Draft()
        guard case .object(let object) = payload else {
            draft.errors.invalidPayload.append(.init("payload", "must be a JSON object, not \(payload.typeName)"))
            return draft
        }
        if payload.serializedSize > maxPayloadBytes {
            draft.errors.invalidPayload.append(.init("payload", "larger than 256 KiB"))
            return draft
        }
        var errors = ContactError()
        var fields = FieldReader(object: object)
        let platform = readPlatform(&fields, &errors)
        var channel: ChannelReference?
        var identity: ContactIdentity?
        if let platform {
            (channel, identity) = platform.usesPhone
                ? readPhoneIdentity(&fields, &errors) : readWebchatIdentity(&fields, &errors)
        }
        let (stageID, agentID) = readStageAndAgent(&fields, &errors)
        let (name, email) = readNameAndEmail(&fields, &errors)
        let metaData = readMetaData(object, &errors)
        let customFieldValues = readCustomFieldValues(object, &errors)

        draft.errors = errors
        draft.platform = platform
        draft.channel = channel
        draft.identity = identity
        draft.stageID = stageID
        draft.agentID = agentID
        draft.customFieldValues = customFieldValues
        draft.metaData = metaData
        if errors.isEmpty, let platform, let channel, let identity {
            draft.request = ContactRequest(
                platform: platform, channel: channel, identity: identity, name: name, email: email, stageID: stageID,
                agentID: agentID, metaData: metaData, customFieldValues: customFieldValues)
        }
        return draft
    }
}

extension ContactRequest {
    private static func readPlatform(_ fields: inout FieldReader, _ errors: inout ContactError) -> Platform? {
        var platform: Platform?
        switch fields.string("channel", &errors) {
        case .absent: errors.missingFields.append("channel")
        case .present(let text):
            if let p = Platform(rawValue: text) {
                platform = p
            } else {
                errors.invalidFields.append(.init("channel", "must be whatsapp, web-whatsapp or webchat"))
            }
        case .wrongType: break
        }
        return platform
    }

    /// `channel_phone_number` and `contact_phone_number`.
    private static func readPhoneIdentity(_ fields: inout FieldReader, _ errors: inout ContactError)
        -> (ChannelReference?, ContactIdentity?)
    {
        var channel: ChannelReference?
        var identity: ContactIdentity?
        switch fields.string("channel_phone_number", &errors) {
        case .absent: errors.missingFields.append("channel_phone_number")
        case .present(let text):
            let trimmed = text.trimmingSpaces
            if trimmed.isEmpty {
                errors.missingFields.append("channel_phone_number")
            } else if let id = SeedUUID.uuid(trimmed) {
                channel = .id(id)
            } else {
                switch PhoneNumber.parse(trimmed) {
                case .success(let phone): channel = .phone(phone)
                case .failure(let problem):
                    errors.invalidFields.append(
                        .init("channel_phone_number", "not a phone number or channel UUID: \(problem.rawValue)"))
                }
            }
        case .wrongType: break
        }
        switch fields.string("contact_phone_number", &errors) {
        case .absent: errors.missingFields.append("contact_phone_number")
        case .present(let text):
            if text.trimmingSpaces.isEmpty {
                errors.missingFields.append("contact_phone_number")
            } else {
                switch PhoneNumber.parse(text) {
                case .success(let phone): identity = .phone(phone)
                case .failure(let problem):
                    errors.invalidFields.append(.init("contact_phone_number", problem.rawValue))
                }
            }
        case .wrongType: break
        }
        return (channel, identity)
    }

    /// `channel_id` and `external_user_id`.
    private static func readWebchatIdentity(_ fields: inout FieldReader, _ errors: inout ContactError)
        -> (ChannelReference?, ContactIdentity?)
    {
        var channel: ChannelReference?
        var identity: ContactIdentity?
        switch fields.string("channel_id", &errors) {
        case .absent: errors.missingFields.append("channel_id")
        case .present(let text):
            if text.trimmingSpaces.isEmpty {
                errors.missingFields.append("channel_id")
            } else if let id = SeedUUID.uuid(text) {
                channel = .id(id)
            } else {
                errors.invalidFields.append(.init("channel_id", "must be a UUID"))
            }
        case .wrongType: break
        }
        switch fields.string("external_user_id", &errors) {
        case .absent: errors.missingFields.append("external_user_id")
        case .present(let text):
            let trimmed = text.trimmingSpaces
            if trimmed.isEmpty {
                errors.missingFields.append("external_user_id")
            } else if trimmed.unicodeScalars.count > maxNameLength {
                errors.invalidFields.append(.init("external_user_id", "longer than 255 characters"))
            } else {
                identity = .externalUser(trimmed)
            }
        case .wrongType: break
        }
        return (channel, identity)
    }

    private static func readStageAndAgent(_ fields: inout FieldReader, _ errors: inout ContactError) -> (UUID?, UUID?) {
        var stageID: UUID?
        var agentID: UUID?
        for (field, target) in [("stageId", 0), ("agentId", 1)] {
            guard case .present(let text) = fields.string(field, &errors) else { continue }
            guard let id = SeedUUID.uuid(text) else {
                errors.invalidFields.append(.init(field, "must be a UUID"))
                continue
            }
            if target == 0 { stageID = id } else { agentID = id }
        }
        return (stageID, agentID)
    }

    private static func readNameAndEmail(_ fields: inout FieldReader, _ errors: inout ContactError) -> (String?, String?) {
        var name: String?
        if case .present(let text) = fields.string("contact_name", &errors) {
            let trimmed = text.trimmingSpaces
            if trimmed.unicodeScalars.count > maxNameLength {
                errors.invalidFields.append(.init("contact_name", "longer than 255 characters"))
            } else if !trimmed.isEmpty {
                name = trimmed
            }
        }
        var email: String?
        if case .present(let text) = fields.string("contact_email", &errors) {
            let trimmed = text.trimmingSpaces
            if !trimmed.isEmpty {
                if let problem = EmailAddress.problem(trimmed) {
                    errors.invalidFields.append(.init("contact_email", problem))
                } else {
                    email = trimmed
                }
            }
        }
        return (name, email)
    }

    private static func readMetaData(_ object: [String: JSONValue], _ errors: inout ContactError) -> [String: JSONValue]? {
        var metaData: [String: JSONValue]?
        switch object["meta_data"] ?? .null {
        case .null: break
        case .object(let members):
            if JSONValue.object(members).serializedSize > maxMetaDataBytes {
                errors.invalidFields.append(.init("meta_data", "larger than 64 KiB"))
            } else {
                metaData = members
            }
        case let other:
            errors.invalidPayload.append(.init("meta_data", "must be an object, not \(other.typeName)"))
        }
        return metaData
    }

    private static func readCustomFieldValues(_ object: [String: JSONValue], _ errors: inout ContactError)
        -> [(key: String, value: CustomFieldInput)]
    {
        var customFieldValues: [(key: String, value: CustomFieldInput)] = []
        switch object["custom_field_values"] ?? .null {
        case .null: break
        case .array(let entries):
            if entries.count > maxCustomFieldValues {
                errors.invalidFields.append(.init("custom_field_values", "more than 200 values"))
                break
            }
            var seen = Set<String>()
            var duplicates = Set<String>()
            for (i, entry) in entries.enumerated() {
                let path = "custom_field_values[\(i)]"
                guard case .object(let pair) = entry else {
                    errors.invalidPayload.append(.init(path, "must be an object, not \(entry.typeName)"))
                    continue
                }
                guard case .string(let key)? = pair["key"] else {
                    errors.invalidPayload.append(.init("\(path).key", "must be a string"))
                    continue
                }
                let input: CustomFieldInput
                switch pair["value"] ?? .null {
                case .string(let s): input = .string(s)
                case .number(let n): input = .number(n)
                case .bool(let b): input = .bool(b)
                case let other:
                    errors.invalidPayload.append(
                        .init("\(path).value", "must be a string, number or boolean, not \(other.typeName)"))
                    continue
                }
                if seen.contains(key) {
                    if !duplicates.contains(key) {
                        errors.invalidCustomFieldValues.append(.init(key, CustomFieldValueProblem.duplicateKey.description))
                        duplicates.insert(key)
                    }
                    continue
                }
                seen.insert(key)
                customFieldValues.append((key, input))
            }
        case let other:
            errors.invalidPayload.append(.init("custom_field_values", "must be an array, not \(other.typeName)"))
        }
        return customFieldValues
    }
}

extension ContactRequest {
    /// The queue's default ordering key for a payload (``Person/orderingKey``), or nil when the
    /// payload does not name a person. Producers that COPY many jobs set it themselves, so that
    /// the insert trigger has nothing to compute; a test checks that both agree.
    public static func orderingKey(_ payload: JSONValue) -> String? {
        enqueuedPerson(payload)?.orderingKey
    }

    /// The person of a payload read exactly as the database's `crm.contact_ordering_key` reads
    /// it at enqueue (spaces trimmed as `btrim` does, no other validation), so that a key set by
    /// a producer equals the one the insert trigger would compute.
    static func enqueuedPerson(_ payload: JSONValue) -> Person? {
        guard case .object(let object) = payload, case .string(let channel)? = object["channel"],
            let platform = Platform(rawValue: channel)
        else { return nil }
        let channelRef: String
        let contact: Person.Contact
        if platform.usesPhone {
            guard case .string(let channelPhone)? = object["channel_phone_number"],
                case .string(let contactPhone)? = object["contact_phone_number"],
                case .success(let phone) = PhoneNumber.parse(contactPhone)
            else { return nil }
            let trimmed = trimASCIISpaces(channelPhone)
            if isUUIDText(trimmed) {
                channelRef = trimmed.lowercased()
            } else {
                guard case .success(let channelNumber) = PhoneNumber.parse(trimmed) else { return nil }
                channelRef = channelNumber.matchKey
            }
            contact = .phone(matchKey: phone.matchKey)
        } else {
            guard case .string(let channelID)? = object["channel_id"],
                case .string(let user)? = object["external_user_id"]
            else { return nil }
            channelRef = trimASCIISpaces(channelID).lowercased()
            let trimmedUser = trimASCIISpaces(user)
            guard !trimmedUser.isEmpty else { return nil }
            contact = .user(trimmedUser)
        }
        guard channelRef.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        return Person(platform: platform, channel: channelRef, contact: contact)
    }

    /// PostgreSQL's one-argument `btrim`: spaces only.
    static func trimASCIISpaces(_ text: String) -> String {
        let utf8 = text.utf8
        guard let first = utf8.firstIndex(where: { $0 != 0x20 }) else { return "" }
        guard let last = utf8.lastIndex(where: { $0 != 0x20 }) else { return "" }
        return String(text[first...last])
    }

    /// Any-case hyphenated hex UUID text (the SQL function's `~*` pattern).
    static func isUUIDText(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 36 else { return false }
        for (i, byte) in bytes.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                guard byte == UInt8(ascii: "-") else { return false }
            } else {
                guard SeedUUID.isHex(byte) else { return false }
            }
        }
        return true
    }
}

/// Reads optional string fields, recording a wrong JSON type as `invalid_payload`.
struct FieldReader {
    let object: [String: JSONValue]

    enum Field {
        case absent
        case present(String)
        case wrongType
    }

    mutating func string(_ name: String, _ errors: inout ContactError) -> Field {
        switch object[name] ?? .null {
        case .null: return .absent
        case .string(let s): return .present(s)
        case let other:
            errors.invalidPayload.append(.init(name, "must be a string, not \(other.typeName)"))
            return .wrongType
        }
    }
}
