-- "The client's oldest customer with that match key" (docs/rules.md section 4) must be one
-- customer. created_at defaulted to now(), the transaction's start, so the customers a batch
-- created all had the same age and the tie went to the lowest (random) id. Each row's own
-- insertion time settles it: the customer created first is the oldest.
ALTER TABLE crm.customers ALTER COLUMN created_at SET DEFAULT clock_timestamp();
