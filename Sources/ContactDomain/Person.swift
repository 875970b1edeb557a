#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The person a `contact.upsert` job is about, as every key of the queue and the handler names
/// them: one value, from which the ordering key, the advisory lock and the in-batch dependency
/// are all derived, so that the three can never spell one person two ways.
public struct Person: Sendable, Hashable {
    /// Who the person is on their platform.
    public enum Contact: Sendable, Hashable {
        /// A WhatsApp person, by phone match key (the same on both WhatsApp platforms).
        case phone(matchKey: String)
        /// A website chat visitor, by external user id (unique within one channel).
        case user(String)
    }

    public var platform: Platform
    /// The channel as the job names it: its UUID (lowercase) or its phone match key.
    public var channel: String
    public var contact: Contact

    /// The queue's ordering key (`platform:channel:contact`): jobs of one person on one channel
    /// run in the order they were enqueued. The database's `crm.contact_ordering_key` computes
    /// the same for producers that leave the key to the insert trigger.
    public var orderingKey: String {
        let contactRef: String
        switch contact {
        case .phone(let matchKey): contactRef = matchKey
        case .user(let user): contactRef = user
        }
        return platform.rawValue + ":" + channel + ":" + contactRef
    }

    /// The key of everything that must not run concurrently for this person in `organization`:
    /// one WhatsApp number across all the organization's channels and both WhatsApp platforms
    /// (the same person writing to two of its numbers is one customer); a webchat visitor
    /// within their channel (channel ids are unique across organizations). Used as the
    /// advisory lock of a batch (with the organization known at enqueue, or '' when it was not)
    /// and as the in-batch dependency between two jobs (with the resolved organization).
    public func key(organization: String) -> String {
        switch contact {
        case .phone(let matchKey): "person:" + organization + ":phone:" + matchKey
        case .user(let user): "person:webchat:" + channel + ":" + user
        }
    }
}

extension Person {
    /// The person a validated request names.
    init(platform: Platform, channel: ChannelReference, identity: ContactIdentity) {
        self.platform = platform
        switch channel {
        case .id(let id): self.channel = id.uuidString.lowercased()
        case .phone(let phone): self.channel = phone.matchKey
        }
        switch identity {
        case .phone(let phone): contact = .phone(matchKey: phone.matchKey)
        case .externalUser(let user): contact = .user(user)
        }
    }
}
