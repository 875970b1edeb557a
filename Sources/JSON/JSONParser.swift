/// Why a text is not an acceptable JSON document.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of problem, stable for programs to compare.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let raw: String
        /// The text is not JSON (a stray character, an unterminated string, trailing data…).
        public static let syntax = Code(raw: "syntax")
        /// The bytes are not valid UTF-8.
        public static let invalidUTF8 = Code(raw: "invalid_utf8")
        /// Arrays and objects are nested deeper than the limit.
        public static let tooDeep = Code(raw: "too_deep")
        /// The document is longer than the limit.
        public static let tooLarge = Code(raw: "too_large")
        /// A string holds U+0000, which PostgreSQL's `jsonb` cannot store.
        public static let nulCharacter = Code(raw: "nul_character")
        public var description: String { raw }
    }

    /// The kind of problem.
    public let code: Code
    /// The byte offset where the problem was found.
    public let offset: Int
    /// A sentence for people.
    public let message: String

    public var description: String { "\(message) (at byte \(offset))" }
}

/// Limits that keep a hostile document from exhausting the stack or memory.
public struct JSONParseLimits: Sendable {
    /// Deepest nesting of arrays and objects accepted.
    public var maxDepth: Int
    /// Longest document accepted, in bytes.
    public var maxBytes: Int

    public init(maxDepth: Int, maxBytes: Int) {
        self.maxDepth = maxDepth
        self.maxBytes = maxBytes
    }

    /// 64 levels and 16 MiB: far beyond any real payload, far below any harm.
    public static let `default` = JSONParseLimits(maxDepth: 64, maxBytes: 16 << 20)
}

extension JSONValue {
    /// Parses one JSON document (RFC 8259) from UTF-8 bytes, rejecting anything else.
    public static func parse(_ bytes: some Collection<UInt8>, limits: JSONParseLimits = .default) throws(JSONParseError)
        -> JSONValue
    {
        var parser = JSONParser(bytes: Array(bytes), limits: limits)
        return try parser.parseDocument()
    }

    /// Parses one JSON document from a string.
    public static func parse(_ text: String, limits: JSONParseLimits = .default) throws(JSONParseError) -> JSONValue {
        try parse(Array(text.utf8), limits: limits)
    }
}

/// A recursive-descent parser over bytes with explicit depth and size limits.
struct JSONParser {
    let bytes: [UInt8]
    let limits: JSONParseLimits
    var index = 0
    var depth = 0

    init(bytes: [UInt8], limits: JSONParseLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    private func fail(_ code: JSONParseError.Code, _ message: String) -> JSONParseError {
        JSONParseError(code: code, offset: index, message: message)
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        guard bytes.count <= limits.maxBytes else {
            throw fail(.tooLarge, "document of \(bytes.count) bytes exceeds \(limits.maxBytes)")
        }
        skipWhitespace()
        let value = try parseValue()
        skipWhitespace()
        guard index == bytes.count else { throw fail(.syntax, "unexpected data after the JSON value") }
        return value
    }

    mutating func parseStandaloneNumber() throws(JSONParseError) -> JSONNumber {
        let number = try parseNumber()
        guard index == bytes.count else { throw fail(.syntax, "unexpected data after the number") }
        return number
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw fail(.syntax, "unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try parseNumber())
        default: throw fail(.syntax, "unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard index + count <= bytes.count else { throw fail(.syntax, "unexpected end of input") }
        let matches = literal.withUTF8Buffer { buffer in
            bytes[index..<index + count].elementsEqual(buffer)
        }
        guard matches else { throw fail(.syntax, "invalid literal") }
        index += count
    }

    private mutating func enter() throws(JSONParseError) {
        depth += 1
        guard depth <= limits.maxDepth else {
            throw fail(.tooDeep, "nesting deeper than \(limits.maxDepth) levels")
        }
    }

    private mutating func parseObject() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                throw fail(.syntax, "expected a member name")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail(.syntax, "expected ':'") }
            index += 1
            skipWhitespace()
            members[key] = try parseValue()
            skipWhitespace()
            guard index < bytes.count else { throw fail(.syntax, "unterminated object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { throw fail(.syntax, "expected ',' or '}'") }
            index += 1
            depth -= 1
            return .object(members)
        }
    }

    private mutating func parseArray() throws(JSONParseError) -> JSONValue {
        try enter()
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            guard index < bytes.count else { throw fail(.syntax, "unterminated array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            guard bytes[index] == UInt8(ascii: "]") else { throw fail(.syntax, "expected ',' or ']'") }
            index += 1
            depth -= 1
            return .array(elements)
        }
    }

    private mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw fail(.syntax, "truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail(.syntax, "invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        var out: [UInt8] = []
        var runStart = index
        while true {
            guard index < bytes.count else { throw fail(.syntax, "unterminated string") }
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                if out.isEmpty {
                    // No escape met: the string is the bytes as they are, validated once.
                    guard let string = String(validating: bytes[runStart..<index], as: UTF8.self) else {
                        throw fail(.invalidUTF8, "string is not valid UTF-8")
                    }
                    index += 1
                    return string
                }
                out.append(contentsOf: bytes[runStart..<index])
                index += 1
                break
            }
            if c < 0x20 {
                if c == 0 { throw fail(.nulCharacter, "NUL byte in a string") }
                throw fail(.syntax, "unescaped control character in a string")
            }
            if c != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            out.append(contentsOf: bytes[runStart..<index])
            index += 1
            guard index < bytes.count else { throw fail(.syntax, "unterminated escape") }
            let e = bytes[index]
            index += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try parseHex4()
                if (0xD800...0xDBFF).contains(scalar) {
                    guard index + 2 <= bytes.count, bytes[index] == UInt8(ascii: "\\"),
                        bytes[index + 1] == UInt8(ascii: "u")
                    else { throw fail(.syntax, "unpaired surrogate in \\u escape") }
                    index += 2
                    let low = try parseHex4()
                    guard (0xDC00...0xDFFF).contains(low) else {
                        throw fail(.syntax, "unpaired surrogate in \\u escape")
                    }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if (0xDC00...0xDFFF).contains(scalar) {
                    throw fail(.syntax, "unpaired surrogate in \\u escape")
                }
                if scalar == 0 { throw fail(.nulCharacter, "\\u0000 in a string") }
                guard let unicode = Unicode.Scalar(scalar) else { throw fail(.syntax, "invalid \\u escape") }
                out.append(contentsOf: Array(String(Character(unicode)).utf8))
            default:
                throw fail(.syntax, "invalid escape")
            }
            runStart = index
        }
        guard let string = String(validating: out, as: UTF8.self) else {
            throw fail(.invalidUTF8, "string is not valid UTF-8")
        }
        return string
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSONNumber {
        let start = index
        func isDigit(_ i: Int) -> Bool {
            i < bytes.count && bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard isDigit(index) else { throw fail(.syntax, "invalid number") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
        } else {
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard isDigit(index) else { throw fail(.syntax, "invalid number") }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            guard isDigit(index) else { throw fail(.syntax, "invalid number") }
            while isDigit(index) { index += 1 }
        }
        // Safe: the bytes were checked above to be ASCII digits, signs, '.', 'e' and 'E'.
        return JSONNumber(uncheckedText: String(decoding: bytes[start..<index], as: UTF8.self))
    }
}
