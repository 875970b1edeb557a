-- Imports: one row per `upsert-worker enqueue` run that enqueued something, and the tag on its
-- jobs (docs/contract.md sections 2 and 7). The columns are nullable without a default, so
-- adding them rewrites nothing; jobs from other producers leave them NULL and are in no index
-- of theirs.
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
    rows_rejected  int         NOT NULL CHECK (rows_rejected >= 0)
);

ALTER TABLE queue.jobs ADD COLUMN import_id uuid, ADD COLUMN import_line int;

-- An import's jobs by state and line, for `import status` and `import failures`; only imported jobs.
CREATE INDEX jobs_import_idx ON queue.jobs (import_id, state, import_line) WHERE import_id IS NOT NULL;

GRANT SELECT, INSERT ON queue.imports TO upsert_producer;
GRANT SELECT ON queue.imports TO upsert_worker;
