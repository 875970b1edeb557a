import Foundation
import Migrations
import Postgres
import TestSupport
import Testing

@Suite("The schema")
struct SchemaTests {
    static let sqlDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("sql")

    @Test("the binary's copy of the SQL equals sql/ (run scripts/embed-sql after editing it)")
    func embeddedCopyMatches() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.sqlDirectory.path)
            .filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files.count == Schema.migrations.count)
        for (file, migration) in zip(files, Schema.migrations) {
            let text = try String(contentsOf: Self.sqlDirectory.appendingPathComponent(file), encoding: .utf8)
            #expect(file == String(format: "%04d_%@.sql", migration.version, migration.name))
            #expect(
                text.trimmingCharacters(in: .newlines) == migration.sql.trimmingCharacters(in: .newlines),
                "\(file) differs from the embedded copy")
        }
    }

    @Test("migrate from three connections at once: all succeed, the schema is applied once")
    func concurrentMigrate() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let applied = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<3 {
                    group.addTask {
                        let connection = try await PostgresConnection.connect(configuration)
                        return try await connection.run { c in try await Schema.migrate(c).count }
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(applied.sorted() == [0, 0, Schema.migrations.count])
            let connection = try await PostgresConnection.connect(configuration)
            let versions = try await connection.run { c in
                try c.query("SELECT version FROM queue.schema_migrations ORDER BY version").map {
                    try $0.decode(Int.self, "version")
                }
            }
            #expect(versions == Schema.migrations.map(\.version))
            let again = try await connection.run { c in try await Schema.migrate(c).count }
            #expect(again == 0)
        }
    }
}
