#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms

/// A `contact.upsert` job that passed every rule that needs no lookup of its person: the
/// request, its channel, the client's settings applied (field changes canonical, stage and
/// agent known) and the structured metadata.
struct PreparedUpsert: Sendable {
    var request: ContactRequest
    var channel: Channel
    /// Every custom field change, explicit and derived from the metadata, sorted by key.
    var fieldChanges: [FieldChange]
    var structured: StructuredMetadata

    var clientID: UUID { channel.clientID }

    /// The identifier values this job sets, as the unique index compares them.
    var identifiers: [IdentifierValue] {
        fieldChanges.compactMap { change in
            guard let value = change.value, let key = change.definition.identifierKey(value) else { return nil }
            return IdentifierValue(definitionID: change.definition.id, identifierKey: key)
        }
    }

    /// What the store must find for this job.
    var lookupRequest: LookupRequest {
        LookupRequest(
            clientID: clientID, channelID: channel.id, identity: request.identity, identifiers: identifiers)
    }

    /// True when this job can be planned in memory right after `head`: the same contact (client,
    /// channel and identity), and no identifier value `head` did not look up.
    func continues(_ head: PreparedUpsert) -> Bool {
        clientID == head.clientID && channel.id == head.channel.id && request.identity == head.request.identity
            && Set(identifiers).isSubset(of: head.identifiers)
    }

    /// Names for everything that makes two jobs of one batch depend on each other: the
    /// person (``Person/key(organization:)``, in the job's organization) and each identifier
    /// value. Jobs sharing a name never go into one set-based round.
    var dependencyKeys: [String] {
        let person = Person(platform: request.platform, channel: .id(channel.id), identity: request.identity)
        var keys = [person.key(organization: UUIDText.string(clientID))]
        for identifier in identifiers {
            keys.append("identifier:" + UUIDText.string(identifier.definitionID) + ":" + identifier.identifierKey)
        }
        return keys
    }
}

