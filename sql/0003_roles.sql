-- Least privilege. Two group roles, NOLOGIN, that deployments grant to their own
-- login roles:
--   upsert_producer  inserts jobs and calls crm.enqueue_contact_upsert; reads nothing else
--   upsert_worker    works jobs: reads settings, writes contacts, customers and job state;
--                    owns nothing, so it cannot alter or drop the schema
-- The schema itself is owned by whoever runs `upsert-worker migrate` (an administrator).
DO $$
BEGIN
    BEGIN
        CREATE ROLE upsert_producer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- roles are per cluster
    END;
    BEGIN
        CREATE ROLE upsert_worker NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$$;

-- The client of an active API key, for `upsert-worker enqueue --api-key` run as a producer.
CREATE FUNCTION crm.api_key_client(api_key text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.client_id FROM crm.api_keys k
    WHERE k.key_hash = encode(sha256(convert_to(coalesce(api_key, ''), 'UTF8')), 'hex')
      AND (k.revoked_at IS NULL OR k.revoked_at > now())
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA queue, crm FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm.enqueue_contact_upsert(text, jsonb, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm.api_key_client(text) FROM PUBLIC;

GRANT USAGE ON SCHEMA queue, crm TO upsert_producer, upsert_worker;

-- Producers: new jobs only (the trigger that fills ordering keys runs with their rights and
-- calls the phone functions, which stay executable by everyone).
GRANT INSERT ON queue.jobs TO upsert_producer;
GRANT SELECT (id) ON queue.jobs TO upsert_producer;
GRANT EXECUTE ON FUNCTION crm.enqueue_contact_upsert(text, jsonb, text) TO upsert_producer, upsert_worker;
GRANT EXECUTE ON FUNCTION crm.api_key_client(text) TO upsert_producer, upsert_worker;

-- Workers.
GRANT SELECT, INSERT, UPDATE, DELETE ON queue.jobs TO upsert_worker;
GRANT SELECT ON queue.schema_migrations, queue.stats, queue.failed_jobs TO upsert_worker;
GRANT SELECT ON crm.clients, crm.channels, crm.stages, crm.team_members, crm.custom_field_definitions,
    crm.config_version, crm.customer_field_values TO upsert_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.customers, crm.contacts, crm.customer_custom_fields TO upsert_worker;
