#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import JobQueue
import Logging
import Postgres

/// The `contact.upsert` job: create or find a contact, and update its customer
/// (DOMAIN.md, rule by rule).
///
/// It runs inside the job's savepoint: a ``ContactError`` rolls back everything the job
/// wrote and fails it (400/401, never retried); a lost race with another job (a unique
/// violation on the identity or identifier indexes) is re-run at once by the queue, and the
/// re-run then finds the winner's rows.
public struct ContactUpsertHandler: JobHandler {
    public let kind = "contact.upsert"
    let structurer: any MetadataStructurer

    public init(structurer: any MetadataStructurer = RuleBasedStructurer()) {
        self.structurer = structurer
    }

    public func handle(_ job: Job, on connection: isolated PostgresConnection, logger: Logger) async throws -> JSONValue
    {
        // 1. The rules without a database.
        let draft = ContactRequest.check(job.payload)
        var errors = draft.errors
        guard let platform = draft.platform, let reference = draft.channel else { throw errors }

        // 2. The client and the channel.
        if let clientID = job.clientID {
            guard try ContactStore.clientIsActive(clientID, on: connection) == true else {
                errors.unauthorized = "the job's client does not exist or is inactive"
                throw errors
            }
        }
        let channels = try ContactStore.channels(reference, platform: platform, clientID: job.clientID, on: connection)
        guard channels.count == 1, let channel = channels.first else {
            errors.unknownChannel =
                channels.isEmpty
                ? "no active \(platform.rawValue) channel with that identity"
                : "several active \(platform.rawValue) channels match; name the channel by its UUID"
            throw errors
        }
        guard channel.clientActive else {
            errors.unauthorized = "the channel's client is inactive"
            throw errors
        }
        let clientID = channel.clientID

        // 3. Stage, agent and custom fields, against the client's own rows.
        let context = try ContactStore.clientContext(
            clientID: clientID, stageID: draft.stageID, agentID: draft.agentID, on: connection)
        if draft.stageID != nil, !context.stageExists {
            errors.invalidFields.append(.init("stageId", "no such pipeline stage for this client"))
        }
        if draft.agentID != nil, !context.agentIsActive {
            errors.invalidFields.append(.init("agentId", "no such active team member for this client"))
        }
        var changes: [String: ContactStore.FieldChange] = [:]
        for (key, input) in draft.customFieldValues {
            guard let definition = context.definitions[key] else {
                errors.invalidCustomFieldKeys.append(key)
                continue
            }
            if input.isEmptyString {
                changes[key] = .init(definition: definition, value: nil)
                continue
            }
            switch definition.canonicalize(input) {
            case .success(let canonical): changes[key] = .init(definition: definition, value: canonical)
            case .failure(let problem): errors.invalidCustomFieldValues.append(.init(key, problem.description))
            }
        }
        guard errors.isEmpty, let request = draft.request else { throw errors }

        // 4. The metadata structurer; explicit custom field values win over derived ones.
        let structured = try await structurer.structure(request.metaData ?? [:], definitions: context.definitions)
        for (key, input) in structured.customFieldValues where changes[key] == nil {
            guard let definition = context.definitions[key], case .success(let canonical) = definition.canonicalize(input)
            else { continue }
            changes[key] = .init(definition: definition, value: canonical)
        }
        let fieldChanges = changes.values.sorted { $0.definition.key < $1.definition.key }

        // 5. Find or create, serialized per identity.
        for key in Self.lockKeys(request) { try ContactStore.lockIdentity(key, on: connection) }
        let identifierValues = fieldChanges.compactMap { change -> (definitionID: UUID, identifierKey: String)? in
            guard let value = change.value, let key = change.definition.identifierKey(value) else { return nil }
            return (change.definition.id, key)
        }
        let owners = try ContactStore.identifierOwners(clientID: clientID, values: identifierValues, on: connection)
        var contact = try ContactStore.findContact(
            clientID: clientID, channelID: channel.id, identity: request.identity, on: connection)
        let customerID: UUID?
        if let contact {
            customerID = contact.customerID
        } else {
            let ownerIDs = Set(owners.map(\.customerID))
            if ownerIDs.count > 1 {
                errors.identifierConflicts = owners.map {
                    .init(key: $0.key, reason: "identifier values of this job belong to different customers")
                }
                throw errors
            } else if let owner = ownerIDs.first {
                customerID = owner
            } else if case .phone(let phone) = request.identity {
                customerID = try ContactStore.oldestCustomer(clientID: clientID, phone: phone, on: connection)
            } else {
                customerID = nil
            }
        }
        if let customerID {
            let conflicts = owners.filter { $0.customerID != customerID }
            if !conflicts.isEmpty {
                errors.identifierConflicts = conflicts.map {
                    .init(key: $0.key, reason: "this value already belongs to a different customer")
                }
                throw errors
            }
        }

        // 6. Apply the changes; nothing unchanged is rewritten.
        var contactPhone: String? = nil
        if case .phone(let phone) = request.identity { contactPhone = phone.e164 }
        let customer: ContactStore.Customer
        if let customerID, let existing = try ContactStore.lockCustomer(customerID, clientID: clientID, on: connection) {
            var updated = existing
            if updated.name.isBlank { updated.name = request.name ?? structured.name }
            if updated.email.isBlank { updated.email = request.email ?? structured.email }
            if updated.phone.isBlank { updated.phone = contactPhone ?? structured.phone?.e164 }
            updated.stageID = request.stageID ?? updated.stageID
            updated.agentID = request.agentID ?? updated.agentID
            updated.metaData = MetadataMerge.merge(existing.metaData, structured.metaData)
            if updated != existing { try ContactStore.updateCustomer(updated, clientID: clientID, on: connection) }
            customer = updated
        } else {
            customer = ContactStore.Customer(
                id: UUID(), name: request.name ?? structured.name, email: request.email ?? structured.email,
                phone: contactPhone ?? structured.phone?.e164, stageID: request.stageID, agentID: request.agentID,
                metaData: MetadataMerge.merge([:], structured.metaData))
            _ = try ContactStore.createCustomer(customer, clientID: clientID, on: connection)
        }
        try ContactStore.applyFieldChanges(fieldChanges, customerID: customer.id, clientID: clientID, on: connection)

        let created = contact == nil
        if let existing = contact {
            let name = request.name ?? existing.name
            let email = request.email ?? existing.email
            if name != existing.name || email != existing.email {
                contact = try ContactStore.updateContact(
                    existing.id, clientID: clientID, name: name, email: email, on: connection)
            }
        } else {
            contact = try ContactStore.createContact(
                clientID: clientID, customerID: customer.id, channelID: channel.id, platform: platform,
                identity: request.identity, name: request.name, email: request.email, on: connection)
        }
        guard let contact else { throw ContactError() }

        // 7. The result (CONTRACT.md section 5).
        return .object([
            "id": .string(contact.id.uuidString.lowercased()),
            "name": contact.name.map(JSONValue.string) ?? .null,
            "phone": contact.phone.map(JSONValue.string) ?? .null,
            "email": contact.email.map(JSONValue.string) ?? .null,
            "platform": .string(contact.platform),
            "client_id": .string(clientID.uuidString.lowercased()),
            "ai_customer_id": .string(customer.id.uuidString.lowercased()),
            "created_at": .string(PostgresTimestamp.format(contact.createdAt)),
            "default_stage_id": customer.stageID.map { .string($0.uuidString.lowercased()) } ?? .null,
            "created": .bool(created),
        ])
    }

    /// The locks a job takes (the worker takes them for a whole batch up front, in one order):
    /// one per person, by phone match key on the WhatsApp platforms (so the same person
    /// writing to two of the client's numbers resolves to one customer) or by channel and
    /// external user id on webchat. (Identifier values are not locked: which fields are
    /// identifiers depends on the client, and the unique index settles their races.)
    public func lockKeys(for job: Job) -> [String] {
        guard case .success(let request) = ContactRequest.validate(job.payload) else { return [] }
        return Self.lockKeys(request)
    }

    static func lockKeys(_ request: ContactRequest) -> [String] {
        var keys: [String] = []
        switch request.identity {
        case .phone(let phone): keys.append("crm.phone:\(phone.matchKey)")
        case .externalUser(let id):
            if case .id(let channel) = request.channel { keys.append("crm.webchat:\(channel.uuidString.lowercased()):\(id)") }
        }
        return keys
    }
}

extension Optional where Wrapped == String {
    /// Nil or only white space.
    var isBlank: Bool { self?.trimmingSpaces.isEmpty ?? true }
}
