-- Imports: one row per `upsert-worker enqueue` run that enqueued something, and the tag on its
-- jobs (docs/contract.md sections 2 and 7). The columns are nullable without a default, so
-- adding them rewrites nothing; jobs from other producers leave them NULL.
--
-- No index on the tag: every index of queue.jobs takes a new entry at each of a job's three
-- writes (enqueue, claim, finish), and one on import_id cost 8 % of the COPY and made the
-- drain slower. An import's jobs are found by id instead: their ids lie strictly between
-- after_job_id and before_job_id (two values drawn from the jobs' sequence before and after its
-- COPY), a primary key range that other producers' jobs share only when they ran at the same
-- time (the import_id filter drops those).
CREATE TABLE queue.imports (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    queue          text        NOT NULL,
    kind           text        NOT NULL,
    client_id      uuid,
    file_name      text        NOT NULL,
    format         text        NOT NULL CHECK (format IN ('ndjson', 'csv')),
    -- A CSV file's header, to write failed rows back in its columns.
    columns        text[],
    created_by     text        NOT NULL DEFAULT current_user,
    created_at     timestamptz NOT NULL DEFAULT now(),
    rows_accepted  int         NOT NULL CHECK (rows_accepted >= 0),
    rows_rejected  int         NOT NULL CHECK (rows_rejected >= 0),
    after_job_id   bigint      NOT NULL,
    before_job_id  bigint      NOT NULL
);

ALTER TABLE queue.jobs ADD COLUMN import_id uuid, ADD COLUMN import_line int;

GRANT SELECT, INSERT ON queue.imports TO upsert_producer;
GRANT USAGE ON SEQUENCE queue.jobs_id_seq TO upsert_producer;
GRANT SELECT ON queue.imports TO upsert_worker;
