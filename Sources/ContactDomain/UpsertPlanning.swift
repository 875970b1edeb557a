#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import Postgres

/// A `contact.upsert` job that passed every rule that needs no lookup of its person: the
/// request, its channel, the client's settings applied (field changes canonical, stage and
/// agent known) and the structured metadata.
struct PreparedUpsert: Sendable {
    var request: ContactRequest
    var channel: ContactStore.Channel
    /// Every custom field change, explicit and derived from the metadata, sorted by key.
    var fieldChanges: [ContactStore.FieldChange]
    var structured: StructuredMetadata

    var clientID: UUID { channel.clientID }

    /// The identifier values this job sets, as the unique index compares them.
    var identifiers: [ContactStore.IdentifierValue] {
        fieldChanges.compactMap { change in
            guard let value = change.value, let key = change.definition.identifierKey(value) else { return nil }
            return ContactStore.IdentifierValue(definitionID: change.definition.id, identifierKey: key)
        }
    }

    /// What the store must find for this job.
    var lookupRequest: ContactStore.LookupRequest {
        ContactStore.LookupRequest(
            clientID: clientID, channelID: channel.id, identity: request.identity, identifiers: identifiers)
    }

    /// Names for everything that makes two jobs of one batch depend on each other: the
    /// person (phone match key, or webchat channel and user) and each identifier value. Jobs
    /// sharing a name never go into one set-based round.
    var dependencyKeys: [String] {
        var keys: [String]
        switch request.identity {
        case .phone(let phone): keys = ["p:" + phone.matchKey]
        case .externalUser(let id): keys = ["w:" + PostgresUUID.string(channel.id) + ":" + id]
        }
        for identifier in identifiers {
            keys.append("i:" + PostgresUUID.string(identifier.definitionID) + ":" + identifier.identifierKey)
        }
        return keys
    }
}

/// The rules that decide what one job writes, given what the store found (DOMAIN.md sections
/// 4 to 7): plain functions of values, no database.
enum UpsertPlanning {
    /// A lost race found while planning: the store's rows changed under the job. The worker
    /// runs the job again.
    struct Vanished: Error {}

