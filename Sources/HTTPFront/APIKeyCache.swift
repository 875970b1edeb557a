import Crypto
import Foundation
import Postgres
import Synchronization

/// API keys resolved to their organization through a small cache.
///
/// Entries are keyed by the key's SHA-256 (the raw key is kept nowhere, and never logged) and
/// live `timeToLive`: a revoked key stops working within that time on every `serve` process,
/// and a new key starts working as fast. Unknown keys are cached too (as unknown), so a client
/// hammering with a wrong key costs one query per `timeToLive`, not one per request. One
/// lookup per key at a time: when an entry expires under load, the requests that need it wait
/// for one query together instead of each sending its own.
public final class APIKeyCache: Sendable {
    private enum Slot {
        case known(client: UUID?, expires: ContinuousClock.Instant)
        case loading(Task<UUID?, any Error>)

        func isUsable(at now: ContinuousClock.Instant) -> Bool {
            switch self {
            case .known(_, let expires): expires > now
            case .loading: true
            }
        }
    }

    private let timeToLive: Duration
    private let maximumEntries: Int
    private let slots = Mutex<[[UInt8]: Slot]>([:])

    public init(timeToLive: Duration = .seconds(5), maximumEntries: Int = 10_000) {
        self.timeToLive = timeToLive
        self.maximumEntries = maximumEntries
    }

    /// The organization of `key`, or nil for an unknown or revoked key.
    public func client(
        for key: String, lookup: @escaping @Sendable (String) async throws -> UUID?
    ) async throws -> UUID? {
        let digest = Array(SHA256.hash(data: Data(key.utf8)))
        let now = ContinuousClock.now
        let slot = slots.withLock { slots -> Slot in
            switch slots[digest] {
            case let slot? where slot.isUsable(at: now):
                return slot
            default:
                if slots.count >= maximumEntries { slots.removeAll(keepingCapacity: true) }
                let task = Task { try await lookup(key) }
                slots[digest] = .loading(task)
                return .loading(task)
            }
        }
        switch slot {
        case .known(let client, _):
            return client
        case .loading(let task):
            do {
                let client = try await task.value
                let expires = ContinuousClock.now + timeToLive
                slots.withLock { slots in
                    if case .loading? = slots[digest] { slots[digest] = .known(client: client, expires: expires) }
                }
                return client
            } catch {
                // A failed lookup is not cached: the next request asks again.
                slots.withLock { slots in
                    if case .loading? = slots[digest] { slots[digest] = nil }
                }
                throw error
            }
        }
    }
}
