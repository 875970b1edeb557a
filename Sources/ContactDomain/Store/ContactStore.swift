#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import JSON
import TextForms
import Postgres
import JobQueue

/// The contact domain's SQL: small statements, each scoped by the client and parameterized,
/// run on the job's connection inside its transaction. The rules that decide what to run
/// live in ``ContactUpsertHandler`` and the value types; this layer only reads and writes.
public enum ContactStore {
    /// Whether a client exists and is active; nil when it does not exist.
    public static func clientIsActive(_ id: UUID, on connection: isolated PostgresConnection) throws(PostgresError)
        -> Bool?
    {
        try connection.query("SELECT active FROM crm.clients WHERE id = \(id)").first?.decode(Bool.self, "active")
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
                WHERE ch.id = \(id) AND ch.platform = \(platform.rawValue) AND ch.active AND (\(clientID)::uuid IS NULL OR ch.client_id = \(clientID)::uuid)
                """)
        case .phone(let phone):
            rows = try connection.query(
                """
                SELECT ch.id, ch.client_id, cl.active AS client_active
                FROM crm.channels ch JOIN crm.clients cl ON cl.id = ch.client_id
                WHERE ch.phone_key = \(phone.matchKey) AND ch.platform = \(platform.rawValue) AND ch.active
                  AND (\(clientID)::uuid IS NULL OR ch.client_id = \(clientID)::uuid)
                """)
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
            SELECT (SELECT coalesce(string_agg(id::text, ','), '') FROM crm.stages WHERE client_id = \(clientID)) AS stages,
                   (SELECT coalesce(string_agg(id::text, ','), '') FROM crm.team_members
                    WHERE client_id = \(clientID) AND active) AS agents,
                   (SELECT coalesce(jsonb_agg(jsonb_build_object(
                        'id', id, 'key', key, 'label', label, 'type', field_type, 'options', coalesce(options, '[]'::jsonb),
                        'identifier', is_identifier)), '[]'::jsonb)
                    FROM crm.custom_field_definitions WHERE client_id = \(clientID)) AS definitions
            """)[0]
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
                id: id, key: key, label: item["label"]?.stringValue, type: type, options: options, isIdentifier: item["identifier"] == .bool(true))
        }
        return ContactCache.ClientSettings(stages: try ids("stages"), activeAgents: try ids("agents"), definitions: definitions)
    }

    /// Finds, for each request, the contact, the identifier owners and the candidate customer,
    /// all in one statement, locking the candidate customers' rows (in id order, so that two
    /// batches cannot deadlock on them) until the transaction ends. One lookup per request, in
    /// order.
    static func lookup(_ requests: [LookupRequest], on connection: isolated PostgresConnection) throws
        -> [Lookup]
    {
        guard !requests.isEmpty else { return [] }
        let rows = try connection.query(lookupStatement(LookupColumns(requests)))
        guard rows.count == requests.count else { throw UpsertInvariant.lookupRowCount }
        return try rows.map { row throws(PostgresError) in try Lookup(row: row) }
    }

    /// The requests as parallel arrays, one per `unnest` column.
    private struct LookupColumns {
        var ords: [Int] = [], clients: [UUID] = [], channels: [UUID] = []
        var phoneKeys: [String?] = [], externalIDs: [String?] = []
        var identifierOrds: [Int] = [], identifierDefinitions: [UUID] = [], identifierKeys: [String] = []

        init(_ requests: [LookupRequest]) {
            for (ord, request) in requests.enumerated() {
                ords.append(ord)
                clients.append(request.clientID)
                channels.append(request.channelID)
                switch request.identity {
                case .phone(let phone):
                    phoneKeys.append(phone.matchKey)
                    externalIDs.append(nil)
                case .externalUser(let id):
                    phoneKeys.append(nil)
                    externalIDs.append(id)
                }
                for identifier in request.identifiers {
                    identifierOrds.append(ord)
                    identifierDefinitions.append(identifier.definitionID)
                    identifierKeys.append(identifier.identifierKey)
                }
            }
        }
    }

    /// One row per request, in order: the contact (`id`…`created_at`), the locked candidate
    /// customer (`c_…`) and the identifier owners (`owners`, a JSON array of pairs).
    private static func lookupStatement(_ r: LookupColumns) -> PostgresQuery {
        """
            WITH req AS (
                SELECT * FROM unnest(\(r.ords)::int[], \(r.clients)::uuid[], \(r.channels)::uuid[], \(r.phoneKeys)::text[], \(r.externalIDs)::text[])
                    AS r(ord, client_id, channel_id, phone_key, external_user_id)
            ), found AS (
                SELECT r.ord, r.client_id, r.phone_key AS wanted_phone_key, c.*
                FROM req r
                LEFT JOIN LATERAL (
                    SELECT c.id, c.customer_id, c.platform, c.phone, c.name, c.email, c.external_user_id,
                           c.channel_id, c.created_at
                    FROM crm.contacts c
                    WHERE r.phone_key IS NOT NULL AND c.channel_id = r.channel_id AND c.phone_key = r.phone_key
                      AND c.client_id = r.client_id
                    UNION ALL
                    SELECT c.id, c.customer_id, c.platform, c.phone, c.name, c.email, c.external_user_id,
                           c.channel_id, c.created_at
                    FROM crm.contacts c
                    WHERE r.external_user_id IS NOT NULL AND c.channel_id = r.channel_id
                      AND c.external_user_id = r.external_user_id AND c.client_id = r.client_id
                ) c ON true
            ), owners AS (
                SELECT w.ord, v.customer_id, d.key
                FROM unnest(\(r.identifierOrds)::int[], \(r.identifierDefinitions)::uuid[], \(r.identifierKeys)::text[]) AS w(ord, definition_id, identifier_key)
                JOIN req r ON r.ord = w.ord
                -- One probe of the primary key per value (LIMIT 1 keeps the planner from
                -- scanning every value of the definition and filtering).
                CROSS JOIN LATERAL (
                    SELECT v.customer_id FROM crm.customer_identifiers v
                    WHERE v.client_id = r.client_id AND v.definition_id = w.definition_id
                      AND v.identifier_key = w.identifier_key
                    LIMIT 1
                ) v
                JOIN crm.custom_field_definitions d ON d.id = w.definition_id AND d.client_id = r.client_id
            ), owner_sets AS (
                SELECT ord, json_agg(json_build_array(customer_id, key) ORDER BY key) AS owners,
                       CASE WHEN count(DISTINCT customer_id) = 1 THEN min(customer_id::text)::uuid END AS only_owner
                FROM owners GROUP BY ord
            ), candidate AS (
                SELECT f.*, os.owners, coalesce(
                    f.customer_id,
                    os.only_owner,
                    (SELECT cu.id FROM crm.customers cu
                     WHERE f.wanted_phone_key IS NOT NULL AND cu.client_id = f.client_id
                       AND cu.phone_key = f.wanted_phone_key
                     ORDER BY cu.created_at, cu.id LIMIT 1)) AS candidate_id
                FROM found f LEFT JOIN owner_sets os ON os.ord = f.ord
            ), locked AS (
                -- One primary-key probe and row lock per candidate, in id order (two batches
                -- never lock customers in opposite orders). A subquery with FOR UPDATE is never
                -- flattened, so no statistics can turn it into a scan of the table.
                SELECT l.*
                FROM unnest(ARRAY(SELECT DISTINCT candidate_id FROM candidate WHERE candidate_id IS NOT NULL
                                  ORDER BY 1)) AS k(id)
                CROSS JOIN LATERAL (
                    SELECT cu.id, cu.client_id, cu.name, cu.email, cu.phone, cu.stage_id, cu.agent_id, cu.meta_data,
                           cu.custom_fields
                    FROM crm.customers cu WHERE cu.id = k.id
                    FOR UPDATE
                ) l
            )
            SELECT ca.ord, ca.id, ca.customer_id, ca.platform, ca.phone, ca.name, ca.email, ca.external_user_id,
                   ca.channel_id, ca.created_at,
                   l.id AS c_id, l.name AS c_name, l.email AS c_email, l.phone AS c_phone, l.stage_id AS c_stage_id,
                   l.agent_id AS c_agent_id, l.meta_data AS c_meta_data, l.custom_fields AS c_custom_fields, ca.owners
            FROM candidate ca
            LEFT JOIN locked l ON l.id = ca.candidate_id AND l.client_id = ca.client_id
            ORDER BY ca.ord
            """
    }

    /// Applies many plans in one statement (data-modifying CTEs over arrays: customers, with
    /// their custom field values, inserted and updated; contacts inserted and updated;
    /// identifier values released and claimed). Nothing unchanged is in a plan, so nothing
    /// unchanged is rewritten. The plans must not write one row twice (see
    /// ``ContactUpsertHandler/handleBatch(_:on:logger:)``). Returns the `created_at` of every
    /// contact inserted or updated; an identifier value another customer claimed first is a
    /// lost race (a unique violation), to be run again.
    static func write(_ plans: [WritePlan], on connection: isolated PostgresConnection) throws
        -> [UUID: Date]
    {
        let columns = WriteColumns(plans)
        guard !columns.isEmpty else { return [:] }
        // One plan for every batch: left to choose, PostgreSQL planned this statement again on
        // every call, 0.25-0.34 ms a batch (pg_stat_statements, batches of 50). The generic
        // plan is index probes whatever the batch's size (see docs/performance.md).
        let rows = try connection.query(writeStatement(columns), with: .genericPlan)
        var createdAt: [UUID: Date] = [:]
        for row in rows {
            if let claimed = try row.decode(Int?.self, "claimed") {
                guard claimed == columns.claimCustomers.count else {
                    throw LostRace("\(columns.claimCustomers.count - claimed) identifier value(s) were claimed by another customer first")
                }
                continue
            }
            createdAt[try row.decode(UUID.self, "id")] = try row.decode(Date.self, "created_at")
        }
        return createdAt
    }

    /// Everything a set of plans writes, as parallel arrays, one per `unnest` column.
    private struct WriteColumns {
        var newCustomers = CustomerColumns(), changedCustomers = CustomerColumns()
        var newContacts = ContactColumns(), changedContacts = ContactColumns()
        var releaseCustomers: [UUID] = [], releaseDefinitions: [UUID] = []
        var claimClients: [UUID] = [], claimDefinitions: [UUID] = [], claimKeys: [String] = [], claimCustomers: [UUID] = []

        init(_ plans: [WritePlan]) {
            for plan in plans {
                switch plan.customerWrite {
                case .none: break
                case .insert: newCustomers.append(plan.customer, client: plan.clientID)
                case .update: changedCustomers.append(plan.customer, client: plan.clientID)
                }
                switch plan.contactWrite {
                case .none: break
                case .insert: newContacts.append(plan.contact, client: plan.clientID)
                case .update: changedContacts.append(plan.contact, client: plan.clientID)
                }
                for change in plan.identifierChanges {
                    if plan.customerWrite != .insert {
                        releaseCustomers.append(plan.customer.id)
                        releaseDefinitions.append(change.definitionID)
                    }
                    if let key = change.newKey {
                        claimClients.append(plan.clientID)
                        claimDefinitions.append(change.definitionID)
                        claimKeys.append(key)
                        claimCustomers.append(plan.customer.id)
                    }
                }
            }
        }

        var isEmpty: Bool {
            newCustomers.ids.isEmpty && changedCustomers.ids.isEmpty && newContacts.ids.isEmpty
                && changedContacts.ids.isEmpty && releaseCustomers.isEmpty && claimCustomers.isEmpty
        }
    }

    /// One statement for every write: rows `(id, created_at)` of the contacts inserted or
    /// updated, and one row `claimed`: how many identifier values were claimed.
    private static func writeStatement(_ w: WriteColumns) -> PostgresQuery {
        """
            WITH ins_customers AS (
                INSERT INTO crm.customers (id, client_id, name, email, phone, stage_id, agent_id, meta_data, custom_fields)
                SELECT * FROM ROWS FROM (
                    unnest(\(w.newCustomers.ids)::uuid[]), unnest(\(w.newCustomers.clients)::uuid[]), unnest(\(w.newCustomers.names)::text[]), unnest(\(w.newCustomers.emails)::text[]), unnest(\(w.newCustomers.phones)::text[]),
                    unnest(\(w.newCustomers.stages)::uuid[]), unnest(\(w.newCustomers.agents)::uuid[]), jsonb_array_elements(\(JSONValue.array(w.newCustomers.metaData))::jsonb),
                    jsonb_array_elements(\(JSONValue.array(w.newCustomers.customFields))::jsonb))
                RETURNING 1
            ), upd_customers AS (
                UPDATE crm.customers c
                SET name = u.name, email = u.email, phone = u.phone, stage_id = u.stage_id, agent_id = u.agent_id,
                    meta_data = u.meta_data, custom_fields = u.custom_fields, updated_at = now()
                FROM ROWS FROM (
                    unnest(\(w.changedCustomers.ids)::uuid[]), unnest(\(w.changedCustomers.clients)::uuid[]), unnest(\(w.changedCustomers.names)::text[]), unnest(\(w.changedCustomers.emails)::text[]),
                    unnest(\(w.changedCustomers.phones)::text[]), unnest(\(w.changedCustomers.stages)::uuid[]), unnest(\(w.changedCustomers.agents)::uuid[]), jsonb_array_elements(\(JSONValue.array(w.changedCustomers.metaData))::jsonb),
                    jsonb_array_elements(\(JSONValue.array(w.changedCustomers.customFields))::jsonb))
                     AS u(id, client_id, name, email, phone, stage_id, agent_id, meta_data, custom_fields)
                WHERE c.id = u.id AND c.client_id = u.client_id
                RETURNING 1
            ), ins_contacts AS (
                INSERT INTO crm.contacts (id, client_id, customer_id, channel_id, platform, phone, external_user_id,
                                          name, email)
                SELECT * FROM unnest(\(w.newContacts.ids)::uuid[], \(w.newContacts.clients)::uuid[], \(w.newContacts.customers)::uuid[], \(w.newContacts.channels)::uuid[], \(w.newContacts.platforms)::text[], \(w.newContacts.phones)::text[],
                                     \(w.newContacts.externalUserIDs)::text[], \(w.newContacts.names)::text[], \(w.newContacts.emails)::text[])
                RETURNING id, created_at
            ), upd_contacts AS (
                UPDATE crm.contacts c SET name = u.name, email = u.email, updated_at = now()
                FROM unnest(\(w.changedContacts.ids)::uuid[], \(w.changedContacts.clients)::uuid[], \(w.changedContacts.names)::text[], \(w.changedContacts.emails)::text[]) AS u(id, client_id, name, email)
                WHERE c.id = u.id AND c.client_id = u.client_id
                RETURNING c.id, c.created_at
            ), release AS (
                DELETE FROM crm.customer_identifiers i
                USING unnest(\(w.releaseCustomers)::uuid[], \(w.releaseDefinitions)::uuid[]) AS r(customer_id, definition_id)
                WHERE i.customer_id = r.customer_id AND i.definition_id = r.definition_id
                RETURNING 1
            ), claim AS (
                -- A value this customer already holds is kept; one another customer holds
                -- is not taken, and the count below tells the caller.
                INSERT INTO crm.customer_identifiers (client_id, definition_id, identifier_key, customer_id)
                SELECT * FROM unnest(\(w.claimClients)::uuid[], \(w.claimDefinitions)::uuid[], \(w.claimKeys)::text[], \(w.claimCustomers)::uuid[])
                ON CONFLICT (client_id, definition_id, identifier_key) DO UPDATE SET customer_id = EXCLUDED.customer_id
                WHERE customer_identifiers.customer_id = EXCLUDED.customer_id
                RETURNING 1
            )
            SELECT id, created_at, NULL::bigint AS claimed FROM ins_contacts
            UNION ALL
            SELECT id, created_at, NULL FROM upd_contacts
            UNION ALL
            SELECT NULL, NULL, count(*) FROM claim
            """
    }

    /// Customer rows as parallel arrays, one per `unnest` column (the JSON columns travel as
    /// one JSON array each: no array-literal escaping of every quote).
    private struct CustomerColumns {
        var ids: [UUID] = [], clients: [UUID] = []
        var names: [String?] = [], emails: [String?] = [], phones: [String?] = []
        var stages: [UUID?] = [], agents: [UUID?] = []
        var metaData: [JSONValue] = [], customFields: [JSONValue] = []

        mutating func append(_ customer: Customer, client: UUID) {
            ids.append(customer.id)
            clients.append(client)
            names.append(customer.name)
            emails.append(customer.email)
            phones.append(customer.phone)
            stages.append(customer.stageID)
            agents.append(customer.agentID)
            metaData.append(.object(customer.metaData))
            customFields.append(.object(customer.customFields.mapValues(JSONValue.string)))
        }
    }

    /// Contact rows as parallel arrays, one per `unnest` column.
    private struct ContactColumns {
        var ids: [UUID] = [], clients: [UUID] = [], customers: [UUID] = [], channels: [UUID] = []
        var platforms: [String] = [], phones: [String?] = [], externalUserIDs: [String?] = []
        var names: [String?] = [], emails: [String?] = []

        mutating func append(_ contact: Contact, client: UUID) {
            ids.append(contact.id)
            clients.append(client)
            customers.append(contact.customerID)
            channels.append(contact.channelID)
            platforms.append(contact.platform)
            phones.append(contact.phone)
            externalUserIDs.append(contact.externalUserID)
            names.append(contact.name)
            emails.append(contact.email)
        }
    }
}

