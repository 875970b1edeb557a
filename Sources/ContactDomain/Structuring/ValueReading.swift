import JSON

/// Reads metadata values as custom field types in the formats Latin America writes them, or
/// not at all: whatever could be read two ways is left alone (docs/rules.md section 6, rule 24).
/// Every reader returns canonical text that ``CustomFieldDefinition/canonicalize(_:)`` accepts.
enum ValueReading {
    // MARK: Numbers

    /// Currency marks that may come before or after an amount. Brazil's real (`R$`, `BRL`)
    /// writes `.` between thousands and `,` before decimals; the US dollar (`US$`, `USD`) the
    /// other way round. The others do not say which (Chile and Argentina write `1.500,5`,
    /// Mexico `1,500.5`).
    static let currencyMarks: [(mark: [UInt8], decimalComma: Bool?, suffix: Bool)] = ([
        ("us$", false), ("usd", false), ("r$", true), ("brl", true), ("clp", nil), ("ars", nil), ("cop", nil),
        ("mxn", nil), ("pen", nil), ("uyu", nil), ("s/", nil), ("$", nil),
    ] as [(String, Bool?)]).map { mark, comma in
        // A symbol comes before the amount; a code may come after it too (`1.500 CLP`).
        (Array(mark.utf8), comma, !mark.hasSuffix("$") && !mark.hasSuffix("/"))
    }

    /// `$1.500.000` → `1500000`, `1.500.000,50` → `1500000.50`, `R$ 2.500,50` → `2500.50`,
    /// `US$ 2,000.50` → `2000.50`, `1,5` → `1.5`, a JSON number as written. Nil for words
    /// (`1,5 millones`), and for one separator followed by exactly three digits when no
    /// currency says which it is (`1.500` is fifteen hundred in Santiago and one and a half in
    /// Miami).
    static func number(_ value: JSONValue) -> String? {
        switch value {
        case .number(let n): return DecimalText.canonical(n.text)
        case .string(let s): return number(s)
        default: return nil
        }
    }

