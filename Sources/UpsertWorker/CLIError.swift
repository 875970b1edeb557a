/// A command-line failure: one line for stderr, and the exit status (CONTRACT.md section 7:
/// 2 for bad usage or configuration, 1 otherwise).
struct CLIError: Error, CustomStringConvertible {
    enum Kind {
        case usage, failure
    }
    let kind: Kind
    let message: String

    static func usage(_ message: String) -> CLIError { CLIError(kind: .usage, message: message) }
    static func failure(_ message: String) -> CLIError { CLIError(kind: .failure, message: message) }

    var exitCode: Int32 { kind == .usage ? 2 : 1 }
    var description: String { message }
}
