-- The demo organization: channels of all three platforms, stages, agents, custom field
-- definitions of every type, and an API key. Safe to load twice.
-- API key of the demo: demo-key-acme-2026 (only its SHA-256 is stored).
INSERT INTO crm.clients (id, name) VALUES
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'Acme SpA'),
    ('35c5ad15-817b-44fc-b00b-14dbfb297e04', 'Other Org (inactive)')
ON CONFLICT DO NOTHING;
UPDATE crm.clients SET active = false WHERE id = '35c5ad15-817b-44fc-b00b-14dbfb297e04';

INSERT INTO crm.api_keys (client_id, key_hash) VALUES
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', encode(sha256(convert_to('demo-key-acme-2026', 'UTF8')), 'hex'))
ON CONFLICT DO NOTHING;

INSERT INTO crm.channels (id, client_id, platform, phone_number, name) VALUES
    ('b0e80505-c5db-4aa9-9bfe-3c023e5ecaf0', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'whatsapp', '+56223456789', 'Santiago WhatsApp'),
    ('733ba8bb-3000-45d7-9f2b-acf759b01aff', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'whatsapp', '+5541999990000', 'Curitiba WhatsApp'),
    ('9d77776a-1dd3-4b01-9d91-832ec9624196', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'web-whatsapp', '+525500000000', 'CDMX WhatsApp Web'),
    ('d9555fce-b3b4-40fc-abc4-2bdbffa0739d', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'web-whatsapp', '+541100000000', 'Buenos Aires WhatsApp Web'),
    ('a4fb82ce-71ce-4412-b1e6-6ff866d9bd77', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'webchat', NULL, 'Website chat'),
    ('0fca5727-38b7-4ffc-bc23-810c6e791fa7', '35c5ad15-817b-44fc-b00b-14dbfb297e04', 'whatsapp', '+15556481025', 'Inactive org line')
ON CONFLICT DO NOTHING;

INSERT INTO crm.stages (id, client_id, name, position) VALUES
    ('72f7992f-daaf-43b5-aea7-554bc151992a', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'New lead', 1),
    ('2eb311a3-794e-4e03-a78b-69cdeb593719', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'Qualified', 2)
ON CONFLICT DO NOTHING;

INSERT INTO crm.team_members (id, client_id, name, email) VALUES
    ('507ab5b5-530a-4b1d-9b01-2f27f5cdc65f', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'Camila Rojas', 'camila@acme.example'),
    ('7817c22f-4339-497f-977a-5550beed2781', 'e663fcf8-5d0e-4092-a241-224ac44c18d0', 'Diego Soto', 'diego@acme.example')
ON CONFLICT DO NOTHING;

INSERT INTO crm.custom_field_definitions (client_id, key, label, field_type, options, is_identifier) VALUES
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'rut', 'RUT', 'text', NULL, true),
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'company_name', 'Company', 'text', NULL, false),
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'budget', 'Budget (CLP)', 'number', NULL, false),
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'visit_date', 'Visit date', 'date', NULL, false),
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'is_vip', 'VIP', 'boolean', NULL, false),
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'plan', 'Plan', 'options', '["Free", "Pro", "Enterprise"]', false),
    ('e663fcf8-5d0e-4092-a241-224ac44c18d0', 'preferred_language', 'Language', 'options', '["es", "pt", "en"]', false)
ON CONFLICT DO NOTHING;
