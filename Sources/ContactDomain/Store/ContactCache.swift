#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Postgres
import Synchronization

/// The organization settings every job reads (clients, channels, stages, agents, custom field
/// definitions), cached per worker process.
///
/// Invalidation: every change to those tables bumps `crm.config_version` (statement
/// triggers). The handler reads the version at the start of each batch; a new number drops
/// the whole cache. A change committed while a batch runs is seen by the next batch, as if it
/// had committed just after this one.
final class ContactCache: Sendable {
    struct ClientSettings: Sendable {
        let stages: Set<UUID>
        let activeAgents: Set<UUID>
        let definitions: [String: CustomFieldDefinition]
    }

    struct State {
        var version: Int64 = -1
        var clientActive: [UUID: Bool?] = [:]
        var channels: [String: [Channel]] = [:]
        var settings: [UUID: ClientSettings] = [:]
    }

    private let state = Mutex(State())

    /// Drops everything when the version differs from the one the cache was filled under.
    func observe(version: Int64) {
        state.withLock { state in
            if state.version != version { state = State(version: version) }
        }
    }

    func clientActive(_ id: UUID, load: () throws -> Bool?) rethrows -> Bool? {
        if let cached = state.withLock({ $0.clientActive[id] }) { return cached }
        let value = try load()
        state.withLock { $0.clientActive[id] = .some(value) }
        return value
    }

    func channels(_ key: String, load: () throws -> [Channel]) rethrows -> [Channel] {
        if let cached = state.withLock({ $0.channels[key] }) { return cached }
        let value = try load()
        state.withLock { $0.channels[key] = value }
        return value
    }

    func settings(_ client: UUID, load: () throws -> ClientSettings) rethrows -> ClientSettings {
        if let cached = state.withLock({ $0.settings[client] }) { return cached }
        let value = try load()
        state.withLock { $0.settings[client] = value }
        return value
    }
}
