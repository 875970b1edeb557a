import Logging
import Postgres

/// One numbered schema change from `sql/`.
public struct Migration: Sendable, Hashable {
    /// The number in the file name; migrations apply in increasing order.
    public let version: Int
    /// The rest of the file name.
    public let name: String
    /// The SQL text, applied as one script.
    public let sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// The project's schema: the `queue` and `crm` schemas of docs/contract.md, as numbered migrations.
public enum Schema {
    /// The version of the newest migration this binary carries.
    public static var latestVersion: Int { migrations.map(\.version).max() ?? 0 }

    /// The key of the transaction-scoped advisory lock that serializes concurrent migrators.
    static let lockKey: Int64 = 0x5570_7365_7274  // "Upsert"

    /// Applies the pending migrations in one transaction, under an advisory lock, and records
    /// them in `queue.schema_migrations`. Safe to run again, and from several processes at
    /// once: the others wait for the lock and then find nothing left to do.
    ///
    /// Returns the migrations this call applied.
    ///
    /// Roles belong to the whole cluster, while the lock is per database: two databases of one
    /// cluster migrated at the same moment can both try to create a role. The loser's
    /// transaction is rolled back and run again, and then finds the role there.
    @discardableResult
    public static func migrate(
        _ connection: isolated PostgresConnection, migrations: [Migration] = Schema.migrations,
        logger: Logger = Logger(label: "migrate")
    ) async throws -> [Migration] {
        var attempt = 1
        while true {
            do {
                return try await migrateOnce(connection, migrations: migrations, logger: logger)
            } catch let error as PostgresError where attempt < 3 && error.isConcurrentRoleCreation {
                attempt += 1
                logger.info("another database created a role at the same moment; migrating again")
            }
        }
    }

    private static func migrateOnce(
        _ connection: isolated PostgresConnection, migrations: [Migration], logger: Logger
    ) async throws -> [Migration] {
        try await connection.withTransaction { connection in
            try connection.execute("SELECT pg_advisory_xact_lock(\(lockKey))")
            try connection.executeScript(
                """
                CREATE SCHEMA IF NOT EXISTS queue;
                CREATE TABLE IF NOT EXISTS queue.schema_migrations (
                    version    int PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                );
                """)
            let applied = Set(
                try connection.query("SELECT version FROM queue.schema_migrations").map {
                    try $0.decode(Int.self, "version")
                })
            var done: [Migration] = []
            for migration in migrations.sorted(by: { $0.version < $1.version }) where !applied.contains(migration.version) {
                try connection.executeScript(migration.sql)
                try connection.execute(
                    "INSERT INTO queue.schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))")
                logger.info(
                    "applied migration",
                    metadata: ["migration.version": "\(migration.version)", "migration.name": "\(migration.name)"])
                done.append(migration)
            }
            return done
        }
    }
}

extension PostgresError {
    /// A role created by another session between this one's check and its CREATE ROLE.
    var isConcurrentRoleCreation: Bool {
        sqlState == "42710" || (sqlState == .uniqueViolation && constraint == "pg_authid_rolname_index")
    }
}
