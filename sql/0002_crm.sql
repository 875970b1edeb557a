-- The contact domain (owned by ContactDomain). Names fixed by docs/contract.md section 3.
CREATE SCHEMA IF NOT EXISTS crm;

-- Phone numbers: docs/rules.md section 2. The Swift normalizer in ContactDomain implements the
-- same rules; a test checks that both agree on every example.
-- E.164 form of a phone spelling, or NULL when it is no phone number.
CREATE FUNCTION crm.normalize_phone(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    s text := btrim(raw, E' \t\n\r\u00a0');
    at int;
BEGIN
    IF s IS NULL THEN
        RETURN NULL;
    END IF;
    IF lower(left(s, 9)) = 'whatsapp:' THEN
        s := btrim(substr(s, 10), E' \t\n\r\u00a0');
    END IF;
    at := strpos(s, '@');
    IF at > 0 THEN
        IF lower(substr(s, at + 1)) NOT IN ('s.whatsapp.net', 'c.us')
           OR left(s, at - 1) !~ '^[0-9]+(:[0-9]+)?$' THEN
            RETURN NULL;
        END IF;
        s := split_part(left(s, at - 1), ':', 1);
    END IF;
    s := translate(s, E' \t\n\r\u00a0-./()', '');
    IF left(s, 1) = '+' THEN
        s := substr(s, 2);
    ELSIF left(s, 2) = '00' THEN
        s := substr(s, 3);
    END IF;
    IF length(s) NOT BETWEEN 7 AND 15 OR left(s, 1) = '0' OR s !~ '^[0-9]+$' THEN
        RETURN NULL;
    END IF;
    RETURN '+' || s;
END
$$;

-- The identity match key of a phone spelling: its digits with WhatsApp's known variants
-- folded together (Brazil's ninth digit, Mexico's 521, Argentina's 549), or NULL.
CREATE FUNCTION crm.phone_key(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    d text := substr(crm.normalize_phone(raw), 2);
BEGIN
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(d) = 12 AND left(d, 2) = '55' AND substr(d, 3, 1) BETWEEN '1' AND '9'
       AND substr(d, 4, 1) BETWEEN '1' AND '9' AND substr(d, 5, 1) BETWEEN '6' AND '9' THEN
        RETURN left(d, 4) || '9' || substr(d, 5);
    END IF;
    IF length(d) = 13 AND left(d, 3) IN ('521', '549') THEN
        RETURN left(d, 2) || substr(d, 4);
    END IF;
    RETURN d;
END
$$;

CREATE TABLE crm.clients (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text        NOT NULL,
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE crm.api_keys (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id  uuid        NOT NULL REFERENCES crm.clients (id),
    key_hash   text        NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE crm.channels (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id    uuid        NOT NULL REFERENCES crm.clients (id),
    platform     text        NOT NULL CHECK (platform IN ('whatsapp', 'web-whatsapp', 'webchat')),
    phone_number text,
    name         text,
    active       boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    phone_key    text GENERATED ALWAYS AS (crm.phone_key(phone_number)) STORED,
    CHECK (CASE WHEN platform = 'webchat' THEN phone_number IS NULL
                ELSE phone_number ~ '^\+[1-9][0-9]{6,14}$' END)
);
CREATE INDEX channels_phone_idx ON crm.channels (phone_key, platform) WHERE active;
CREATE INDEX channels_client_idx ON crm.channels (client_id);

CREATE TABLE crm.team_members (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id  uuid        NOT NULL REFERENCES crm.clients (id),
    name       text        NOT NULL,
    email      text,
    active     boolean     NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX team_members_client_idx ON crm.team_members (client_id);

CREATE TABLE crm.stages (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id  uuid        NOT NULL REFERENCES crm.clients (id),
    name       text        NOT NULL,
    position   int         NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stages_client_idx ON crm.stages (client_id);

CREATE TABLE crm.custom_field_definitions (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id     uuid        NOT NULL REFERENCES crm.clients (id),
    key           text        NOT NULL,
    label         text,
    field_type    text        NOT NULL CHECK (field_type IN ('text', 'number', 'date', 'boolean', 'options')),
    options       jsonb       CHECK (options IS NULL OR jsonb_typeof(options) = 'array'),
    is_identifier boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, key)
);

CREATE TABLE crm.customers (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id  uuid        NOT NULL REFERENCES crm.clients (id),
    name       text,
    email      text,
    phone      text,
    stage_id   uuid        REFERENCES crm.stages (id),
    agent_id   uuid        REFERENCES crm.team_members (id),
    meta_data  jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(meta_data) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    phone_key  text GENERATED ALWAYS AS (crm.phone_key(phone)) STORED
);
CREATE INDEX customers_phone_idx ON crm.customers (client_id, phone_key, created_at, id)
    WHERE phone_key IS NOT NULL;

-- client_id on contacts and custom field values repeats the customer's (no foreign key of its
-- own: the customer's is checked already, and every write names the client).
CREATE TABLE crm.contacts (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id        uuid        NOT NULL,
    customer_id      uuid        NOT NULL REFERENCES crm.customers (id),
    channel_id       uuid        NOT NULL REFERENCES crm.channels (id),
    platform         text        NOT NULL CHECK (platform IN ('whatsapp', 'web-whatsapp', 'webchat')),
    phone            text,
    external_user_id text,
    name             text,
    email            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    phone_key        text GENERATED ALWAYS AS (crm.phone_key(phone)) STORED,
    CHECK (CASE WHEN platform = 'webchat' THEN external_user_id IS NOT NULL ELSE phone_key IS NOT NULL END)
);
-- One contact per channel identity, whatever the interleaving (docs/rules.md section 4).
CREATE UNIQUE INDEX contacts_phone_identity_idx ON crm.contacts (channel_id, phone_key)
    WHERE phone_key IS NOT NULL;
CREATE UNIQUE INDEX contacts_external_identity_idx ON crm.contacts (channel_id, external_user_id)
    WHERE external_user_id IS NOT NULL;
CREATE INDEX contacts_customer_idx ON crm.contacts (customer_id);

-- Custom field values of customers, in canonical text form. `identifier_key` is set for
-- identifier definitions only, and is unique per client and definition: two customers can
-- never hold the same identifier value.
CREATE TABLE crm.customer_custom_fields (
    customer_id    uuid        NOT NULL REFERENCES crm.customers (id) ON DELETE CASCADE,
    definition_id  uuid        NOT NULL REFERENCES crm.custom_field_definitions (id) ON DELETE CASCADE,
    client_id      uuid        NOT NULL,
    value          text        NOT NULL,
    identifier_key text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, definition_id)
);
CREATE UNIQUE INDEX customer_identifier_idx ON crm.customer_custom_fields (client_id, definition_id, identifier_key)
    WHERE identifier_key IS NOT NULL;

CREATE VIEW crm.customer_field_values AS
SELECT v.customer_id, d.key, v.value
FROM crm.customer_custom_fields v
JOIN crm.custom_field_definitions d ON d.id = v.definition_id;

-- The queue's default ordering key for contact.upsert: the channel identity, with the
-- contact's phone reduced to its match key, so that every spelling of one number runs in
-- order (docs/rules.md section 2). Producers that set their own key keep it.
CREATE FUNCTION crm.contact_ordering_key(payload jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    channel text;
    channel_ref text;
    contact_ref text;
BEGIN
    IF jsonb_typeof(payload) <> 'object' OR jsonb_typeof(payload -> 'channel') <> 'string' THEN
        RETURN NULL;
    END IF;
    channel := payload ->> 'channel';
    IF channel IN ('whatsapp', 'web-whatsapp') THEN
        IF jsonb_typeof(payload -> 'channel_phone_number') <> 'string'
           OR jsonb_typeof(payload -> 'contact_phone_number') <> 'string' THEN
            RETURN NULL;
        END IF;
        channel_ref := btrim(payload ->> 'channel_phone_number');
        IF channel_ref ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
            channel_ref := lower(channel_ref);
        ELSE
            channel_ref := crm.phone_key(channel_ref);
        END IF;
        contact_ref := crm.phone_key(payload ->> 'contact_phone_number');
    ELSIF channel = 'webchat' THEN
        IF jsonb_typeof(payload -> 'channel_id') <> 'string'
           OR jsonb_typeof(payload -> 'external_user_id') <> 'string' THEN
            RETURN NULL;
        END IF;
        channel_ref := lower(btrim(payload ->> 'channel_id'));
        contact_ref := btrim(payload ->> 'external_user_id');
    ELSE
        RETURN NULL;
    END IF;
    IF channel_ref IS NULL OR contact_ref IS NULL OR contact_ref = '' THEN
        RETURN NULL;
    END IF;
    RETURN channel || ':' || channel_ref || ':' || contact_ref;
END
$$;

CREATE FUNCTION crm.default_ordering_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.ordering_key := crm.contact_ordering_key(NEW.payload);
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_contact_ordering_key
    BEFORE INSERT ON queue.jobs
    FOR EACH ROW
    WHEN (NEW.ordering_key IS NULL AND NEW.kind = 'contact.upsert')
    EXECUTE FUNCTION crm.default_ordering_key();

-- Authenticated enqueue (docs/contract.md section 2): the API key is checked by its SHA-256 and
-- never stored; an unknown or revoked key raises SQLSTATE 28000 and enqueues nothing.
CREATE FUNCTION crm.enqueue_contact_upsert(api_key text, payload jsonb, idempotency_key text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key_client uuid;
    job_id bigint;
BEGIN
    SELECT k.client_id INTO key_client
    FROM crm.api_keys k
    WHERE k.key_hash = encode(sha256(convert_to(coalesce(api_key, ''), 'UTF8')), 'hex')
      AND (k.revoked_at IS NULL OR k.revoked_at > now());
    IF key_client IS NULL THEN
        RAISE EXCEPTION 'invalid or revoked API key' USING ERRCODE = '28000';
    END IF;
    INSERT INTO queue.jobs (payload, client_id, idempotency_key)
    VALUES (payload, key_client, enqueue_contact_upsert.idempotency_key)
    ON CONFLICT DO NOTHING
    RETURNING id INTO job_id;
    IF job_id IS NULL THEN
        SELECT j.id INTO job_id FROM queue.jobs j
        WHERE j.queue = 'contacts' AND j.idempotency_key = enqueue_contact_upsert.idempotency_key;
    END IF;
    RETURN job_id;
END
$$;

-- A version number for the organization settings workers cache (clients, channels, stages,
-- team members, custom field definitions): any change bumps it, and a worker that sees a
-- new number at the start of a batch drops its cache.
CREATE TABLE crm.config_version (
    id      int    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO crm.config_version DEFAULT VALUES;

CREATE FUNCTION crm.bump_config_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE crm.config_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER clients_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.clients
    FOR EACH STATEMENT EXECUTE FUNCTION crm.bump_config_version();
CREATE TRIGGER channels_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.channels
    FOR EACH STATEMENT EXECUTE FUNCTION crm.bump_config_version();
CREATE TRIGGER stages_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.stages
    FOR EACH STATEMENT EXECUTE FUNCTION crm.bump_config_version();
CREATE TRIGGER team_members_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.team_members
    FOR EACH STATEMENT EXECUTE FUNCTION crm.bump_config_version();
CREATE TRIGGER definitions_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON crm.custom_field_definitions
    FOR EACH STATEMENT EXECUTE FUNCTION crm.bump_config_version();
