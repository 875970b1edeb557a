import JSON

/// What a structurer made of a job's `meta_data` (docs/rules.md section 6).
public struct StructuredMetadata: Sendable, Hashable {
    /// The metadata to merge into the customer's, keys normalized.
    public var metaData: [String: JSONValue]
    /// Values for custom fields found among the metadata keys (valid for their type).
    public var customFieldValues: [String: CustomFieldInput]
    /// Profile values found under well-known keys, to fill the customer's blanks.
    public var email: String?
    public var phone: PhoneNumber?
    public var name: String?

    public init(
        metaData: [String: JSONValue] = [:], customFieldValues: [String: CustomFieldInput] = [:], email: String? = nil,
        phone: PhoneNumber? = nil, name: String? = nil
    ) {
        self.metaData = metaData
        self.customFieldValues = customFieldValues
        self.email = email
        self.phone = phone
        self.name = name
    }
}

/// Turns free-form `meta_data` into structure ("AI will structure it", in the seed's words).
///
/// The default, ``RuleBasedStructurer``, is deterministic and offline. A model-backed one can
/// replace it: it runs inside the job, after the client's field definitions are loaded and
/// before any row is locked, so a slow one delays only its own job.
public protocol MetadataStructurer: Sendable {
    func structure(_ metaData: [String: JSONValue], definitions: [String: CustomFieldDefinition]) async throws
        -> StructuredMetadata
}

/// The default structurer:
/// - keys become snake_case (trimmed, lowercased, accents removed, spaces, dashes and
///   camelCase humps to `_`); values are kept as they are;
/// - a key equal to a custom field definition's key, with a value valid for its type, becomes
///   that custom field's value and leaves `meta_data` (an invalid one stays, and is no error);
/// - well-known keys (`email`, `correo`, `phone`, `telefono`, `name`, `nombre`…) with a valid
///   value fill the customer's blank email, phone or name, and stay in `meta_data` too;
/// - everything else is merged as it is.
public struct RuleBasedStructurer: MetadataStructurer {
    public init() {}

    static let emailKeys: Set<String> = ["email", "e_mail", "mail", "correo", "correo_electronico", "email_address"]
    static let phoneKeys: Set<String> = [
        "phone", "phone_number", "telefono", "tel", "telephone", "celular", "movil", "mobile", "whatsapp",
    ]
    static let nameKeys: Set<String> = ["name", "full_name", "fullname", "nombre", "nombre_completo"]

    public func structure(_ metaData: [String: JSONValue], definitions: [String: CustomFieldDefinition])
        -> StructuredMetadata
    {
        var result = StructuredMetadata()
        // Deterministic on collisions: keys already in snake_case win, then the later key in sorted order.
        let keyed = metaData.keys.map { (original: $0, key: Self.snakeCase($0)) }
            .sorted { ($0.key == $0.original ? 1 : 0, $0.original) < ($1.key == $1.original ? 1 : 0, $1.original) }
        for (original, key) in keyed {
            guard let value = metaData[original] else { continue }
            if let definition = definitions[key], let input = Self.customFieldInput(value),
                !input.isEmptyString, case .success = definition.canonicalize(input)
            {
                result.customFieldValues[key] = input
                result.metaData[key] = nil
                continue
            }
            result.metaData[key] = value
            guard case .string(let text) = value else { continue }
            let trimmed = text.trimmingSpaces
            if Self.emailKeys.contains(key), EmailAddress.problem(trimmed) == nil, !trimmed.isEmpty {
                result.email = trimmed
            } else if Self.phoneKeys.contains(key), case .success(let phone) = PhoneNumber.parse(trimmed) {
                result.phone = phone
            } else if Self.nameKeys.contains(key), !trimmed.isEmpty,
                trimmed.unicodeScalars.count <= ContactRequest.maxNameLength
            {
                result.name = trimmed
            }
        }
        return result
    }

    static func customFieldInput(_ value: JSONValue) -> CustomFieldInput? {
        switch value {
        case .string(let s): .string(s)
        case .number(let n): .number(n)
        case .bool(let b): .bool(b)
        default: nil
        }
    }

