#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Migrations
import Postgres

#if canImport(Glibc)
import Glibc
#endif

/// Scratch databases for tests: each test gets its own database, cloned from a template
/// that holds the migrated schema, and dropped when the test ends.
///
/// The server comes from `DATABASE_URL` (set by `scripts/test`, which starts a throwaway
/// cluster). Cloning a template takes milliseconds, so tests never share state and can run
/// in parallel.
public enum TestDatabase {
    /// The server the tests use; a test fails with a clear message when it is not set.
    public static func serverConfiguration() throws -> PostgresConfiguration {
        guard let url = ProcessInfo.processInfo.environment["DATABASE_URL"], !url.isEmpty else {
            throw TestSetupError(message: "DATABASE_URL is not set: run the tests with scripts/test")
        }
        return try PostgresConfiguration(url)
    }

    /// A name that changes whenever the schema does, so a stale template is never reused.
    static var templateName: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for migration in Schema.migrations {
            for byte in migration.sql.utf8 {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
            }
        }
        return "upsert_template_\(String(hash, radix: 16))"
    }

    /// Creates a migrated scratch database, runs `body` with its configuration, then drops it.
    public static func withScratch<T: Sendable>(
        migrated: Bool = true, _ body: (PostgresConfiguration) async throws -> T
    ) async throws -> T {
        let server = try serverConfiguration()
        let name = "t_" + String(UUID().uuidString.lowercased().filter { $0 != "-" })
        let admin = try await PostgresConnection.connect(server.with(database: "postgres"))
        let template = migrated ? templateName : "template1"
        if migrated { try await ensureTemplate(admin, server: server) }
        try await admin.run { admin in
            try admin.execute("SELECT pg_advisory_lock(4242)")
            defer { _ = try? admin.execute("SELECT pg_advisory_unlock(4242)") }
            try admin.executeScript("CREATE DATABASE \(name) TEMPLATE \(template)")
        }
        let configuration = server.with(database: name)
        do {
            let value = try await body(configuration)
            try await drop(name, admin)
            return value
        } catch {
            try? await drop(name, admin)
            throw error
        }
    }

    /// A migrated scratch database and an open connection to it, closed afterwards.
    public static func withScratchConnection<T: Sendable>(
        _ body: (PostgresConfiguration, PostgresConnection) async throws -> T
    ) async throws -> T {
        try await withScratch { configuration in
            let connection = try await PostgresConnection.connect(configuration)
            do {
                let value = try await body(configuration, connection)
                await connection.close()
                return value
            } catch {
                await connection.close()
                throw error
            }
        }
    }

    /// A logger for tests: warnings and above only, so that test output stays readable.
    public static let quietLogger: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        return logger
    }()

    private static func drop(_ name: String, _ admin: PostgresConnection) async throws {
        try await admin.run { admin in
            try admin.executeScript("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        }
        await admin.close()
    }

    private static func ensureTemplate(_ admin: PostgresConnection, server: PostgresConfiguration) async throws {
        let name = templateName
        try await admin.run { admin in
            try admin.execute("SELECT pg_advisory_lock(4242)")
            defer { _ = try? admin.execute("SELECT pg_advisory_unlock(4242)") }
            let exists = try admin.query("SELECT 1 FROM pg_database WHERE datname = \(name)").count == 1
            if exists { return }
            try admin.executeScript("CREATE DATABASE \(name)")
            let connection = try await PostgresConnection.connect(server.with(database: name))
            try await connection.run { connection in
                _ = try await Schema.migrate(connection, logger: Logger(label: "test-migrate"))
            }
            await connection.close()
        }
    }
}

/// The test environment is not set up as the tests need.
public struct TestSetupError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
