#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import Postgres

/// The contact domain's SQL: small statements, each scoped by the client and parameterized,
/// run on the job's connection inside its transaction. The rules that decide what to run
/// live in ``ContactUpsertHandler`` and the value types; this layer only reads and writes.
public enum ContactStore {
    /// A channel that matched a job's channel reference.
    public struct Channel: Sendable, Hashable {
        public let id: UUID
        public let clientID: UUID
        public let clientActive: Bool
    }

    /// Whether a client exists and is active; nil when it does not exist.
    public static func clientIsActive(_ id: UUID, on connection: isolated PostgresConnection) throws(PostgresError)
        -> Bool?
    {
        try connection.query("SELECT active FROM crm.clients WHERE id = $1", [id]).first?.decode(Bool.self, "active")
    }

    /// The active channels of `platform` that a reference names (by id, or by phone match
    /// key), optionally only those of one client.
    public static func channels(
        _ reference: ChannelReference, platform: Platform, clientID: UUID?, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> [Channel] {
        let rows: PostgresRows
        switch reference {
        case .id(let id):
            rows = try connection.query(
                """
                SELECT ch.id, ch.client_id, cl.active AS client_active
                FROM crm.channels ch JOIN crm.clients cl ON cl.id = ch.client_id
                WHERE ch.id = $1 AND ch.platform = $2 AND ch.active AND ($3::uuid IS NULL OR ch.client_id = $3::uuid)
                """, [id, platform.rawValue, clientID])
        case .phone(let phone):
            rows = try connection.query(
                """
                SELECT ch.id, ch.client_id, cl.active AS client_active
                FROM crm.channels ch JOIN crm.clients cl ON cl.id = ch.client_id
                WHERE ch.phone_key = $1 AND ch.platform = $2 AND ch.active
                  AND ($3::uuid IS NULL OR ch.client_id = $3::uuid)
                """, [phone.matchKey, platform.rawValue, clientID])
        }
        return try rows.map { row throws(PostgresError) in
            Channel(
                id: try row.decode(UUID.self, "id"), clientID: try row.decode(UUID.self, "client_id"),
                clientActive: try row.decode(Bool.self, "client_active"))
        }
    }

    /// The number `crm.config_version` holds now (see ``ContactCache``).
    public static func configVersion(on connection: isolated PostgresConnection) throws(PostgresError) -> Int64 {
        try connection.query("SELECT version FROM crm.config_version WHERE id = 1").first?.decode(Int64.self, "version")
            ?? 0
    }

    /// A client's stages, active agents and custom field definitions, in one round trip.
    static func clientSettings(_ clientID: UUID, on connection: isolated PostgresConnection) throws(PostgresError)
        -> ContactCache.ClientSettings
    {
        let row = try connection.query(
            """
            SELECT (SELECT coalesce(string_agg(id::text, ','), '') FROM crm.stages WHERE client_id = $1) AS stages,
                   (SELECT coalesce(string_agg(id::text, ','), '') FROM crm.team_members
                    WHERE client_id = $1 AND active) AS agents,
                   (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'id', id, 'key', key, 'type', field_type, 'options', coalesce(options, '[]'::jsonb),
                        'identifier', is_identifier)), '[]'::jsonb)
                    FROM crm.custom_field_definitions WHERE client_id = $1) AS definitions
            """, [clientID])[0]
        func ids(_ column: String) throws(PostgresError) -> Set<UUID> {
            Set(try row.decode(String.self, column).split(separator: ",").compactMap { UUID(uuidString: String($0)) })
        }
        var definitions: [String: CustomFieldDefinition] = [:]
        for item in try row.decode(JSONValue.self, "definitions").arrayValue ?? [] {
            guard let key = item["key"]?.stringValue, let id = item["id"]?.stringValue.flatMap(UUID.init(uuidString:)),
                let type = item["type"]?.stringValue.flatMap(CustomFieldType.init(rawValue:))
            else { continue }
            let options = item["options"]?.arrayValue?.compactMap(\.stringValue) ?? []
            definitions[key] = CustomFieldDefinition(
                id: id, key: key, type: type, options: options, isIdentifier: item["identifier"] == .bool(true))
        }
        return ContactCache.ClientSettings(stages: try ids("stages"), activeAgents: try ids("agents"), definitions: definitions)
    }

    /// A contact row.
    public struct Contact: Sendable, Hashable {
        public let id: UUID
        public let customerID: UUID
        public let platform: String
        public let phone: String?
        public let name: String?
        public let email: String?
        public let createdAt: Date
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
    }

    /// What one job finds in the database about its person.
    struct Lookup: Sendable {
        /// The contact with this identity on this channel.
        var contact: Contact?
        /// The customers holding the job's identifier values, with the keys they hold.
        var owners: [(customerID: UUID, key: String)]
        /// The candidate customer (the contact's; else the one identifier owner; else, for a
        /// phone, the client's oldest customer with that match key), locked `FOR UPDATE`.
        var customer: Customer?
    }

    /// Finds the contact, the identifier owners and the candidate customer in one statement,
    /// locking the customer's row until the transaction ends.
    static func lookup(
        clientID: UUID, channelID: UUID, identity: ContactIdentity,
        identifiers: [(definitionID: UUID, identifierKey: String)], on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Lookup {
        let identityCondition: String
        let identityValue: String
        var phoneKey: String? = nil
        switch identity {
        case .phone(let phone):
            identityCondition = "phone_key = $3"
            identityValue = phone.matchKey
            phoneKey = phone.matchKey
        case .externalUser(let id):
            identityCondition = "external_user_id = $3"
            identityValue = id
        }
        let row = try connection.query(
            """
            WITH contact AS (
                SELECT id, customer_id, platform, phone, name, email, created_at FROM crm.contacts
                WHERE client_id = $1 AND channel_id = $2 AND \(identityCondition)
            ), owners AS (
                SELECT v.customer_id, d.key
                FROM crm.customer_custom_fields v
                JOIN crm.custom_field_definitions d ON d.id = v.definition_id AND d.client_id = v.client_id
                JOIN unnest($4::uuid[], $5::text[]) AS wanted(definition_id, identifier_key)
                  ON wanted.definition_id = v.definition_id AND wanted.identifier_key = v.identifier_key
                WHERE v.client_id = $1
            ), candidate AS (
                SELECT coalesce(
                    (SELECT customer_id FROM contact),
                    (SELECT min(customer_id::text)::uuid FROM owners HAVING count(DISTINCT customer_id) = 1),
                    (SELECT id FROM crm.customers WHERE client_id = $1 AND $6::text IS NOT NULL AND phone_key = $6
                     ORDER BY created_at, id LIMIT 1)) AS id
            ), customer AS (
                SELECT c.id, c.name, c.email, c.phone, c.stage_id, c.agent_id, c.meta_data
                FROM crm.customers c JOIN candidate ON c.id = candidate.id
                WHERE c.client_id = $1
                FOR UPDATE OF c
            )
            SELECT (SELECT row_to_json(contact) FROM contact) AS contact,
                   (SELECT coalesce(json_agg(owners ORDER BY key), '[]') FROM owners) AS owners,
                   (SELECT row_to_json(customer) FROM customer) AS customer
            """,
            [clientID, channelID, identityValue, identifiers.map(\.definitionID), identifiers.map(\.identifierKey), phoneKey])[0]
        var lookup = Lookup(contact: nil, owners: [], customer: nil)
        if let contact = try row.decode(JSONValue?.self, "contact") {
            lookup.contact = try Self.contact(json: contact)
        }
        for owner in try row.decode(JSONValue.self, "owners").arrayValue ?? [] {
            guard let id = owner["customer_id"]?.stringValue.flatMap(UUID.init(uuidString:)),
                let key = owner["key"]?.stringValue
            else { continue }
            lookup.owners.append((id, key))
        }
        if let customer = try row.decode(JSONValue?.self, "customer") {
            guard let id = customer["id"]?.stringValue.flatMap(UUID.init(uuidString:)) else {
                throw PostgresError(code: .decoding, message: "customer without id")
            }
            lookup.customer = Customer(
                id: id, name: customer["name"]?.stringValue, email: customer["email"]?.stringValue,
                phone: customer["phone"]?.stringValue,
                stageID: customer["stage_id"]?.stringValue.flatMap(UUID.init(uuidString:)),
                agentID: customer["agent_id"]?.stringValue.flatMap(UUID.init(uuidString:)),
                metaData: customer["meta_data"]?.objectValue ?? [:])
        }
        return lookup
    }

    static func contact(json: JSONValue) throws(PostgresError) -> Contact {
        guard let id = json["id"]?.stringValue.flatMap(UUID.init(uuidString:)),
            let customerID = json["customer_id"]?.stringValue.flatMap(UUID.init(uuidString:)),
            let platform = json["platform"]?.stringValue,
            let createdAt = json["created_at"]?.stringValue.flatMap(PostgresTimestamp.parse)
        else { throw PostgresError(code: .decoding, message: "malformed contact row") }
        return Contact(
            id: id, customerID: customerID, platform: platform, phone: json["phone"]?.stringValue,
            name: json["name"]?.stringValue, email: json["email"]?.stringValue, createdAt: createdAt)
    }

    /// One custom field change: a canonical value to set, or nil to remove the value.
    public struct FieldChange: Sendable, Hashable {
        public let definition: CustomFieldDefinition
        public let value: String?
    }

    /// Everything one job writes.
    struct WritePlan: Sendable {
        enum CustomerWrite { case none, insert, update }
        enum ContactWrite { case none, insert(channelID: UUID, platform: Platform, identity: ContactIdentity), update }
        var clientID: UUID
        var customer: Customer
        var customerWrite: CustomerWrite
        var contactID: UUID
        var contactName: String?
        var contactEmail: String?
        var contactWrite: ContactWrite
        var fieldChanges: [FieldChange]
    }

    /// Applies a plan in one statement (data-modifying CTEs: the customer, the contact, the
    /// custom field values set and removed; a value equal to the stored one is not
    /// rewritten). Returns the contact row when it was inserted or updated.
    static func write(_ plan: WritePlan, on connection: isolated PostgresConnection) throws(PostgresError) -> Contact? {
        var phone: String? = nil
        var externalUserID: String? = nil
        var channelID: UUID? = nil
        var platform: String? = nil
        var insertContact = false
        var updateContact = false
        switch plan.contactWrite {
        case .none: break
        case .insert(let channel, let p, let identity):
            insertContact = true
            channelID = channel
            platform = p.rawValue
            switch identity {
            case .phone(let number): phone = number.e164
            case .externalUser(let id): externalUserID = id
            }
        case .update: updateContact = true
        }
        let sets = plan.fieldChanges.filter { $0.value != nil }
        let removals = plan.fieldChanges.filter { $0.value == nil }
        let c = plan.customer
        let rows = try connection.query(
            """
            WITH ins_customer AS (
                INSERT INTO crm.customers (id, client_id, name, email, phone, stage_id, agent_id, meta_data)
                SELECT $1, $2, $3, $4, $5, $6, $7, $8::jsonb WHERE $9::boolean
                RETURNING id
            ), upd_customer AS (
                UPDATE crm.customers
                SET name = $3, email = $4, phone = $5, stage_id = $6, agent_id = $7, meta_data = $8::jsonb, updated_at = now()
                WHERE id = $1 AND client_id = $2 AND $10::boolean
                RETURNING id
            ), ins_contact AS (
                INSERT INTO crm.contacts (id, client_id, customer_id, channel_id, platform, phone, external_user_id, name, email)
                SELECT $11, $2, $1, $12, $13, $14, $15, $16, $17 WHERE $18::boolean
                RETURNING id, customer_id, platform, phone, name, email, created_at
            ), upd_contact AS (
                UPDATE crm.contacts SET name = $16, email = $17, updated_at = now()
                WHERE id = $11 AND client_id = $2 AND $19::boolean
                RETURNING id, customer_id, platform, phone, name, email, created_at
            ), set_fields AS (
                INSERT INTO crm.customer_custom_fields (customer_id, definition_id, client_id, value, identifier_key)
                SELECT $1, d, $2, v, k FROM unnest($20::uuid[], $21::text[], $22::text[]) AS t(d, v, k)
                ON CONFLICT (customer_id, definition_id) DO UPDATE
                SET value = EXCLUDED.value, identifier_key = EXCLUDED.identifier_key, updated_at = now()
                WHERE (customer_custom_fields.value, customer_custom_fields.identifier_key)
                      IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.identifier_key)
                RETURNING 1
            ), del_fields AS (
                DELETE FROM crm.customer_custom_fields
                WHERE customer_id = $1 AND client_id = $2 AND definition_id = ANY($23::uuid[])
                RETURNING 1
            )
            SELECT (SELECT row_to_json(x) FROM (SELECT * FROM ins_contact UNION ALL SELECT * FROM upd_contact) x) AS contact,
                   (SELECT count(*) FROM ins_customer) + (SELECT count(*) FROM upd_customer)
                   + (SELECT count(*) FROM set_fields) + (SELECT count(*) FROM del_fields) AS writes
            """,
            [c.id, plan.clientID, c.name, c.email, c.phone, c.stageID, c.agentID, JSONValue.object(c.metaData),
             plan.customerWrite == .insert, plan.customerWrite == .update,
             plan.contactID, channelID, platform, phone, externalUserID, plan.contactName, plan.contactEmail,
             insertContact, updateContact,
             sets.map(\.definition.id), sets.map { $0.value ?? "" }, sets.map { $0.definition.identifierKey($0.value ?? "") },
             removals.map(\.definition.id)])
        guard let json = try rows.first?.decode(JSONValue?.self, "contact") else { return nil }
        return try contact(json: json)
    }
}