    /// `"Fecha de Visita"` → `fecha_de_visita`, `"preferredLanguage"` → `preferred_language`,
    /// `"UTM-Campaign"` → `utm_campaign`, `"HTTPStatus"` → `http_status`.
    public static func snakeCase(_ key: String) -> String {
        if isSnakeCase(key) { return key }
        let scalars = Array(key.trimmingSpaces.unicodeScalars)
        var out = ""
        var previous: Unicode.Scalar? = nil
        for (i, scalar) in scalars.enumerated() {
            if scalar.properties.isWhitespace || scalar == "-" || scalar == "_" {
                if !out.isEmpty, out.last != "_" { out.append("_") }
                previous = nil
                continue
            }
            let isUpper = scalar.properties.isUppercase
            if isUpper, let previous, !out.isEmpty, out.last != "_" {
                let next = i + 1 < scalars.count ? scalars[i + 1] : nil
                let previousIsLowerOrDigit = previous.properties.isLowercase || ("0"..."9").contains(previous)
                let startsWord = previous.properties.isUppercase && (next?.properties.isLowercase ?? false)
                if previousIsLowerOrDigit || startsWord { out.append("_") }
            }
            for lower in String(scalar).lowercased().unicodeScalars {
                out.unicodeScalars.append(contentsOf: Self.withoutAccent(lower).unicodeScalars)
            }
            previous = scalar
        }
        while out.last == "_" { out.removeLast() }
        return out.isEmpty ? key : out
    }

    /// Already snake_case (`[a-z0-9]+` joined by single underscores): ``snakeCase(_:)`` would
    /// return it unchanged, so it is returned without the Unicode work.
    static func isSnakeCase(_ key: String) -> Bool {
        var previous: UInt8 = UInt8(ascii: "_")
        for byte in key.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"): break
            case UInt8(ascii: "_") where previous != UInt8(ascii: "_"): break
            default: return false
            }
            previous = byte
        }
        return previous != UInt8(ascii: "_")
    }

    static let accents: [Unicode.Scalar: String] = {
        var table: [Unicode.Scalar: String] = [:]
        let groups: [(String, String)] = [
            ("àáâãäåāăą", "a"), ("çćĉċč", "c"), ("ďđ", "d"), ("èéêëēĕėęě", "e"), ("ĝğġģ", "g"), ("ĥħ", "h"),
            ("ìíîïĩīĭįı", "i"), ("ĵ", "j"), ("ķ", "k"), ("ĺļľŀł", "l"), ("ñńņňŉ", "n"), ("òóôõöøōŏő", "o"),
            ("ŕŗř", "r"), ("śŝşšș", "s"), ("ţťŧț", "t"), ("ùúûüũūŭůűų", "u"), ("ŵ", "w"), ("ýÿŷ", "y"), ("źżž", "z"),
        ]
        for (letters, base) in groups {
            for scalar in letters.unicodeScalars { table[scalar] = base }
        }
        table["ß"] = "ss"
        table["æ"] = "ae"
        table["œ"] = "oe"
        return table
    }()

    static func withoutAccent(_ scalar: Unicode.Scalar) -> String {
        if let plain = accents[scalar] { return plain }
        // Combining marks left over from decomposed input are dropped.
        if (0x0300...0x036F).contains(scalar.value) { return "" }
        return String(scalar)
    }
}

/// Merges a patch into existing metadata: objects merge key by key, other values replace,
/// and a JSON null removes the key (at any depth).
public enum MetadataMerge {
    public static func merge(_ existing: [String: JSONValue], _ patch: [String: JSONValue]) -> [String: JSONValue] {
        var result = existing
        for (key, value) in patch {
            switch value {
            case .null:
                result[key] = nil
            case .object(let members):
                if case .object(let current)? = result[key] {
                    result[key] = .object(merge(current, members))
                } else {
                    result[key] = .object(merge([:], members))
                }
            default:
                result[key] = value
            }
        }
        return result
    }
}