extension Lookup {
    /// A row of ``ContactStore/lookup(_:on:)``.
    fileprivate init(row: PostgresRow) throws(PostgresError) {
        self.init()
        if let id = try row.decode(UUID?.self, "id") {
            contact = Contact(
                id: id, customerID: try row.decode(UUID.self, "customer_id"), platform: try row.decode(String.self, "platform"),
                phone: try row.decode(String?.self, "phone"), name: try row.decode(String?.self, "name"),
                email: try row.decode(String?.self, "email"), externalUserID: try row.decode(String?.self, "external_user_id"),
                channelID: try row.decode(UUID.self, "channel_id"), createdAt: try row.decode(Date.self, "created_at"))
        }
        if let id = try row.decode(UUID?.self, "c_id") {
            customer = Customer(
                id: id, name: try row.decode(String?.self, "c_name"), email: try row.decode(String?.self, "c_email"),
                phone: try row.decode(String?.self, "c_phone"), stageID: try row.decode(UUID?.self, "c_stage_id"),
                agentID: try row.decode(UUID?.self, "c_agent_id"),
                metaData: try row.decode(JSONValue.self, "c_meta_data").objectValue ?? [:],
                customFields: (try row.decode(JSONValue.self, "c_custom_fields").objectValue ?? [:]).mapValues {
                    $0.stringValue ?? $0.jsonText
                })
        }
        for owner in try row.decode(JSONValue?.self, "owners")?.arrayValue ?? [] {
            guard let pair = owner.arrayValue, pair.count == 2,
                let id = pair[0].stringValue.flatMap(UUIDText.parse), let key = pair[1].stringValue
            else { throw PostgresError(code: .decoding, message: "malformed identifier owner") }
            owners.append((id, key))
        }
    }
}
