import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The binaries the tests run as separate processes.
public enum TestBinaries {
    static var directory: URL {
        if let bin = ProcessInfo.processInfo.environment["UPSERT_WORKER_BIN"], !bin.isEmpty {
            return URL(fileURLWithPath: bin).deletingLastPathComponent()
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug")
    }

    /// The `upsert-worker` executable.
    public static var upsertWorker: String { directory.appendingPathComponent("upsert-worker").path }
    /// The `TestWorker` executable (the real worker with test-only job kinds).
    public static var testWorker: String { directory.appendingPathComponent("TestWorker").path }
}

/// A child process whose output goes to a temporary file, for tests that kill, signal and
/// restart workers.
public final class ChildProcess {
    private let process = Process()
    private let logFile: URL

    /// Starts `executable` with `arguments`; stdout and stderr are collected together.
    public init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logFile)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: logFile)
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Everything the process printed so far.
    public var outputText: String {
        (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
    }

    /// Sends a signal (SIGTERM, SIGKILL…).
    public func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit, up to `timeout`; returns its exit status, or nil on time-out.
    public func wait(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
        try? await Task.sleep(for: .milliseconds(50))
        return process.terminationStatus
    }

    /// Sends `signal` and waits for the process to exit, up to `timeout`; returns its exit
    /// status (nil on time-out) and how long it took from the signal.
    public func signalAndWait(_ signal: Int32, timeout: Duration) async -> (status: Int32?, took: Duration) {
        let signalled = ContinuousClock.now
        self.signal(signal)
        let status = await wait(timeout: timeout)
        return (status, ContinuousClock.now - signalled)
    }

    /// Runs a command to completion and returns its exit status and output.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], input: String? = nil,
        timeout: Duration = .seconds(120)
    ) async throws -> (status: Int32, output: String) {
        if let input {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("input-\(UUID().uuidString)")
            try input.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            let child = try ChildProcess(
                "/bin/sh", ["-c", "exec \"$0\" \"$@\" < \"\(file.path)\"", executable] + arguments,
                environment: environment)
            let status = await child.wait(timeout: timeout) ?? -1
            return (status, child.outputText)
        }
        let child = try ChildProcess(executable, arguments, environment: environment)
        let status = await child.wait(timeout: timeout) ?? -1
        return (status, child.outputText)
    }
}
