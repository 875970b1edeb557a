/// The floor the worker is compared to: the same database work for the same jobs, in plain
/// SQL, one job per transaction, run by pgbench with no client logic in the way.
///
/// `floor_one` claims the next ready job with `FOR UPDATE SKIP LOCKED`, resolves the channel,
/// checks the custom field keys, takes the identity lock, finds or creates the contact and
/// customer, merges the metadata and the custom field values (rewriting nothing equal), claims
/// identifier values, and marks the job done, all in the transaction pgbench opens for it. It skips what
/// only a client does well (collecting every validation problem, the structurer, canonical
/// forms), so it is a generous floor.
enum Floor {
    static let functionSQL = #"""
        CREATE SCHEMA IF NOT EXISTS bench;
        CREATE OR REPLACE FUNCTION bench.floor_one(p_queue text) RETURNS int
        LANGUAGE plpgsql AS $$
        DECLARE
            j record;
            p jsonb;
            v_platform text;
            v_channel uuid;
            v_client uuid;
            v_key text;
            v_ext text;
            v_phone text;
            v_contact uuid;
            v_customer uuid;
            v_created boolean := false;
            v_patch jsonb;
            v_fields jsonb;
        BEGIN
            SELECT id, payload INTO j FROM queue.jobs
            WHERE state = 'ready' AND hold IS NULL AND queue = p_queue
            ORDER BY priority, fair_seq, id LIMIT 1 FOR UPDATE SKIP LOCKED;  -- the claim's own index
            IF NOT FOUND THEN RETURN 0; END IF;
            UPDATE queue.jobs SET state = 'running', attempts = attempts + 1, locked_by = 'floor',
                   locked_until = now() + interval '60 seconds', started_at = now()
            WHERE id = j.id;
            p := j.payload;
            v_platform := p ->> 'channel';
            IF v_platform = 'webchat' THEN
                SELECT id, client_id INTO v_channel, v_client FROM crm.channels
                WHERE id = (p ->> 'channel_id')::uuid AND platform = 'webchat' AND active;
                v_ext := btrim(p ->> 'external_user_id');
            ELSE
                SELECT id, client_id INTO v_channel, v_client FROM crm.channels
                WHERE phone_key = crm.phone_key(p ->> 'channel_phone_number') AND platform = v_platform AND active;
                v_phone := crm.normalize_phone(p ->> 'contact_phone_number');
                v_key := crm.phone_key(v_phone);
            END IF;
            IF v_channel IS NULL OR (v_platform <> 'webchat' AND v_key IS NULL) OR EXISTS (
                SELECT 1 FROM jsonb_array_elements(coalesce(p -> 'custom_field_values', '[]')) e
                WHERE NOT EXISTS (SELECT 1 FROM crm.custom_field_definitions d
                                  WHERE d.client_id = v_client AND d.key = e ->> 'key'))
            THEN
                UPDATE queue.jobs SET state = 'failed', last_error = '{"status": 400, "code": "invalid_fields"}',
                       errors = errors || '[{"code": "invalid_fields"}]', finished_at = clock_timestamp(),
                       locked_by = NULL, locked_until = NULL
                WHERE id = j.id;
                RETURN 1;
            END IF;
            PERFORM pg_advisory_xact_lock(hashtextextended(coalesce('crm.phone:' || v_key, 'crm.webchat:' || v_ext), 0));
            IF v_key IS NOT NULL THEN
                SELECT id, customer_id INTO v_contact, v_customer FROM crm.contacts
                WHERE client_id = v_client AND channel_id = v_channel AND phone_key = v_key;
            ELSE
                SELECT id, customer_id INTO v_contact, v_customer FROM crm.contacts
                WHERE client_id = v_client AND channel_id = v_channel AND external_user_id = v_ext;
            END IF;
            v_patch := coalesce(p -> 'meta_data', '{}');
            SELECT coalesce(jsonb_object_agg(d.id::text, e ->> 'value'), '{}') INTO v_fields
            FROM jsonb_array_elements(coalesce(p -> 'custom_field_values', '[]')) e
            JOIN crm.custom_field_definitions d ON d.client_id = v_client AND d.key = e ->> 'key';
            IF v_contact IS NULL THEN
                INSERT INTO crm.customers (client_id, name, email, phone, stage_id, agent_id, meta_data, custom_fields)
                VALUES (v_client, p ->> 'contact_name', p ->> 'contact_email', v_phone, (p ->> 'stageId')::uuid,
                        (p ->> 'agentId')::uuid, v_patch, v_fields)
                RETURNING id INTO v_customer;
                INSERT INTO crm.contacts (client_id, customer_id, channel_id, platform, phone, external_user_id, name, email)
                VALUES (v_client, v_customer, v_channel, v_platform, v_phone, v_ext, p ->> 'contact_name', p ->> 'contact_email')
                RETURNING id INTO v_contact;
                v_created := true;
            ELSE
                UPDATE crm.customers
                SET meta_data = meta_data || v_patch,
                    custom_fields = custom_fields || v_fields,
                    stage_id = coalesce((p ->> 'stageId')::uuid, stage_id),
                    agent_id = coalesce((p ->> 'agentId')::uuid, agent_id),
                    updated_at = now()
                WHERE id = v_customer AND client_id = v_client
                  AND (meta_data, custom_fields, stage_id, agent_id) IS DISTINCT FROM
                      (meta_data || v_patch, custom_fields || v_fields, coalesce((p ->> 'stageId')::uuid, stage_id),
                       coalesce((p ->> 'agentId')::uuid, agent_id));
                UPDATE crm.contacts
                SET name = coalesce(p ->> 'contact_name', name), email = coalesce(p ->> 'contact_email', email), updated_at = now()
                WHERE id = v_contact
                  AND (name, email) IS DISTINCT FROM (coalesce(p ->> 'contact_name', name), coalesce(p ->> 'contact_email', email));
            END IF;
            INSERT INTO crm.customer_identifiers (client_id, definition_id, identifier_key, customer_id)
            SELECT v_client, d.id, lower(e ->> 'value'), v_customer
            FROM jsonb_array_elements(coalesce(p -> 'custom_field_values', '[]')) e
            JOIN crm.custom_field_definitions d ON d.client_id = v_client AND d.key = e ->> 'key' AND d.is_identifier
            ON CONFLICT (client_id, definition_id, identifier_key) DO NOTHING;
            UPDATE queue.jobs
            SET state = 'succeeded', result = jsonb_build_object('id', v_contact, 'ai_customer_id', v_customer, 'created', v_created),
                finished_at = clock_timestamp(), locked_by = NULL, locked_until = NULL
            WHERE id = j.id;
            RETURN 1;
        END
        $$;
        """#

    /// The pgbench script: one job per transaction.
    static let pgbenchScript = "SELECT bench.floor_one('floor');\n"
}
