import JSON

/// Turns one CSV row of a CRM import into a `contact.upsert` payload.
///
/// Headers are the payload's field names (`channel`, `contact_phone_number`, `contact_name`…).
/// Two prefixes reach inside: `meta_data.KEY` sets a member of `meta_data`, and
/// `custom_field_values.KEY` (or `cf.KEY`) adds `{"key": KEY, "value": …}`. A column named
/// `meta_data` or `custom_field_values` may also hold the whole value as JSON. An empty cell
/// is an absent field. Values stay strings: the worker's rules parse them.
public enum ContactCSV {
    /// A row that cannot become a payload.
    public struct RowError: Error, Sendable {
        public let message: String
    }

    public static func payload(headers: [String], fields: [String]) -> Result<JSONValue, RowError> {
        var object: [String: JSONValue] = [:]
        var meta: [String: JSONValue] = [:]
        var customFields: [JSONValue] = []
        for (header, field) in zip(headers, fields) {
            let name = header.trimmingSpaces
            if field.isEmpty || name.isEmpty { continue }
            if let key = name.dropPrefix("meta_data.") {
                meta[key] = .string(field)
            } else if let key = name.dropPrefix("custom_field_values.") ?? name.dropPrefix("cf.") {
                customFields.append(["key": .string(key), "value": .string(field)])
            } else if name == "meta_data" || name == "custom_field_values" {
                do {
                    object[name] = try JSONValue.parse(field)
                } catch {
                    return .failure(RowError(message: "column \(name) is not valid JSON: \(error)"))
                }
            } else {
                object[name] = .string(field)
            }
        }
        if !meta.isEmpty {
            var merged = object["meta_data"]?.objectValue ?? [:]
            merged.merge(meta) { _, new in new }
            object["meta_data"] = .object(merged)
        }
        if !customFields.isEmpty {
            object["custom_field_values"] = .array((object["custom_field_values"]?.arrayValue ?? []) + customFields)
        }
        return .success(.object(object))
    }
}

extension ContactCSV {
    /// The fields of a CSV row under `headers` that ``payload(headers:fields:)`` would turn
    /// into `payload`: the way back, for writing a failed row in its file's columns. Strings
    /// are written as they are, other JSON values as JSON; a whole `meta_data` or
    /// `custom_field_values` column holds what no `meta_data.KEY` or `cf.KEY` column took.
    public static func fields(headers: [String], payload: JSONValue) -> [String] {
        let object = payload.objectValue ?? [:]
        let names = headers.map(\.trimmingSpaces)
        func text(_ value: JSONValue?) -> String {
            switch value {
            case .string(let s)?: s
            case nil, .null?: ""
            case let value?: value.jsonText
            }
        }
        var meta = object["meta_data"]?.objectValue ?? [:]
        var customFields: [(key: String, value: JSONValue)] = (object["custom_field_values"]?.arrayValue ?? []).compactMap {
            guard let key = $0["key"]?.stringValue else { return nil }
            return (key, $0["value"] ?? .null)
        }
        var out = Array(repeating: "", count: names.count)
        for (i, name) in names.enumerated() {
            if let key = name.dropPrefix("meta_data.") {
                out[i] = text(meta.removeValue(forKey: key))
            } else if let key = name.dropPrefix("custom_field_values.") ?? name.dropPrefix("cf.") {
                if let at = customFields.firstIndex(where: { $0.key == key }) { out[i] = text(customFields.remove(at: at).value) }
            } else if name != "meta_data", name != "custom_field_values" {
                out[i] = text(object[name])
            }
        }
        for (i, name) in names.enumerated() {
            if name == "meta_data", !meta.isEmpty { out[i] = JSONValue.object(meta).jsonText }
            if name == "custom_field_values", !customFields.isEmpty {
                out[i] = JSONValue.array(customFields.map { ["key": .string($0.key), "value": $0.value] }).jsonText
            }
        }
        return out
    }
}

extension String {
    func dropPrefix(_ prefix: String) -> String? {
        hasPrefix(prefix) && count > prefix.count ? String(dropFirst(prefix.count)) : nil
    }

    var trimmingSpaces: String {
        // Nothing to trim when both ends are printable ASCII (no white space Character can
        // start or end with such a byte): the common case, without Character work.
        if let first = utf8.first, let last = utf8.last, (0x21...0x7E).contains(first), (0x21...0x7E).contains(last) {
            return self
        }
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
