/// The form in which metadata keys, custom field keys and labels, and synonyms are compared
/// (docs/rules.md section 6, rule 23): what a person reading a column header would ignore is
/// dropped, so `"¿Es VIP?"`, `"is_vip"` and `"Is VIP"` are all `vip`, and `"R.U.T."` is `rut`.
///
/// - accents and case: `"Teléfono"` and `"TELEFONO"` are alike;
/// - punctuation, spaces, `_`, `-`, `¿?` and camelCase humps only separate words;
/// - the joining words `de`, `del`, `da`, `do`, `das`, `dos`, `of`, `the`, `el`, `la`, `los`,
///   `las` are dropped: `"Fecha de visita"` is `fecha visita`;
/// - a leading `is`, `es` or `esta` (`está`) before other words is dropped, the way a
///   yes/no question names a boolean field: `"¿Es VIP?"` is `vip`;
/// - the words are then joined without a separator: `"e-mail"` is `email`, `"Tax ID"` is `taxid`.
///
/// Plurals are handled when two forms are compared (``variants(_:)``), not here.
enum KeyForm {
    static let joiningWords: Set<Substring> = ["de", "del", "da", "do", "das", "dos", "of", "the", "el", "la", "los", "las"]
    static let questionWords: Set<Substring> = ["is", "es", "esta"]

    /// The compact form of a key, label or synonym; empty when nothing is left.
    static func compact(_ text: String) -> String {
        formOfSnakeCase(RuleBasedStructurer.snakeCase(text))
    }

    /// ``compact(_:)`` of a key already in ``RuleBasedStructurer/snakeCase(_:)``'s form.
    static func formOfSnakeCase(_ snake: String) -> String {
        if let ascii = asciiForm(snake) { return ascii }
        var words: [Substring] = []
        var start: String.UnicodeScalarView.Index? = nil
        let scalars = snake.unicodeScalars
        var index = scalars.startIndex
        while index != scalars.endIndex {
            let scalar = scalars[index]
            let isWordScalar = scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)
            if isWordScalar, start == nil { start = index }
            if !isWordScalar, let first = start {
                words.append(Substring(scalars[first..<index]))
                start = nil
            }
            index = scalars.index(after: index)
        }
        if let first = start { words.append(Substring(scalars[first..<scalars.endIndex])) }
        return joined(words)
    }

    static let joiningWordBytes: [[UInt8]] = joiningWords.map { Array($0.utf8) }
    static let questionWordBytes: [[UInt8]] = questionWords.map { Array($0.utf8) }

    /// ``formOfSnakeCase(_:)`` over the bytes of an ASCII key: words are runs of `[a-z0-9]`
    /// (snake_case has no capitals left). Nil for any other key. It repeats ``joined(_:)``'s
    /// word rules on bytes: going through `Substring` words costs 2 µs of the structurer's
    /// 18 per typical object (`upsert-bench --structurer-cost`); the fixtures check both paths.
    static func asciiForm(_ snake: String) -> String? {
        var snake = snake
        return snake.withUTF8 { bytes -> String? in
            var words: [Range<Int>] = []
            var start: Int? = nil
            for (i, byte) in bytes.enumerated() {
                guard byte < 0x80 else { return nil }
                let isWordByte = (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                if isWordByte, start == nil { start = i }
                if !isWordByte, let first = start {
                    words.append(first..<i)
                    start = nil
                }
            }
            if let first = start { words.append(first..<bytes.count) }
            func isOne(of list: [[UInt8]], _ word: Range<Int>) -> Bool {
                list.contains { $0.count == word.count && $0.elementsEqual(bytes[word]) }
            }
            words.removeAll { isOne(of: joiningWordBytes, $0) }
            if words.count > 1, isOne(of: questionWordBytes, words[0]) { words.removeFirst() }
            if words.count == 1, words[0].count == bytes.count { return String(decoding: bytes, as: UTF8.self) }
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count)
            for word in words { out.append(contentsOf: bytes[word]) }
            return String(decoding: out, as: UTF8.self)
        }
    }

    static func joined(_ words: [Substring]) -> String {
        var words = words
        words.removeAll { joiningWords.contains($0) }
        if words.count > 1, questionWords.contains(words[0]) { words.removeFirst() }
        return words.count == 1 ? String(words[0]) : words.joined()
    }

    /// The form itself and its singulars: without a final `s`, without a final `es`, and with
    /// a final `ies` as `y`, when at least three letters are left. Two forms name the same
    /// thing when their variants meet: `notes`~`note`, `ciudades`~`ciudad`, `cities`~`city`.
    static func variants(_ form: String) -> [String] {
        guard form.utf8.last == UInt8(ascii: "s") else { return [form] }
        var out = [form]
        let withoutS = String(form.dropLast())
        if withoutS.unicodeScalars.count >= 3 { out.append(withoutS) }
        if withoutS.utf8.last == UInt8(ascii: "e") {
            let withoutES = String(withoutS.dropLast())
            if withoutES.unicodeScalars.count >= 3 { out.append(withoutES) }
            if withoutES.utf8.last == UInt8(ascii: "i"), withoutES.unicodeScalars.count >= 3 {
                out.append(String(withoutES.dropLast()) + "y")
            }
        }
        return out
    }
}
