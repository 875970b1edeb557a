extension JSONValue {
    /// The value as compact JSON text, object keys in sorted order.
    public var jsonText: String {
        var out = ""
        out.reserveCapacity(64)
        write(to: &out)
        return out
    }

    /// Appends the value as compact JSON text to `out`.
    public func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.text
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let elements):
            out += "["
            for (i, element) in elements.enumerated() {
                if i > 0 { out += "," }
                element.write(to: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (i, key) in members.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                JSONValue.writeString(key, to: &out)
                out += ":"
                members[key, default: .null].write(to: &out)
            }
            out += "}"
        }
    }

    /// Appends `s` as a JSON string literal, escaping quotes, backslashes and control characters.
    public static func writeString(_ s: String, to out: inout String) {
        out += "\""
        let utf8 = s.utf8
        // Fast path: most strings need no escaping and are appended whole.
        if !utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) {
            out += s
            out += "\""
            return
        }
        var run = utf8.startIndex
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            if byte < 0x20 || byte == 0x22 || byte == 0x5C {
                out += Substring(utf8[run..<index])
                switch byte {
                case 0x22: out += "\\\""
                case 0x5C: out += "\\\\"
                case 0x0A: out += "\\n"
                case 0x0D: out += "\\r"
                case 0x09: out += "\\t"
                case 0x08: out += "\\b"
                case 0x0C: out += "\\f"
                default:
                    let hex = String(byte, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
                run = utf8.index(after: index)
            }
            index = utf8.index(after: index)
        }
        out += Substring(utf8[run..<utf8.endIndex])
        out += "\""
    }

    /// The length in bytes of ``jsonText``, computed without building it.
    public var serializedSize: Int {
        switch self {
        case .null: return 4
        case .bool(let b): return b ? 4 : 5
        case .number(let n): return n.text.utf8.count
        case .string(let s): return JSONValue.stringSize(s)
        case .array(let elements):
            return 2 + max(0, elements.count - 1) + elements.reduce(0) { $0 + $1.serializedSize }
        case .object(let members):
            return 2 + max(0, members.count - 1)
                + members.reduce(0) { $0 + JSONValue.stringSize($1.key) + 1 + $1.value.serializedSize }
        }
    }

    static func stringSize(_ s: String) -> Int {
        var size = 2
        for byte in s.utf8 {
            switch byte {
            case 0x22, 0x5C, 0x0A, 0x0D, 0x09, 0x08, 0x0C: size += 2
            case 0..<0x20: size += 6
            default: size += 1
            }
        }
        return size
    }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { jsonText }
}
