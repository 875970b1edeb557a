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

    @Test("upgrading to 0005 moves every custom field value onto its customer and keeps identifiers unique")
    func customFieldsUpgrade() async throws {
        try await TestDatabase.withScratch(migrated: false) { configuration in
            let c = try await PostgresConnection.connect(configuration)
            let (values, identifiers, duplicate) = try await c.run { c in
                try await Schema.migrate(c, migrations: Schema.migrations.filter { $0.version <= 4 })
                try c.executeScript(
                    """
                    INSERT INTO crm.clients (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'Org');
                    INSERT INTO crm.custom_field_definitions (id, client_id, key, field_type, is_identifier) VALUES
                        ('00000000-0000-4000-8000-0000000000d1', '00000000-0000-4000-8000-000000000001', 'rut', 'text', true),
                        ('00000000-0000-4000-8000-0000000000d2', '00000000-0000-4000-8000-000000000001', 'budget', 'number', false);
                    INSERT INTO crm.customers (id, client_id, name) VALUES
                        ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-000000000001', 'A'),
                        ('00000000-0000-4000-8000-0000000000c2', '00000000-0000-4000-8000-000000000001', 'B');
                    INSERT INTO crm.customer_custom_fields (customer_id, definition_id, client_id, value, identifier_key) VALUES
                        ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-0000000000d1',
                         '00000000-0000-4000-8000-000000000001', '11.111.111-K', '11.111.111-k'),
                        ('00000000-0000-4000-8000-0000000000c1', '00000000-0000-4000-8000-0000000000d2',
                         '00000000-0000-4000-8000-000000000001', '1500', NULL),
                        ('00000000-0000-4000-8000-0000000000c2', '00000000-0000-4000-8000-0000000000d2',
                         '00000000-0000-4000-8000-000000000001', '20', NULL);
                    """)
                try await Schema.migrate(c)
                let values = try c.query(
                    "SELECT customer_id::text || ' ' || key || '=' || value AS v FROM crm.customer_field_values ORDER BY 1"
                ).map { try $0.decode(String.self, "v") }
                let identifiers = try c.query(
                    "SELECT customer_id::text || ' ' || identifier_key AS v FROM crm.customer_identifiers"
                ).map { try $0.decode(String.self, "v") }
                var duplicate: PostgresError?
                do {
                    try c.execute(
                        """
                        INSERT INTO crm.customer_identifiers (client_id, definition_id, identifier_key, customer_id)
                        VALUES ('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-0000000000d1',
                                '11.111.111-k', '00000000-0000-4000-8000-0000000000c2')
                        """)
                } catch let error as PostgresError { duplicate = error }
                return (values, identifiers, duplicate)
            }
            await c.close()
            #expect(values == [
                "00000000-0000-4000-8000-0000000000c1 budget=1500", "00000000-0000-4000-8000-0000000000c1 rut=11.111.111-K",
                "00000000-0000-4000-8000-0000000000c2 budget=20",
            ])
            #expect(identifiers == ["00000000-0000-4000-8000-0000000000c1 11.111.111-k"])
            #expect(duplicate?.sqlState == .uniqueViolation)
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