    static func number(_ text: String) -> String? {
        guard text.utf8.count <= 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar.value {
            case 0x41...0x5A: bytes.append(UInt8(scalar.value) | 0x20)
            case 0..<0x80: bytes.append(UInt8(scalar.value))
            // No-break spaces, as spreadsheets and `Intl.NumberFormat` put after `R$`.
            case 0xA0, 0x202F: bytes.append(0x20)
            default: return nil
            }
        }
        return number(bytes: bytes[...])
    }

    /// ``number(_:)`` over lowercased ASCII.
    static func number(bytes: ArraySlice<UInt8>) -> String? {
        func isSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        func isDigit(_ b: UInt8) -> Bool { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b) }
        let (dot, comma, minus) = (UInt8(ascii: "."), UInt8(ascii: ","), UInt8(ascii: "-"))
        var rest = bytes
        func trim() {
            while let first = rest.first, isSpace(first) { rest = rest.dropFirst() }
            while let last = rest.last, isSpace(last) { rest = rest.dropLast() }
        }
        trim()
        var negative = false
        var decimalComma: Bool? = nil
        var sawCurrency = false
        func takeSign() {
            guard !negative, rest.first == minus else { return }
            negative = true
            rest = rest.dropFirst()
            trim()
        }
        func takeCurrency() {
            guard !sawCurrency else { return }
            for (mark, comma, suffix) in currencyMarks {
                if rest.starts(with: mark) {
                    rest = rest.dropFirst(mark.count)
                } else if suffix, rest.count >= mark.count, rest.suffix(mark.count).elementsEqual(mark) {
                    rest = rest.dropLast(mark.count)
                } else {
                    continue
                }
                trim()
                decimalComma = comma
                sawCurrency = true
                return
            }
        }
        takeSign()
        takeCurrency()
        takeSign()
        takeCurrency()
        guard !rest.isEmpty else { return nil }
        var dots = 0, commas = 0
        for byte in rest {
            if byte == dot { dots += 1 } else if byte == comma { commas += 1 } else if !isDigit(byte) { return nil }
        }
        let decimal: UInt8?
        switch (dots, commas) {
        case (0, 0): decimal = nil
        case (_, 0), (0, _):
            let separator = dots > 0 ? dot : comma
            if let decimalComma {
                decimal = (decimalComma ? comma : dot) == separator ? separator : nil
            } else if dots + commas > 1 {
                decimal = nil
            } else {
                // One separator: a decimal point unless exactly three digits follow it.
                guard let at = rest.firstIndex(of: separator), rest.endIndex - at - 1 != 3 else { return nil }
                decimal = separator
            }
        default:
            // Both: the last one is the decimal separator, and it comes once.
            guard let at = rest.lastIndex(where: { $0 == dot || $0 == comma }) else { return nil }
            let last = rest[at]
            if let decimalComma, (decimalComma ? comma : dot) != last { return nil }
            guard (last == dot ? dots : commas) == 1 else { return nil }
            decimal = last
        }
        var integerPart = rest
        var fraction: ArraySlice<UInt8> = []
        if let decimal, let at = rest.firstIndex(of: decimal) {
            integerPart = rest[..<at]
            fraction = rest[(at + 1)...]
            guard !fraction.isEmpty, fraction.allSatisfy(isDigit) else { return nil }
        }
        // Left of the decimal separator: digits, grouped by three when grouped at all.
        let grouping: UInt8 = integerPart.contains(dot) ? dot : comma
        var digits: [UInt8] = []
        digits.reserveCapacity(integerPart.count)
        var groupLength = 0
        var groups = 0
        for byte in integerPart {
            if byte == grouping {
                guard groupLength > 0, groups > 0 || groupLength <= 3, groups == 0 || groupLength == 3 else { return nil }
                groups += 1
                groupLength = 0
            } else {
                guard isDigit(byte) else { return nil }
                digits.append(byte)
                groupLength += 1
            }
        }
        guard groupLength > 0, groups == 0 || groupLength == 3 else { return nil }
        // Canonical, as PostgreSQL's numeric prints it: no leading zeros, the fraction as written.
        while digits.count > 1, digits.first == UInt8(ascii: "0") { digits.removeFirst() }
        let isZero = digits.allSatisfy { $0 == UInt8(ascii: "0") } && fraction.allSatisfy { $0 == UInt8(ascii: "0") }
        var out: [UInt8] = negative && !isZero ? [minus] : []
        out.append(contentsOf: digits)
        if !fraction.isEmpty {
            out.append(dot)
            out.append(contentsOf: fraction)
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Dates

    /// Month names and their common three-letter short forms in Spanish, Portuguese and
    /// English; no spelling means two months.
    static let months: [String: Int] = {
        let names: [(Int, [String])] = [
            (1, ["enero", "janeiro", "january", "ene", "jan"]),
            (2, ["febrero", "fevereiro", "february", "feb", "fev"]),
            (3, ["marzo", "marco", "march", "mar"]),
            (4, ["abril", "april", "abr", "apr"]),
            (5, ["mayo", "maio", "may", "mai"]),
            (6, ["junio", "junho", "june", "jun"]),
            (7, ["julio", "julho", "july", "jul"]),
            (8, ["agosto", "august", "ago", "aug"]),
            (9, ["septiembre", "setiembre", "setembro", "september", "sep", "set", "sept"]),
            (10, ["octubre", "outubro", "october", "oct", "out"]),
            (11, ["noviembre", "novembro", "november", "nov"]),
            (12, ["diciembre", "dezembro", "december", "dic", "dez", "dec"]),
        ]
        var table: [String: Int] = [:]
        for (month, spellings) in names {
            for spelling in spellings { table[spelling] = month }
        }
        return table
    }()

    /// `2026-03-15` (and ISO 8601 timestamps), `15/03/2026`, `15-03-2026`, `15.03.2026`,
    /// `2026/03/15`, `15 de marzo de 2026`, `15 de março de 2026`, `March 15, 2026`,
    /// `15-mar-2026`, as `YYYY-MM-DD`. Numeric dates are day first unless the year comes first;
    /// `03/15/2026` is no date (there is no month 15), and a two-digit year is not read.
    static func date(_ value: JSONValue) -> String? {
        guard case .string(let text) = value else { return nil }
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty, trimmed.utf8.count <= 64 else { return nil }
        if let iso = CalendarDate.canonical(trimmed) { return iso }
        // Numeric: three groups of digits, one separator.
        for separator in ["/", "-", "."] as [Character] {
            let parts = trimmed.split(separator: separator, omittingEmptySubsequences: false)
            guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }) else { continue }
            if parts[0].count == 4, parts[1].count <= 2, parts[2].count <= 2 {
                return calendarDate(year: parts[0], month: parts[1], day: parts[2])
            }
            if parts[2].count == 4, parts[0].count <= 2, parts[1].count <= 2 {
                return calendarDate(year: parts[2], month: parts[1], day: parts[0])
            }
            return nil
        }
        // Words: a day, a month by name and a four-digit year, in any order.
        let folded = RuleBasedStructurer.foldedLowercase(trimmed)
        let tokens = folded.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" || $0 == "/" || $0 == "." })
            .filter { !["de", "del", "of", "the"].contains($0) }
        guard tokens.count == 3 else { return nil }
        var day: Substring? = nil, month: Int? = nil, year: Substring? = nil
        for token in tokens {
            if let m = months[String(token)] {
                guard month == nil else { return nil }
                month = m
                continue
            }
            var digits = token
            for suffix in ["st", "nd", "rd", "th", "º", "°", "o"] where digits.hasSuffix(suffix) && digits.count > suffix.count {
                digits = digits.dropLast(suffix.count)
                break
            }
            guard digits.allSatisfy(\.isASCIIDigit) else { return nil }
            if digits.count == 4, year == nil {
                year = digits
            } else if digits.count <= 2, day == nil {
                day = digits
            } else {
                return nil
            }
        }
        guard let day, let month, let year else { return nil }
        return calendarDate(year: year, month: Substring(String(month)), day: day)
    }

    static func calendarDate(year: Substring, month: Substring, day: Substring) -> String? {
        guard let y = Int(year), let m = Int(month), let d = Int(day), y >= 1, (1...12).contains(m), d >= 1,
            d <= CalendarDate.daysIn(month: m, year: y)
        else { return nil }
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(String(repeating: "0", count: max(0, 4 - String(y).count)))\(y)-\(two(m))-\(two(d))"
    }

    // MARK: Booleans and options

    static let yes: Set<String> = ["true", "yes", "y", "si", "sim", "verdadero", "verdadeiro", "x", "1"]
    static let no: Set<String> = ["false", "no", "n", "nao", "falso", "0"]

    /// `sí`, `si`, `sim`, `yes`, `verdadero`, `verdadeiro`, `true`, `x` (a ticked box), `1` are
    /// true; `no`, `não`, `falso`, `false`, `0` are false; JSON booleans are themselves.
    static func boolean(_ value: JSONValue) -> Bool? {
        switch value {
        case .bool(let b): return b
        case .number(let n): return n.text == "1" ? true : n.text == "0" ? false : nil
        case .string(let s):
            let folded = RuleBasedStructurer.foldedLowercase(s.trimmingSpaces)
            if yes.contains(folded) { return true }
            if no.contains(folded) { return false }
            return nil
        default: return nil
        }
    }

    /// The one option equal to the value, ignoring case, accents and surrounding spaces, in
    /// the definition's spelling; nil when none is, or when two are.
    /// `folded` holds the options folded the same way, in the same order.
    static func option(_ value: JSONValue, options: [String], folded: [String]) -> String? {
        let text: String
        switch value {
        case .string(let s): text = s
        case .number(let n): text = n.text
        default: return nil
        }
        let wanted = RuleBasedStructurer.foldedLowercase(text.trimmingSpaces)
        guard !wanted.isEmpty else { return nil }
        var match: String? = nil
        for (option, foldedOption) in zip(options, folded) where foldedOption == wanted {
            guard match == nil else { return nil }
            match = option
        }
        return match
    }
}
