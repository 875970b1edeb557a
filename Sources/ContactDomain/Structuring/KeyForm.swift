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
        let snake = RuleBasedStructurer.snakeCase(text)
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
        words.removeAll { joiningWords.contains($0) }
        if words.count > 1, questionWords.contains(words[0]) { words.removeFirst() }
        return words.joined()
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
