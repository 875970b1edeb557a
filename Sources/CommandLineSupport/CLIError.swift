import ArgumentParser
import Foundation

/// A command-line failure: one line for stderr, and the exit status (docs/contract.md section 7:
/// 2 for bad usage or configuration, 1 otherwise).
public struct CLIError: Error, CustomStringConvertible {
    public enum Kind: Sendable {
        case usage, failure
    }
    public let kind: Kind
    public let message: String

    public static func usage(_ message: String) -> CLIError { CLIError(kind: .usage, message: message) }
    public static func failure(_ message: String) -> CLIError { CLIError(kind: .failure, message: message) }

    public var exitCode: Int32 { kind == .usage ? 2 : 1 }
    public var description: String { message }
}

extension AsyncParsableCommand {
    /// Parses the command line and runs the command, turning every failure into one line on
    /// stderr, `name: message`, and its exit status (2 for bad usage, 1 otherwise).
    public static func runAsProgram(named name: String) async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let error as CLIError {
            FileHandle.standardError.write(Data("\(name): \(error.message)\n".utf8))
            Foundation.exit(error.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            var message = fullMessage(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            FileHandle.standardError.write(Data("\(name): \(message)\n".utf8))
            Foundation.exit(code == .validationFailure ? 2 : 1)
        }
    }
}
