import JSON
import Synchronization

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
    /// Where each derived custom field value came from, so that an explicit
    /// `custom_field_values` entry that wins can put the metadata back.
    public var fieldOrigins: [String: MetadataEntry]

    public init(
        metaData: [String: JSONValue] = [:], customFieldValues: [String: CustomFieldInput] = [:], email: String? = nil,
        phone: PhoneNumber? = nil, name: String? = nil, fieldOrigins: [String: MetadataEntry] = [:]
    ) {
        self.fieldOrigins = fieldOrigins
        self.metaData = metaData
        self.customFieldValues = customFieldValues
        self.email = email
        self.phone = phone
        self.name = name
    }
}

/// One metadata key (snake_case) and its value as it came.
public struct MetadataEntry: Sendable, Hashable {
    public var key: String
    public var value: JSONValue

    public init(key: String, value: JSONValue) {
        self.key = key
        self.value = value
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

/// The default structurer (docs/rules.md section 6): deterministic, offline, and fast.
///
/// - Keys become snake_case (``snakeCase(_:)``); values are kept as they are.
/// - A key names a custom field when its ``KeyForm`` meets the form of the definition's key or
///   label, or, when none does, a ``FieldSynonyms`` name of the definition's concept. Only
///   unambiguous names count: two keys naming one field, or one key naming two, stay in
///   `meta_data`.
/// - A named field takes the value when ``ValueReading`` reads it as the field's type without
///   guessing; the key then leaves `meta_data`. A value it cannot read stays, and is no error.
/// - Well-known keys (`email`, `correo`, `telefone`, `nombre`…), at the top level or one
///   level down (`{"contacto": {"email": …}}`), with a valid value fill the customer's blank
///   email, phone or name, and stay in `meta_data` too.
public struct RuleBasedStructurer: MetadataStructurer {
    public init() {}

    enum ProfileField { case email, phone, name }

    /// One metadata key while it is structured.
    struct Entry {
        var key: String
        var original: String
        var value: JSONValue
        var variants: [String] = []
        var field: String? = nil
    }

    /// Key forms (``KeyForm``) of the well-known profile keys.
    static let profileForms: [String: ProfileField] = {
        var table: [String: ProfileField] = [:]
        let names: [(ProfileField, [String])] = [
            (.email, ["email", "mail", "email address", "correo", "correo electrónico", "endereço de email"]),
            (.phone, [
                "phone", "phone number", "telephone", "tel", "mobile", "mobile phone", "cell", "cell phone", "whatsapp",
                "teléfono", "número de teléfono", "celular", "móvil", "telefone", "número de telefone",
            ]),
            (.name, ["name", "full name", "contact name", "nombre", "nombre completo", "nome", "nome completo"]),
        ]
        for (field, spellings) in names {
            for spelling in spellings {
                for variant in KeyForm.variants(KeyForm.compact(spelling)) { table[variant] = field }
            }
        }
        return table
    }()

    public func structure(_ metaData: [String: JSONValue], definitions: [String: CustomFieldDefinition])
        -> StructuredMetadata
    {
        var result = StructuredMetadata()
        result.metaData.reserveCapacity(metaData.count)
        // One entry per snake_case key, in key order. Deterministic on collisions: the key
        // already in snake_case wins, then the later key in sorted order.
        var entries: [Entry] = []
        entries.reserveCapacity(metaData.count)
        for (original, value) in metaData {
            let key = Self.snakeCase(original)
            entries.append(Entry(key: key, original: original, value: value))
        }
        entries.sort { ($0.key, $0.key == $0.original ? 1 : 0, $0.original) < ($1.key, $1.key == $1.original ? 1 : 0, $1.original) }
        entries = entries.enumerated().filter { i, entry in i + 1 == entries.count || entries[i + 1].key != entry.key }.map(\.element)

        // Each key's form once; its field, then only the fields named by one key.
        let fields = FieldNames.cached(definitions)
        var keysPerField: [String: Int] = [:]
        for i in entries.indices {
            entries[i].variants = KeyForm.variants(KeyForm.formOfSnakeCase(entries[i].key))
            guard let field = fields.field(variants: entries[i].variants) else { continue }
            entries[i].field = field
            keysPerField[field, default: 0] += 1
        }
        var nested: [[String: JSONValue]] = []
        for entry in entries {
            let (key, value) = (entry.key, entry.value)
            if let field = entry.field, keysPerField[field] == 1, let definition = definitions[field],
                let input = Self.read(value, as: definition, foldedOptions: fields.foldedOptions[field])
            {
                result.customFieldValues[field] = input
                result.fieldOrigins[field] = MetadataEntry(key: key, value: value)
                continue
            }
            result.metaData[key] = value
            if case .object(let members) = value, entry.variants.contains(where: Self.personForms.contains) {
                nested.append(members)
            }
            fillProfile(&result, field: Self.profileField(entry.variants), value: value)
        }
        // One level down fills only what the top level left blank; the first key in order wins.
        for members in nested {
            for (inner, value) in members.sorted(by: { $0.key < $1.key }) {
                guard case .string = value else { continue }
                fillProfile(&result, field: Self.profileField(KeyForm.variants(KeyForm.compact(inner))), value: value, onlyIfBlank: true)
            }
        }
        return result
    }

    /// Fills the profile field `key` names when `value` is valid for it.
    func fillProfile(_ result: inout StructuredMetadata, field: ProfileField?, value: JSONValue, onlyIfBlank: Bool = false) {
        guard case .string(let text) = value, let field else { return }
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { return }
        switch field {
        case .email:
            guard !(onlyIfBlank && result.email != nil), EmailAddress.problem(trimmed) == nil else { return }
            result.email = trimmed
        case .phone:
            // With its country code: free text has national formats (`(11) 98765-4321`) that
            // plain digits would misread.
            guard !(onlyIfBlank && result.phone != nil), trimmed.hasPrefix("+") || trimmed.hasPrefix("00"),
                case .success(let phone) = PhoneNumber.parse(trimmed)
            else { return }
            result.phone = phone
        case .name:
            guard !(onlyIfBlank && result.name != nil), trimmed.unicodeScalars.count <= ContactRequest.maxNameLength
            else { return }
            result.name = trimmed
        }
    }

    /// Key forms of objects that describe the person (`contacto`, `cliente`, `user`…): only
    /// their members fill the profile. Under `empresa` or `referrer`, a name is somebody else's.
    static let personForms: Set<String> = Set(
        [
            "contact", "contacto", "contato", "customer", "cliente", "client", "person", "persona", "pessoa", "lead",
            "user", "usuario", "usuário", "visitor", "visitante", "profile", "perfil", "contact info",
            "datos de contacto", "datos contacto", "dados de contato", "dados contato", "informacion de contacto",
        ].flatMap { KeyForm.variants(KeyForm.compact($0)) })

    /// The profile field a key's form variants name, if any.
    static func profileField(_ variants: [String]) -> ProfileField? {
        for variant in variants {
            if let field = profileForms[variant] { return field }
        }
        return nil
    }

    /// `value` as the definition's type, in a form its `canonicalize` accepts; nil when it
    /// cannot be read without guessing. `foldedOptions`: ``FieldNames/foldedOptions`` of it.
    static func read(_ value: JSONValue, as definition: CustomFieldDefinition, foldedOptions: [String]?)
        -> CustomFieldInput?
    {
        let input: CustomFieldInput?
        switch definition.type {
        case .text:
            input = customFieldInput(value).flatMap { $0.isEmptyString ? nil : $0 }
        case .number:
            input = ValueReading.number(value).map(CustomFieldInput.string)
        case .date:
            input = ValueReading.date(value).map(CustomFieldInput.string)
        case .boolean:
            input = ValueReading.boolean(value).map(CustomFieldInput.bool)
        case .options:
            input = ValueReading.option(value, options: definition.options, folded: foldedOptions ?? [])
                .map(CustomFieldInput.string)
        }
        // The last word is the definition's own: nothing it would refuse leaves the metadata.
        guard let input, case .success = definition.canonicalize(input) else { return nil }
        return input
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
        return asciiSnakeCase(key) ?? scalarSnakeCase(key)
    }

    /// ``snakeCase(_:)`` scalar by scalar, for any key.
    static func scalarSnakeCase(_ key: String) -> String {
        // ASCII scalars answer from their value; only the others look their properties up.
        // A hump is a scalar that lowercasing changes, not any uppercase one: `ϒ` (U+03D2) is
        // uppercase without a lowercase, so it leaves as it came, and a second pass must not
        // take it for a new word. The output then has no humps, and snakeCase of it is itself.
        func isSpace(_ c: Unicode.Scalar) -> Bool { c.isASCII ? c == " " || (0x09...0x0D).contains(c.value) : c.properties.isWhitespace }
        func isUpper(_ c: Unicode.Scalar) -> Bool { c.isASCII ? ("A"..."Z").contains(c) : c.properties.changesWhenLowercased }
        func isLower(_ c: Unicode.Scalar) -> Bool { c.isASCII ? ("a"..."z").contains(c) : c.properties.isLowercase }
        let scalars = Array(key.unicodeScalars)
        var out = String.UnicodeScalarView()
        var lastIsUnderscore = false
        var previous: Unicode.Scalar? = nil
        for (i, scalar) in scalars.enumerated() {
            if scalar == "-" || scalar == "_" || isSpace(scalar) {
                if !out.isEmpty, !lastIsUnderscore {
                    out.append("_")
                    lastIsUnderscore = true
                }
                previous = nil
                continue
            }
            if isUpper(scalar), let previous, !out.isEmpty, !lastIsUnderscore {
                let next = i + 1 < scalars.count ? scalars[i + 1] : nil
                let startsWord = isUpper(previous) && next.map(isLower) == true
                if isLower(previous) || ("0"..."9").contains(previous) || startsWord { out.append("_") }
            }
            if scalar.isASCII {
                out.append(isUpper(scalar) ? Unicode.Scalar(UInt8(scalar.value) | 0x20) : scalar)
            } else {
                for lower in String(scalar).lowercased().unicodeScalars {
                    out.append(contentsOf: Self.withoutAccent(lower).unicodeScalars)
                }
            }
            lastIsUnderscore = out.last == "_"
            previous = scalar
        }
        while out.last == "_" { out.removeLast() }
        return out.isEmpty ? key : String(out)
    }

    /// ``snakeCase(_:)`` of an ASCII key, over its bytes: the same steps without Unicode
    /// property lookups (a test checks that both agree). Nil for any other key.
    static func asciiSnakeCase(_ key: String) -> String? {
        let bytes = Array(key.utf8)
        guard bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        func isUpper(_ b: UInt8) -> Bool { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(b) }
        func isLower(_ b: UInt8) -> Bool { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) }
        func isDigit(_ b: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
        let underscore = UInt8(ascii: "_")
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 4)
        var previous: UInt8? = nil
        for (i, byte) in bytes.enumerated() {
            if isSpace(byte) || byte == UInt8(ascii: "-") || byte == underscore {
                if let last = out.last, last != underscore { out.append(underscore) }
                previous = nil
                continue
            }
            if isUpper(byte), let previous, let last = out.last, last != underscore {
                let next = i + 1 < bytes.count ? bytes[i + 1] : nil
                let startsWord = isUpper(previous) && next.map(isLower) == true
                if isLower(previous) || isDigit(previous) || startsWord { out.append(underscore) }
            }
            out.append(isUpper(byte) ? byte | 0x20 : byte)
            previous = byte
        }
        while out.last == underscore { out.removeLast() }
        return out.isEmpty ? key : String(decoding: out, as: UTF8.self)
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

    /// `"Sí "` → `"si "`, `"NÃO"` → `"nao"`: lowercased, accents removed, nothing else changed.
    static func foldedLowercase(_ text: String) -> String {
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text.lowercased() }
        var out = ""
        for scalar in text.lowercased().unicodeScalars { out.unicodeScalars.append(contentsOf: withoutAccent(scalar).unicodeScalars) }
        return out
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

/// The custom fields a client defines, by the names a metadata key may use for them.
struct FieldNames: Sendable {
    /// Variants of the forms of each definition's key and label, to the definitions' keys.
    var own: [String: Set<String>] = [:]
    /// Synonym concepts of each definition, to the definitions' keys.
    var byConcept: [Int: Set<String>] = [:]
    /// Each options field's options, folded as values are compared (``ValueReading/option(_:options:folded:)``).
    var foldedOptions: [String: [String]] = [:]

    init(_ definitions: [String: CustomFieldDefinition]) {
        for definition in definitions.values {
            if definition.type == .options {
                foldedOptions[definition.key] = definition.options.map { RuleBasedStructurer.foldedLowercase($0.trimmingSpaces) }
            }
            var concepts: Set<Int> = []
            for name in [definition.key, definition.label].compactMap({ $0 }) {
                let form = KeyForm.compact(name)
                guard !form.isEmpty else { continue }
                for variant in KeyForm.variants(form) { own[variant, default: []].insert(definition.key) }
                concepts.formUnion(FieldSynonyms.concepts(of: form))
            }
            for concept in concepts { byConcept[concept, default: []].insert(definition.key) }
        }
    }

    /// The one field a key names, given its form's variants: by a definition's own key or
    /// label first, else by a synonym; nil when it names none, or more than one.
    func field(variants: [String]) -> String? {
        guard let first = variants.first, !first.isEmpty else { return nil }
        var fields: Set<String> = []
        for variant in variants { fields.formUnion(own[variant] ?? []) }
        if fields.isEmpty {
            for variant in variants {
                if let concept = FieldSynonyms.conceptOfForm[variant] { fields.formUnion(byConcept[concept] ?? []) }
            }
        }
        return fields.count == 1 ? fields.first : nil
    }

    /// The index of a set of definitions, built once: an organization's definitions are the
    /// same for every job until they change. At most 4,096 sets are kept; then it starts over.
    /// The sets used last are compared first: a worker passes the same dictionary for every job
    /// of an organization, and comparing a dictionary with itself is one pointer comparison,
    /// where hashing it as a key read every definition (3 % of a worker's CPU).
    static func cached(_ definitions: [String: CustomFieldDefinition]) -> FieldNames {
        let known = cache.withLock { cache -> FieldNames? in
            if let recent = cache.recent.first(where: { $0.definitions == definitions }) { return recent.names }
            guard let names = cache.all[definitions] else { return nil }
            cache.remember(definitions, names)
            return names
        }
        if let known { return known }
        let names = FieldNames(definitions)
        cache.withLock { cache in
            if cache.all.count >= 4_096 { cache.all.removeAll() }
            cache.all[definitions] = names
            cache.remember(definitions, names)
        }
        return names
    }

    struct Cache {
        var all: [[String: CustomFieldDefinition]: FieldNames] = [:]
        var recent: [(definitions: [String: CustomFieldDefinition], names: FieldNames)] = []

        mutating func remember(_ definitions: [String: CustomFieldDefinition], _ names: FieldNames) {
            recent.insert((definitions, names), at: 0)
            if recent.count > 8 { recent.removeLast() }
        }
    }

    static let cache = Mutex(Cache())
}
