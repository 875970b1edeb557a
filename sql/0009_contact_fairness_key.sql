-- Fair claiming for contact.upsert (crm): a job's fairness key is its organization. With a
-- client_id that is the client; for a trusted producer's job without one (a webhook
-- ingester's plain INSERT), the organization of the channel the payload names, resolved at
-- enqueue so that the claim needs no join. A payload whose channel is unknown or ambiguous
-- gets no key (''): it is placed with the other unkeyed jobs, runs, and fails with
-- unknown_channel.

-- The client of the one active channel a contact.upsert payload names, or NULL. SECURITY
-- DEFINER: producers insert jobs but may not read channels.
CREATE FUNCTION crm.payload_channel_client(payload jsonb) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    wanted text := payload ->> 'channel';
    reference text;
    found uuid[];
BEGIN
    IF jsonb_typeof(payload) <> 'object' OR wanted IS NULL THEN
        RETURN NULL;
    END IF;
    IF wanted IN ('whatsapp', 'web-whatsapp') THEN
        IF jsonb_typeof(payload -> 'channel_phone_number') <> 'string' THEN
            RETURN NULL;
        END IF;
        reference := btrim(payload ->> 'channel_phone_number');
        IF reference ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            SELECT array_agg(c.client_id) INTO found FROM crm.channels c
            WHERE c.id = reference::uuid AND c.platform = wanted AND c.active;
        ELSE
            SELECT array_agg(c.client_id) INTO found FROM crm.channels c
            WHERE c.phone_key = crm.phone_key(reference) AND c.platform = wanted AND c.active;
        END IF;
    ELSIF wanted = 'webchat' THEN
        IF jsonb_typeof(payload -> 'channel_id') <> 'string'
           OR btrim(payload ->> 'channel_id') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            RETURN NULL;
        END IF;
        SELECT array_agg(c.client_id) INTO found FROM crm.channels c
        WHERE c.id = btrim(payload ->> 'channel_id')::uuid AND c.platform = 'webchat' AND c.active;
    END IF;
    IF cardinality(found) = 1 THEN
        RETURN found[1];
    END IF;
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION crm.payload_channel_client(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.payload_channel_client(jsonb) TO upsert_producer, upsert_worker;

-- The contact job's keys at insert: its ordering key (when the producer left it NULL) and its
-- fairness key (when NULL). Named to run before the queue's jobs_queue_place, which places the
-- job by that key.
CREATE OR REPLACE FUNCTION crm.default_ordering_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ordering_key IS NULL THEN
        NEW.ordering_key := crm.contact_ordering_key(NEW.payload);
    END IF;
    IF NEW.fairness_key = '' THEN
        NEW.fairness_key := coalesce(coalesce(NEW.client_id, crm.payload_channel_client(NEW.payload))::text, '');
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER jobs_contact_ordering_key ON queue.jobs;
CREATE TRIGGER jobs_contact_keys
    BEFORE INSERT ON queue.jobs
    FOR EACH ROW
    WHEN ((NEW.ordering_key IS NULL OR NEW.fairness_key = '') AND NEW.kind = 'contact.upsert')
    EXECUTE FUNCTION crm.default_ordering_key();

-- Jobs already queued get their organization as well.
UPDATE queue.jobs SET fairness_key = coalesce(crm.payload_channel_client(payload)::text, '')
WHERE kind = 'contact.upsert' AND fairness_key = '' AND state IN ('ready', 'running');