    /// Chooses the customer and plans every write of one job.
    ///
    /// Throws the job's ``ContactError`` (identifier values held by different customers) or
    /// ``Vanished`` (the contact's customer disappeared between lookup and lock).
    static func plan(
        _ job: PreparedUpsert, found: ContactStore.Lookup, newID: () -> UUID = PostgresUUID.random
    ) throws -> ContactStore.WritePlan {
        let request = job.request
        let structured = job.structured
        let existingCustomer: ContactStore.Customer?
        if let contact = found.contact {
            existingCustomer = found.customer?.id == contact.customerID ? found.customer : nil
        } else {
            if Set(found.owners.map(\.customerID)).count > 1 {
                var errors = ContactError()
                errors.identifierConflicts = found.owners.map {
                    .init(key: $0.key, reason: "identifier values of this job belong to different customers")
                }
                throw errors
            }
            existingCustomer = found.customer
        }
        if let customerID = found.contact?.customerID ?? existingCustomer?.id {
            let conflicts = found.owners.filter { $0.customerID != customerID }
            if !conflicts.isEmpty {
                var errors = ContactError()
                errors.identifierConflicts = conflicts.map {
                    .init(key: $0.key, reason: "this value already belongs to a different customer")
                }
                throw errors
            }
        }

        var contactPhone: String? = nil
        if case .phone(let phone) = request.identity { contactPhone = phone.e164 }
        var customer: ContactStore.Customer
        let customerWrite: ContactStore.WritePlan.CustomerWrite
        if let existing = existingCustomer {
            customer = existing
            if customer.name.isBlank { customer.name = request.name ?? structured.name }
            if customer.email.isBlank { customer.email = request.email ?? structured.email }
            if customer.phone.isBlank { customer.phone = contactPhone ?? structured.phone?.e164 }
            customer.stageID = request.stageID ?? customer.stageID
            customer.agentID = request.agentID ?? customer.agentID
            customer.metaData = MetadataMerge.merge(existing.metaData, structured.metaData)
            apply(job.fieldChanges, to: &customer.customFields)
            customerWrite = customer == existing ? .none : .update
        } else if found.contact != nil {
            throw Vanished()
        } else {
            customer = ContactStore.Customer(
                id: newID(), name: request.name ?? structured.name, email: request.email ?? structured.email,
                phone: contactPhone ?? structured.phone?.e164, stageID: request.stageID, agentID: request.agentID,
                metaData: MetadataMerge.merge([:], structured.metaData), customFields: [:])
            apply(job.fieldChanges, to: &customer.customFields)
            customerWrite = .insert
        }

        let contact: ContactStore.Contact
        let contactWrite: ContactStore.WritePlan.ContactWrite
        if let existing = found.contact {
            contact = ContactStore.Contact(
                id: existing.id, customerID: existing.customerID, platform: existing.platform, phone: existing.phone,
                name: request.name ?? existing.name, email: request.email ?? existing.email,
                externalUserID: existing.externalUserID, channelID: existing.channelID, createdAt: existing.createdAt)
            contactWrite = contact.name != existing.name || contact.email != existing.email ? .update : .none
        } else {
            var externalUserID: String? = nil
            if case .externalUser(let id) = request.identity { externalUserID = id }
            contact = ContactStore.Contact(
                id: newID(), customerID: customer.id, platform: request.platform.rawValue, phone: contactPhone,
                name: request.name, email: request.email, externalUserID: externalUserID, channelID: job.channel.id,
                createdAt: nil)
            contactWrite = .insert
        }
        // Identifier values whose key changed: the old one is released, the new one claimed.
        var identifierChanges: [ContactStore.IdentifierChange] = []
        for change in job.fieldChanges where change.definition.isIdentifier {
            let field = PostgresUUID.string(change.definition.id)
            let old = existingCustomer?.customFields[field].flatMap(change.definition.identifierKey)
            let new = change.value.flatMap(change.definition.identifierKey)
            if old != new {
                identifierChanges.append(.init(definitionID: change.definition.id, newKey: new))
            }
        }
        return ContactStore.WritePlan(
            clientID: job.clientID, customer: customer, customerWrite: customerWrite, contact: contact,
            contactWrite: contactWrite, identifierChanges: identifierChanges)
    }

    /// Sets or removes (an empty string) each changed value, keyed by definition id.
    static func apply(_ changes: [ContactStore.FieldChange], to values: inout [String: String]) {
        for change in changes {
            values[PostgresUUID.string(change.definition.id)] = change.value
        }
    }

    /// The job's result (CONTRACT.md section 5), once the plan is written; `createdAt` is the
    /// contact's, from the store when it did not know it yet.
    static func result(_ plan: ContactStore.WritePlan, createdAt: Date) -> JSONValue {
        let contact = plan.contact
        return .object([
            "id": .string(PostgresUUID.string(contact.id)),
            "name": contact.name.map(JSONValue.string) ?? .null,
            "phone": contact.phone.map(JSONValue.string) ?? .null,
            "email": contact.email.map(JSONValue.string) ?? .null,
            "platform": .string(contact.platform),
            "client_id": .string(PostgresUUID.string(plan.clientID)),
            "ai_customer_id": .string(PostgresUUID.string(plan.customer.id)),
            "created_at": .string(PostgresTimestamp.format(createdAt)),
            "default_stage_id": plan.customer.stageID.map { .string(PostgresUUID.string($0)) } ?? .null,
            "created": .bool(plan.contactWrite == .insert),
        ])
    }

    /// Splits pending jobs (in batch order) into the next set-based round and the rest: a
    /// job joins the round unless it shares a dependency key with an earlier pending job, so
    /// jobs that depend on each other run in batch order, one round after the other.
    static func nextRound<Item>(_ pending: [Item], keys: (Item) -> [String]) -> (round: [Item], rest: [Item]) {
        var seen = Set<String>()
        var round: [Item] = []
        var rest: [Item] = []
        for item in pending {
            let itemKeys = keys(item)
            if itemKeys.contains(where: seen.contains) {
                rest.append(item)
            } else {
                round.append(item)
            }
            seen.formUnion(itemKeys)
        }
        return (round, rest)
    }
}

extension Optional where Wrapped == String {
    /// Nil or only white space.
    var isBlank: Bool { self?.trimmingSpaces.isEmpty ?? true }
}