/// The rules that decide what one job writes, given what the store found (docs/rules.md sections
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
        _ job: PreparedUpsert, found: Lookup, newID: () -> UUID = UUIDText.random
    ) throws -> WritePlan {
        let existingCustomer = try existingCustomer(found)
        var contactPhone: String? = nil
        if case .phone(let phone) = job.request.identity { contactPhone = phone.e164 }
        if existingCustomer == nil, found.contact != nil { throw Vanished() }
        let (customer, customerWrite) = planCustomer(
            job, existing: existingCustomer, contactPhone: contactPhone, newID: newID)
        let (contact, contactWrite) = planContact(
            job, existing: found.contact, customerID: customer.id, contactPhone: contactPhone, newID: newID)
        return WritePlan(
            clientID: job.clientID, customer: customer, customerWrite: customerWrite, contact: contact,
            contactWrite: contactWrite, identifierChanges: identifierChanges(job, existing: existingCustomer))
    }

    /// The customer the job's person already has: its contact's, else the one owner of its
    /// identifier values, else the candidate the store locked. Identifier values held by another
    /// customer than that one are the job's ``ContactError``.
    static func existingCustomer(_ found: Lookup) throws -> Customer? {
        let existingCustomer: Customer?
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
        return existingCustomer
    }

    /// The customer as it will be: blanks filled, stage and agent set, metadata merged, field
    /// values applied; or a new one.
    static func planCustomer(
        _ job: PreparedUpsert, existing: Customer?, contactPhone: String?, newID: () -> UUID
    ) -> (Customer, WritePlan.CustomerWrite) {
        let request = job.request
        let structured = job.structured
        guard let existing else {
            var customer = Customer(
                id: newID(), name: request.name ?? structured.name, email: request.email ?? structured.email,
                phone: contactPhone ?? structured.phone?.e164, stageID: request.stageID, agentID: request.agentID,
                metaData: MetadataMerge.merge([:], structured.metaData), customFields: [:])
            apply(job.fieldChanges, to: &customer.customFields)
            return (customer, .insert)
        }
        var customer = existing
        if customer.name.isBlank { customer.name = request.name ?? structured.name }
        if customer.email.isBlank { customer.email = request.email ?? structured.email }
        if customer.phone.isBlank { customer.phone = contactPhone ?? structured.phone?.e164 }
        customer.stageID = request.stageID ?? customer.stageID
        customer.agentID = request.agentID ?? customer.agentID
        customer.metaData = MetadataMerge.merge(existing.metaData, structured.metaData)
        apply(job.fieldChanges, to: &customer.customFields)
        return (customer, customer == existing ? .none : .update)
    }

    /// The contact as it will be: the existing one with the job's name and email, or a new one.
    static func planContact(
        _ job: PreparedUpsert, existing: Contact?, customerID: UUID, contactPhone: String?, newID: () -> UUID
    ) -> (Contact, WritePlan.ContactWrite) {
        let request = job.request
        if let existing {
            let contact = Contact(
                id: existing.id, customerID: existing.customerID, platform: existing.platform, phone: existing.phone,
                name: request.name ?? existing.name, email: request.email ?? existing.email,
                externalUserID: existing.externalUserID, channelID: existing.channelID, createdAt: existing.createdAt)
            return (contact, contact.name != existing.name || contact.email != existing.email ? .update : .none)
        }
        var externalUserID: String? = nil
        if case .externalUser(let id) = request.identity { externalUserID = id }
        let contact = Contact(
            id: newID(), customerID: customerID, platform: request.platform.rawValue, phone: contactPhone,
            name: request.name, email: request.email, externalUserID: externalUserID, channelID: job.channel.id,
            createdAt: nil)
        return (contact, .insert)
    }

    /// Identifier values whose key changed: the old one is released, the new one claimed.
    static func identifierChanges(_ job: PreparedUpsert, existing: Customer?) -> [IdentifierChange] {
        var changes: [IdentifierChange] = []
        for change in job.fieldChanges where change.definition.isIdentifier {
            let field = UUIDText.string(change.definition.id)
            let old = existing?.customFields[field].flatMap(change.definition.identifierKey)
            let new = change.value.flatMap(change.definition.identifierKey)
            if old != new {
                changes.append(.init(definitionID: change.definition.id, oldKey: old, newKey: new))
            }
        }
        return changes
    }

    /// Sets or removes (an empty string) each changed value, keyed by definition id.
    static func apply(_ changes: [FieldChange], to values: inout [String: String]) {
        for change in changes {
            values[UUIDText.string(change.definition.id)] = change.value
        }
    }

    /// The job's result (docs/contract.md section 5), once the plan is written; `createdAt` is the
    /// contact's, from the store when it did not know it yet.
    static func result(_ plan: WritePlan, createdAt: Date) -> JSONValue {
        let contact = plan.contact
        return .object([
            "id": .string(UUIDText.string(contact.id)),
            "name": contact.name.map(JSONValue.string) ?? .null,
            "phone": contact.phone.map(JSONValue.string) ?? .null,
            "email": contact.email.map(JSONValue.string) ?? .null,
            "platform": .string(contact.platform),
            "client_id": .string(UUIDText.string(plan.clientID)),
            "ai_customer_id": .string(UUIDText.string(plan.customer.id)),
            "created_at": .string(TimestampText.format(createdAt)),
            "default_stage_id": plan.customer.stageID.map { .string(UUIDText.string($0)) } ?? .null,
            "created": .bool(plan.contactWrite == .insert),
        ])
    }

    /// Splits pending jobs (in batch order) into the next set-based round and the rest. The
    /// round is a prefix of the pending jobs in which no two depend on each other: it ends at
    /// the first job that shares a dependency key with an earlier one, unless that job
    /// `chains` after the round job holding all its keys: then it rides along as a follower,
    /// planned in memory on top of that job's plan (one person's backlog then costs one lookup
    /// and one write, not a round each). Being a prefix, a round never lets a job overtake an
    /// earlier one that waits: two jobs can meet at a customer without sharing a key (a
    /// webchat visitor and a phone linked by an identifier), and must then keep their order.
    static func nextRound<Item>(
        _ pending: [Item], keys: (Item) -> [String], chains: (Item, Item) -> Bool = { _, _ in false }
    ) -> (round: [(head: Item, followers: [Item])], rest: [Item]) {
        // Each key of the round: the entry that holds it.
        var owner: [String: Int] = [:]
        var round: [(head: Item, followers: [Item])] = []
        for (position, item) in pending.enumerated() {
            let itemKeys = keys(item)
            let owners = Set(itemKeys.compactMap { owner[$0] })
            if owners.isEmpty {
                round.append((item, []))
                for key in itemKeys { owner[key] = round.count - 1 }
            } else if owners.count == 1, let entry = owners.first, itemKeys.allSatisfy({ owner[$0] == entry }),
                chains(round[entry].head, item)
            {
                round[entry].followers.append(item)
            } else {
                return (round, Array(pending[position...]))
            }
        }
        return (round, [])
    }

    /// What a chain of jobs of one contact sees as it is planned, job after job, in memory:
    /// the contact and customer as the earlier plans of the chain left them (as a fresh lookup
    /// after their writes would find them), and the owners of identifier values the head found.
    ///
    /// The owners need no updating: a follower names only identifier values its head named.
    /// Until a plan of the chain succeeds they are what the store holds; once one did, each of
    /// them belongs to the chain's customer or, released since, to nobody, and either way a
    /// follower meets no conflict over it, as a fresh lookup would confirm.
    struct ChainState {
        var contact: Contact?
        var customer: Customer?
        let owners: [(customerID: UUID, key: String)]
        let ownerKeys: [String: IdentifierValue]

        /// The state the chain's head found in the store.
        init(found: Lookup, head: PreparedUpsert) {
            contact = found.contact
            customer = found.customer
            owners = found.owners
            var keys: [String: IdentifierValue] = [:]
            for change in head.fieldChanges {
                guard let value = change.value, let identifier = change.definition.identifierKey(value) else { continue }
                keys[change.definition.key] = .init(definitionID: change.definition.id, identifierKey: identifier)
            }
            ownerKeys = keys
        }

        /// What a follower's lookup would find now.
        func lookup(for job: PreparedUpsert) -> Lookup {
            let named = Set(job.identifiers)
            let owned = owners.filter { owner in ownerKeys[owner.key].map(named.contains) ?? false }
            return Lookup(contact: contact, owners: owned, customer: customer)
        }

        /// The state after `plan` is written.
        mutating func apply(_ plan: WritePlan) {
            contact = plan.contact
            customer = plan.customer
        }
    }

    /// One plan that writes what a chain's plans (in order) would write one after another:
    /// the last state of the contact and customer, inserted when one of them was inserted,
    /// updated when it differs from what the store held, and the net change of each
    /// identifier value. Nil when nothing is left to write.
    static func merge(_ plans: [WritePlan], found: Lookup) -> WritePlan? {
        guard var merged = plans.last else { return nil }
        guard plans.count > 1 else { return merged }
        if plans.contains(where: { $0.customerWrite == .insert }) {
            merged.customerWrite = .insert
        } else {
            let stored = found.customer?.id == merged.customer.id ? found.customer : nil
            merged.customerWrite = stored == merged.customer ? .none : .update
        }
        if plans.contains(where: { $0.contactWrite == .insert }) {
            merged.contactWrite = .insert
        } else if let stored = found.contact, stored.id == merged.contact.id,
            stored.name == merged.contact.name, stored.email == merged.contact.email
        {
            merged.contactWrite = .none
        } else {
            merged.contactWrite = .update
        }
        var first: [UUID: String?] = [:]
        var last: [UUID: String?] = [:]
        var order: [UUID] = []
        for change in plans.flatMap(\.identifierChanges) {
            if first[change.definitionID] == nil {
                first[change.definitionID] = .some(change.oldKey)
                order.append(change.definitionID)
            }
            last[change.definitionID] = .some(change.newKey)
        }
        merged.identifierChanges = order.compactMap { id in
            let old = first[id] ?? nil
            let new = last[id] ?? nil
            return old == new ? nil : IdentifierChange(definitionID: id, oldKey: old, newKey: new)
        }
        return merged
    }
}

extension Optional where Wrapped == String {
    /// Nil or only white space.
    var isBlank: Bool { self?.trimmingSpaces.isEmpty ?? true }
}
