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
/// Every ``ContactError`` is found before the job's one write statement, so it fails the job
/// (400/401, never retried) with nothing written, and the worker can skip the per-job
/// savepoint; a lost race with another job (a unique
/// violation on the identity or identifier indexes) is re-run at once by the queue, and the
/// re-run then finds the winner's rows.
public struct ContactUpsertHandler: JobHandler {
    public let kind = "contact.upsert"
    /// Every ``ContactError`` is thrown before the job's one write statement.
    public let failsBeforeWriting = true
    let structurer: any MetadataStructurer
    let cache = ContactCache()

    public init(structurer: any MetadataStructurer = RuleBasedStructurer()) {
        self.structurer = structurer
    }

    /// Refreshes the settings cache when an organization's settings changed.
    public func prepareBatch(_ jobs: [Job], on connection: isolated PostgresConnection) async throws {
        cache.observe(version: try ContactStore.configVersion(on: connection))
    }

    public func handle(_ job: Job, on connection: isolated PostgresConnection, logger: Logger) async throws -> JSONValue
    {
        // 1. The rules without a database.
        let draft = ContactRequest.check(job.payload)
        var errors = draft.errors
        guard let platform = draft.platform, let reference = draft.channel else { throw errors }

        // 2. The client and the channel.
        if let clientID = job.clientID {
            let active = try cache.clientActive(clientID) { () throws(PostgresError) in
                try ContactStore.clientIsActive(clientID, on: connection)
            }
            guard active == true else {
                errors.unauthorized = "the job's client does not exist or is inactive"
                throw errors
            }
        }
        let channelKey: String
        switch reference {
        case .id(let id): channelKey = "\(platform.rawValue)|id|\(id)|\(job.clientID?.uuidString ?? "")"
        case .phone(let phone): channelKey = "\(platform.rawValue)|phone|\(phone.matchKey)|\(job.clientID?.uuidString ?? "")"
        }
        let channels = try cache.channels(channelKey) { () throws(PostgresError) in
            try ContactStore.channels(reference, platform: platform, clientID: job.clientID, on: connection)
        }
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

        // 3. Stage, agent and custom fields, against the client's own settings.
        let settings = try cache.settings(clientID) { () throws(PostgresError) in
            try ContactStore.clientSettings(clientID, on: connection)
        }
        if let stage = draft.stageID, !settings.stages.contains(stage) {
            errors.invalidFields.append(.init("stageId", "no such pipeline stage for this client"))
        }
        if let agent = draft.agentID, !settings.activeAgents.contains(agent) {
            errors.invalidFields.append(.init("agentId", "no such active team member for this client"))
        }
        var changes: [String: ContactStore.FieldChange] = [:]
        for (key, input) in draft.customFieldValues {
            guard let definition = settings.definitions[key] else {
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
        let structured = try await structurer.structure(request.metaData ?? [:], definitions: settings.definitions)
        for (key, input) in structured.customFieldValues where changes[key] == nil {
            guard let definition = settings.definitions[key], case .success(let canonical) = definition.canonicalize(input)
            else { continue }
            changes[key] = .init(definition: definition, value: canonical)
        }
        let fieldChanges = changes.values.sorted { $0.definition.key < $1.definition.key }

        // 5. Find the contact and choose the customer. The worker holds this person's lock
        //    (see `lockKeys(for:)`); the unique indexes settle any race it does not cover.
        let identifierValues = fieldChanges.compactMap { change -> (definitionID: UUID, identifierKey: String)? in
            guard let value = change.value, let key = change.definition.identifierKey(value) else { return nil }
            return (change.definition.id, key)
        }
        let found = try ContactStore.lookup(
            clientID: clientID, channelID: channel.id, identity: request.identity, identifiers: identifierValues,
            on: connection)
        let existingCustomer: ContactStore.Customer?
        if let contact = found.contact {
            existingCustomer = found.customer?.id == contact.customerID ? found.customer : nil
        } else {
            if Set(found.owners.map(\.customerID)).count > 1 {
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
                errors.identifierConflicts = conflicts.map {
                    .init(key: $0.key, reason: "this value already belongs to a different customer")
                }
                throw errors
            }
        }

        // 6. Plan and apply the changes in one statement; nothing unchanged is rewritten.
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
            customerWrite = customer == existing ? .none : .update
        } else if let contact = found.contact {
            // The contact's customer vanished between the lookup and the lock: a lost race.
            throw PostgresError(
                code: .server, sqlState: .foreignKeyViolation, message: "customer \(contact.customerID) is gone")
        } else {
            customer = ContactStore.Customer(
                id: UUID(), name: request.name ?? structured.name, email: request.email ?? structured.email,
                phone: contactPhone ?? structured.phone?.e164, stageID: request.stageID, agentID: request.agentID,
                metaData: MetadataMerge.merge([:], structured.metaData))
            customerWrite = .insert
        }
        let contactWrite: ContactStore.WritePlan.ContactWrite
        let contactName: String?
        let contactEmail: String?
        if let existing = found.contact {
            contactName = request.name ?? existing.name
            contactEmail = request.email ?? existing.email
            contactWrite = contactName != existing.name || contactEmail != existing.email ? .update : .none
        } else {
            contactName = request.name
            contactEmail = request.email
            contactWrite = .insert(channelID: channel.id, platform: platform, identity: request.identity)
        }
        let plan = ContactStore.WritePlan(
            clientID: clientID, customer: customer, customerWrite: customerWrite,
            contactID: found.contact?.id ?? UUID(), contactName: contactName, contactEmail: contactEmail,
            contactWrite: contactWrite, fieldChanges: fieldChanges)
        let written = try ContactStore.write(plan, on: connection)
        guard let contact = written ?? found.contact else {
            throw PostgresError(code: .protocolViolation, message: "the contact was neither found nor written")
        }

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
            "created": .bool(found.contact == nil),
        ])
    }

    /// The locks a job takes (the worker takes them for a whole batch up front, in one order):
    /// one per person, by phone match key on the WhatsApp platforms (so the same person
    /// writing to two of the client's numbers resolves to one customer) or by channel and
    /// external user id on webchat. (Identifier values are not locked: which fields are
    /// identifiers depends on the client, and the unique index settles their races.)
    public func lockKeys(for job: Job) -> [String] {
        ContactRequest.identityLockKey(job.payload).map { [$0] } ?? []
    }
}

extension Optional where Wrapped == String {
    /// Nil or only white space.
    var isBlank: Bool { self?.trimmingSpaces.isEmpty ?? true }
}
