import Crypto
import Foundation
import Postgres
import Synchronization

/// API keys resolved to their organization through a small cache.
///
/// Entries are keyed by the key's SHA-256 (the raw key is kept nowhere, and never logged) and
/// live `timeToLive`: a revoked key stops working within that time on every `serve` process,
/// and a new key starts working as fast. Unknown keys are cached too (as unknown), so a client
/// hammering with a wrong key costs one query per `timeToLive`, not one per request.
public final class APIKeyCache: Sendable {
    private struct Entry {
        let client: UUID?
        let expires: ContinuousClock.Instant
    }

    private let timeToLive: Duration
    private let maximumEntries: Int
    private let entries = Mutex<[[UInt8]: Entry]>([:])

    public init(timeToLive: Duration = .seconds(5), maximumEntries: Int = 10_000) {
        self.timeToLive = timeToLive
        self.maximumEntries = maximumEntries
    }

    /// The organization of `key`, or nil for an unknown or revoked key.
    public func client(
        for key: String, lookup: (String) async throws -> UUID?
    ) async throws -> UUID? {
        let digest = Array(SHA256.hash(data: Data(key.utf8)))
        let now = ContinuousClock.now
        if let entry = entries.withLock({ $0[digest] }), entry.expires > now { return entry.client }
        let client = try await lookup(key)
        entries.withLock { entries in
            if entries.count >= maximumEntries { entries.removeAll(keepingCapacity: true) }
            entries[digest] = Entry(client: client, expires: now + timeToLive)
        }
        return client
    }
}
