-- The HTTP front (`upsert-worker serve`).
--
-- A request that waits for its job's result asks to be told when the job finishes: such jobs
-- carry notify_finished, and the completion sends their ids on the channel
-- queue_jobs_finished (one NOTIFY per completing statement). Jobs without the flag (imports,
-- webhooks answered at once) send nothing, so a bulk drain pays nothing for it.
ALTER TABLE queue.jobs ADD COLUMN notify_finished boolean NOT NULL DEFAULT false;

-- The front's role: a producer that may also read the state and outcome of jobs (it answers
-- the API's clients with them, scoped to the key's organization in its queries) and take job
-- ids ahead of the insert (so that a multi-row insert maps each row to its request).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upsert_api') THEN
        CREATE ROLE upsert_api NOLOGIN IN ROLE upsert_producer;
    END IF;
END $$;
GRANT SELECT (id, queue, client_id, idempotency_key, state, attempts, result, last_error) ON queue.jobs TO upsert_api;
GRANT USAGE ON SEQUENCE queue.jobs_id_seq TO upsert_api;
GRANT SELECT ON queue.schema_migrations TO upsert_api;
