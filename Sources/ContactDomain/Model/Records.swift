#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON

// The contact domain's values: the rows as the rules see them, what a job looks for and
// finds, and what it will write. Plain values; ``ContactStore`` reads and writes them, and
// ``UpsertPlanning`` decides with them, without a database.

/// A channel that matched a job's channel reference.
public struct Channel: Sendable, Hashable {
    public let id: UUID
    public let clientID: UUID
    public let clientActive: Bool
}

/// A contact row (or, in a plan, the row it will be).
public struct Contact: Sendable, Hashable {
    public var id: UUID
    public var customerID: UUID
    public var platform: String
    public var phone: String?
    public var name: String?
    public var email: String?
    public var externalUserID: String?
    public var channelID: UUID
    /// Nil for a contact not inserted yet.
    public var createdAt: Date?
}

/// A customer row, as the rules see it.
public struct Customer: Sendable, Hashable {
    public var id: UUID
    public var name: String?
    public var email: String?
    public var phone: String?
    public var stageID: UUID?
    public var agentID: UUID?
    public var metaData: [String: JSONValue]
    /// Custom field values in canonical text form, keyed by definition id (lowercase).
    public var customFields: [String: String]
}

/// An identifier value a plan releases (the customer's old one, if any) and claims (the new
/// one, nil to only release).
struct IdentifierChange: Sendable, Hashable {
    var definitionID: UUID
    /// The value the customer held before, as the unique index compares it.
    var oldKey: String?
    var newKey: String?
}

/// An identifier field value as its unique index compares it.
struct IdentifierValue: Sendable, Hashable {
    var definitionID: UUID
    var identifierKey: String
}

/// What one job looks for: its contact on its channel, the owners of its identifier values.
struct LookupRequest: Sendable {
    var clientID: UUID
    var channelID: UUID
    var identity: ContactIdentity
    var identifiers: [IdentifierValue]
}

/// What one job finds in the database about its person.
struct Lookup: Sendable {
    /// The contact with this identity on this channel.
    var contact: Contact?
    /// The customers holding the job's identifier values, with the keys they hold.
    var owners: [(customerID: UUID, key: String)] = []
    /// The candidate customer (the contact's; else the one identifier owner; else, for a
    /// phone, the client's oldest customer with that match key), locked `FOR UPDATE`.
    var customer: Customer?

    /// Every customer this lookup touched.
    var customerIDs: Set<UUID> {
        var ids = Set(owners.map(\.customerID))
        if let contact { ids.insert(contact.customerID) }
        if let customer { ids.insert(customer.id) }
        return ids
    }
}

/// One custom field change: a canonical value to set, or nil to remove the value.
public struct FieldChange: Sendable, Hashable {
    public let definition: CustomFieldDefinition
    public let value: String?
}

/// Everything one job writes.
struct WritePlan: Sendable {
    enum CustomerWrite { case none, insert, update }
    enum ContactWrite { case none, insert, update }
    var clientID: UUID
    var customer: Customer
    var customerWrite: CustomerWrite
    /// The contact as it will be.
    var contact: Contact
    var contactWrite: ContactWrite
    var identifierChanges: [IdentifierChange]
}
