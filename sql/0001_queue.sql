-- The generic job queue (owned by JobQueue). Names fixed by docs/contract.md section 2.
CREATE SCHEMA IF NOT EXISTS queue;

CREATE TABLE queue.jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           text        NOT NULL DEFAULT 'contacts',
    kind            text        NOT NULL DEFAULT 'contact.upsert',
    payload         jsonb       NOT NULL,
    client_id       uuid,
    idempotency_key text,
    ordering_key    text,
    priority        smallint    NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT now(),
    state           text        NOT NULL DEFAULT 'ready'
                    CHECK (state IN ('ready', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts        int         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    int         NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
    locked_by       text,
    locked_until    timestamptz,
    result          jsonb,
    last_error      jsonb,
    errors          jsonb       NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    CHECK (state <> 'running' OR (locked_by IS NOT NULL AND locked_until IS NOT NULL))
);

-- Claiming reads only ready rows, in claim order: finished rows never slow it down.
CREATE INDEX jobs_claim_idx ON queue.jobs (queue, priority, run_at, id) WHERE state = 'ready';
-- Expired leases are found without scanning finished rows.
CREATE INDEX jobs_lease_idx ON queue.jobs (locked_until) WHERE state = 'running';
-- "Is an earlier job with this ordering key still pending?" in one index probe.
CREATE INDEX jobs_ordering_idx ON queue.jobs (ordering_key, id)
    WHERE ordering_key IS NOT NULL AND state IN ('ready', 'running');
-- A repeated idempotency key inserts nothing (a raw INSERT adds ON CONFLICT DO NOTHING).
CREATE UNIQUE INDEX jobs_idempotency_idx ON queue.jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Pruning and the failed-jobs view read finished rows by time.
CREATE INDEX jobs_finished_idx ON queue.jobs (finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

-- One notification per INSERT or COPY statement (not per row), naming the queues it filled.
CREATE FUNCTION queue.notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    queues text;
BEGIN
    SELECT string_agg(DISTINCT i.queue, ',') INTO queues FROM inserted i WHERE i.state = 'ready';
    IF queues IS NOT NULL THEN
        PERFORM pg_notify('queue_jobs', queues);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_inserted
    AFTER INSERT ON queue.jobs
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION queue.notify_inserted();

-- Monitoring (docs/contract.md section 2).
CREATE VIEW queue.stats AS
SELECT queue, state, count(*) AS jobs, min(created_at) AS oldest_created_at
FROM queue.jobs
GROUP BY queue, state;

CREATE VIEW queue.failed_jobs AS
SELECT id, queue, kind, client_id, attempts, max_attempts, last_error, errors,
       created_at, started_at, finished_at
FROM queue.jobs
WHERE state = 'failed';
