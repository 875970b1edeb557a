\set phone random(0, 9999999)
INSERT INTO queue.jobs (payload, client_id) VALUES (jsonb_build_object('channel', 'whatsapp', 'channel_phone_number', '+56 2 2345 6789', 'contact_phone_number', '+5698' || lpad(:phone::text, 7, '0'), 'contact_name', 'Load Test', 'meta_data', jsonb_build_object('source', 'pgbench')), 'e663fcf8-5d0e-4092-a241-224ac44c18d0');
