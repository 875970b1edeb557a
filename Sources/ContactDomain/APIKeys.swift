#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Postgres

/// Organizations' API keys (`crm.api_keys`), checked by their SHA-256 only.
public enum APIKeys {
    /// The client of an active key, or nil for an unknown or revoked one. The key is hashed
    /// by the server (`sha256`) and never stored or logged.
    public static func client(forKey key: String, on connection: isolated PostgresConnection) throws(PostgresError)
        -> UUID?
    {
        try connection.query(
            """
            SELECT client_id FROM crm.api_keys
            WHERE key_hash = encode(sha256(convert_to($1, 'UTF8')), 'hex')
              AND (revoked_at IS NULL OR revoked_at > now())
            """, [key]
        ).first?.decode(UUID.self, "client_id")
    }
}
