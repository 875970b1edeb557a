-- Custom field values move onto the customer row: one jsonb object per customer,
-- keyed by definition id, instead of one row per value. A job that sets four values now
-- writes one row, not five, and checks no foreign key per value. Identifier values, which
-- must be unique per client and definition, keep a small table of their own.
ALTER TABLE crm.customers ADD COLUMN custom_fields jsonb NOT NULL DEFAULT '{}';
ALTER TABLE crm.customers ADD CONSTRAINT customers_custom_fields_object
    CHECK (jsonb_typeof(custom_fields) = 'object');

UPDATE crm.customers c
SET custom_fields = v.fields
FROM (SELECT customer_id, jsonb_object_agg(definition_id::text, value) AS fields
      FROM crm.customer_custom_fields GROUP BY customer_id) v
WHERE v.customer_id = c.id;

-- An identifier value belongs to at most one customer of the client (docs/rules.md section 5).
-- `identifier_key` is the canonical value, lowercased.
CREATE TABLE crm.customer_identifiers (
    client_id      uuid NOT NULL,
    definition_id  uuid NOT NULL REFERENCES crm.custom_field_definitions (id) ON DELETE CASCADE,
    identifier_key text NOT NULL,
    customer_id    uuid NOT NULL REFERENCES crm.customers (id) ON DELETE CASCADE,
    PRIMARY KEY (client_id, definition_id, identifier_key)
);
CREATE INDEX customer_identifiers_customer_idx ON crm.customer_identifiers (customer_id);

INSERT INTO crm.customer_identifiers (client_id, definition_id, identifier_key, customer_id)
SELECT client_id, definition_id, identifier_key, customer_id
FROM crm.customer_custom_fields WHERE identifier_key IS NOT NULL;

-- Same view, same columns (docs/contract.md section 3); values of deleted definitions drop out.
CREATE OR REPLACE VIEW crm.customer_field_values AS
SELECT c.id AS customer_id, d.key, f.value
FROM crm.customers c
CROSS JOIN LATERAL jsonb_each_text(c.custom_fields) AS f(definition_id, value)
JOIN crm.custom_field_definitions d ON d.id::text = f.definition_id AND d.client_id = c.client_id;

DROP TABLE crm.customer_custom_fields;

GRANT SELECT, INSERT, UPDATE, DELETE ON crm.customer_identifiers TO upsert_worker;
