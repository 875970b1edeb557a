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

    /// What a job's client-level checks need: whether the stage and agent belong to the
    /// client, and the client's custom field definitions by key.
    public struct ClientContext: Sendable {
        public let stageExists: Bool
        public let agentIsActive: Bool
        public let definitions: [String: CustomFieldDefinition]
    }

    public static func clientContext(
        clientID: UUID, stageID: UUID?, agentID: UUID?, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> ClientContext {
        let row = try connection.query(
            """
            SELECT EXISTS (SELECT 1 FROM crm.stages WHERE id = $2 AND client_id = $1) AS stage_exists,
                   EXISTS (SELECT 1 FROM crm.team_members WHERE id = $3 AND client_id = $1 AND active) AS agent_active
            """, [clientID, stageID, agentID])[0]
        var definitions: [String: CustomFieldDefinition] = [:]
        for definition in try connection.query(
            """
            SELECT id, key, field_type, coalesce(options, '[]'::jsonb) AS options, is_identifier
            FROM crm.custom_field_definitions WHERE client_id = $1
            """, [clientID])
        {
            let key = try definition.decode(String.self, "key")
            let typeName = try definition.decode(String.self, "field_type")
            guard let type = CustomFieldType(rawValue: typeName) else { continue }
            let options = try definition.decode(JSONValue.self, "options").arrayValue?.compactMap(\.stringValue) ?? []
            definitions[key] = CustomFieldDefinition(
                id: try definition.decode(UUID.self, "id"), key: key, type: type, options: options,
                isIdentifier: try definition.decode(Bool.self, "is_identifier"))
        }
        return ClientContext(
            stageExists: try row.decode(Bool.self, "stage_exists"),
            agentIsActive: try row.decode(Bool.self, "agent_active"), definitions: definitions)
    }

    /// Serializes, until the transaction ends, every job for one identity key.
    public static func lockIdentity(_ key: String, on connection: isolated PostgresConnection) throws(PostgresError) {
        try connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [key])
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

    static let contactColumns = "id, customer_id, platform, phone, name, email, created_at"

    static func contact(_ row: PostgresRow) throws(PostgresError) -> Contact {
        Contact(
            id: try row.decode(UUID.self, "id"), customerID: try row.decode(UUID.self, "customer_id"),
            platform: try row.decode(String.self, "platform"), phone: try row.decode(String?.self, "phone"),
            name: try row.decode(String?.self, "name"), email: try row.decode(String?.self, "email"),
            createdAt: try row.decode(Date.self, "created_at"))
    }

    /// The contact with this identity on this channel, if any.
    public static func findContact(
        clientID: UUID, channelID: UUID, identity: ContactIdentity, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Contact? {
        let rows: PostgresRows
        switch identity {
        case .phone(let phone):
            rows = try connection.query(
                "SELECT \(contactColumns) FROM crm.contacts WHERE client_id = $1 AND channel_id = $2 AND phone_key = $3",
                [clientID, channelID, phone.matchKey])
        case .externalUser(let id):
            rows = try connection.query(
                """
                SELECT \(contactColumns) FROM crm.contacts
                WHERE client_id = $1 AND channel_id = $2 AND external_user_id = $3
                """, [clientID, channelID, id])
        }
        return try rows.first.map { row throws(PostgresError) in try contact(row) }
    }

    /// The customers holding any of these identifier values, with the keys they hold.
    public static func identifierOwners(
        clientID: UUID, values: [(definitionID: UUID, identifierKey: String)], on connection: isolated PostgresConnection
    ) throws(PostgresError) -> [(customerID: UUID, key: String)] {
        guard !values.isEmpty else { return [] }
        return try connection.query(
            """
            SELECT v.customer_id, d.key
            FROM crm.customer_custom_fields v
            JOIN crm.custom_field_definitions d ON d.id = v.definition_id AND d.client_id = v.client_id
            JOIN unnest($2::uuid[], $3::text[]) AS wanted(definition_id, identifier_key)
              ON wanted.definition_id = v.definition_id AND wanted.identifier_key = v.identifier_key
            WHERE v.client_id = $1
            ORDER BY d.key
            """, [clientID, values.map(\.definitionID), values.map(\.identifierKey)]
        ).map { row throws(PostgresError) in (try row.decode(UUID.self, "customer_id"), try row.decode(String.self, "key")) }
    }

    /// The client's oldest customer with this phone match key.
    public static func oldestCustomer(clientID: UUID, phone: PhoneNumber, on connection: isolated PostgresConnection)
        throws(PostgresError) -> UUID?
    {
        try connection.query(
            """
            SELECT id FROM crm.customers WHERE client_id = $1 AND phone_key = $2 ORDER BY created_at, id LIMIT 1
            """, [clientID, phone.matchKey]
        ).first?.decode(UUID.self, "id")
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

    /// Reads a customer of the client and locks its row for the rest of the transaction, so
    /// that two jobs never merge metadata into it at the same time.
    public static func lockCustomer(_ id: UUID, clientID: UUID, on connection: isolated PostgresConnection)
        throws(PostgresError) -> Customer?
    {
        try connection.query(
            """
            SELECT id, name, email, phone, stage_id, agent_id, meta_data FROM crm.customers
            WHERE id = $1 AND client_id = $2 FOR UPDATE
            """, [id, clientID]
        ).first.map { row throws(PostgresError) in
            Customer(
                id: try row.decode(UUID.self, "id"), name: try row.decode(String?.self, "name"),
                email: try row.decode(String?.self, "email"), phone: try row.decode(String?.self, "phone"),
                stageID: try row.decode(UUID?.self, "stage_id"), agentID: try row.decode(UUID?.self, "agent_id"),
                metaData: try row.decode(JSONValue.self, "meta_data").objectValue ?? [:])
        }
    }

    /// Inserts a customer and returns its id.
    public static func createCustomer(_ customer: Customer, clientID: UUID, on connection: isolated PostgresConnection)
        throws(PostgresError) -> UUID
    {
        try connection.query(
            """
            INSERT INTO crm.customers (id, client_id, name, email, phone, stage_id, agent_id, meta_data)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) RETURNING id
            """,
            [customer.id, clientID, customer.name, customer.email, customer.phone, customer.stageID, customer.agentID,
             JSONValue.object(customer.metaData)])[0].decode(UUID.self, "id")
    }

    /// Writes a customer's changed columns (the caller only calls it when something changed).
    public static func updateCustomer(_ customer: Customer, clientID: UUID, on connection: isolated PostgresConnection)
        throws(PostgresError)
    {
        try connection.execute(
            """
            UPDATE crm.customers
            SET name = $3, email = $4, phone = $5, stage_id = $6, agent_id = $7, meta_data = $8::jsonb, updated_at = now()
            WHERE id = $1 AND client_id = $2
            """,
            [customer.id, clientID, customer.name, customer.email, customer.phone, customer.stageID, customer.agentID,
             JSONValue.object(customer.metaData)])
    }

    /// Inserts a contact; the unique identity indexes make a lost race a unique violation.
    public static func createContact(
        clientID: UUID, customerID: UUID, channelID: UUID, platform: Platform, identity: ContactIdentity,
        name: String?, email: String?, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Contact {
        var phone: String? = nil
        var externalUserID: String? = nil
        switch identity {
        case .phone(let number): phone = number.e164
        case .externalUser(let id): externalUserID = id
        }
        return try contact(
            connection.query(
                """
                INSERT INTO crm.contacts (client_id, customer_id, channel_id, platform, phone, external_user_id, name, email)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                RETURNING \(contactColumns)
                """,
                [clientID, customerID, channelID, platform.rawValue, phone, externalUserID, name, email])[0])
    }

    /// Replaces a contact's name and email (the caller only calls it when one changed).
    public static func updateContact(
        _ id: UUID, clientID: UUID, name: String?, email: String?, on connection: isolated PostgresConnection
    ) throws(PostgresError) -> Contact {
        try contact(
            connection.query(
                """
                UPDATE crm.contacts SET name = $3, email = $4, updated_at = now()
                WHERE id = $1 AND client_id = $2 RETURNING \(contactColumns)
                """, [id, clientID, name, email])[0])
    }

    /// One custom field change: a canonical value to set, or nil to remove the value.
    public struct FieldChange: Sendable, Hashable {
        public let definition: CustomFieldDefinition
        public let value: String?
    }

    /// Sets and removes custom field values in two statements; a value equal to the stored
    /// one is not rewritten. An identifier value held by another customer is a unique
    /// violation (`customer_identifier_idx`).
    public static func applyFieldChanges(
        _ changes: [FieldChange], customerID: UUID, clientID: UUID, on connection: isolated PostgresConnection
    ) throws(PostgresError) {
        let sets = changes.filter { $0.value != nil }
        let removals = changes.filter { $0.value == nil }
        if !sets.isEmpty {
            try connection.execute(
                """
                INSERT INTO crm.customer_custom_fields (customer_id, definition_id, client_id, value, identifier_key)
                SELECT $1, d, $2, v, k FROM unnest($3::uuid[], $4::text[], $5::text[]) AS t(d, v, k)
                ON CONFLICT (customer_id, definition_id) DO UPDATE
                SET value = EXCLUDED.value, identifier_key = EXCLUDED.identifier_key, updated_at = now()
                WHERE (customer_custom_fields.value, customer_custom_fields.identifier_key)
                      IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.identifier_key)
                """,
                [customerID, clientID, sets.map(\.definition.id), sets.map { $0.value ?? "" },
                 sets.map { $0.definition.identifierKey($0.value ?? "") }])
        }
        if !removals.isEmpty {
            try connection.execute(
                """
                DELETE FROM crm.customer_custom_fields
                WHERE customer_id = $1 AND client_id = $2 AND definition_id = ANY($3::uuid[])
                """, [customerID, clientID, removals.map(\.definition.id)])
        }
    }
}
