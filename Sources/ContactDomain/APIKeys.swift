#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Postgres

/// Organizations' API keys (`crm.api_keys`), checked by their SHA-256 only.
public enum APIKeys {
    /// The client of an active key, or nil for an unknown or revoked one. The key is hashed
    /// by the server (`sha256`) and never stored or logged; the function is SECURITY DEFINER,
    /// so a producer role can call it without reading `crm.api_keys`.
    public static func client(forKey key: String, on connection: isolated PostgresConnection) throws(PostgresError)
        -> UUID?
    {
        try connection.query("SELECT crm.api_key_client(\(key)) AS client_id").first?.decode(UUID?.self, "client_id") ?? nil
    }
}
