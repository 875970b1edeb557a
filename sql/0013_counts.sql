-- Counts that cost the same with ten million finished jobs as with ten
-- (docs/operations.md, "Counting").
--
-- Every statement that writes queue.jobs appends what it changed, per (queue, state), to
-- queue.job_count_changes: an append, so concurrent writers never wait on one another. A
-- fold (queue.fold_counts, run by a worker's sampler every few seconds and by `stats`) moves
-- those rows into the totals of queue.job_counts and the per-second finish counts of
-- queue.finished_per_second (kept an hour). A count is the total plus the changes not folded
-- yet: exact, and a read of a few hundred rows at most.
CREATE TABLE queue.job_counts (
    queue text NOT NULL,
    state text NOT NULL,
    jobs bigint NOT NULL,
    PRIMARY KEY (queue, state)
);

CREATE TABLE queue.job_count_changes (
    queue text NOT NULL,
    state text NOT NULL,
    jobs bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE queue.finished_per_second (
    queue text NOT NULL,
    second timestamptz NOT NULL,
    jobs bigint NOT NULL,
    PRIMARY KEY (queue, second)
);

-- SECURITY DEFINER: producers insert jobs but may write nothing else.
CREATE FUNCTION queue.record_count_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO queue.job_count_changes (queue, state, jobs)
        SELECT n.queue, n.state, count(*) FROM new_rows n GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO queue.job_count_changes (queue, state, jobs)
        SELECT o.queue, o.state, -count(*) FROM old_rows o GROUP BY 1, 2;
    ELSE
        INSERT INTO queue.job_count_changes (queue, state, jobs)
        SELECT c.queue, c.state, sum(c.jobs)
        FROM (SELECT n.queue, n.state, 1 AS jobs FROM new_rows n
              UNION ALL
              SELECT o.queue, o.state, -1 FROM old_rows o) c
        GROUP BY 1, 2
        HAVING sum(c.jobs) <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION queue.forget_counts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM queue.job_count_changes;
    DELETE FROM queue.job_counts;
    RETURN NULL;
END
$$;

-- Transition tables allow one event per trigger, hence three.
CREATE TRIGGER jobs_count_inserted AFTER INSERT ON queue.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue.record_count_changes();
CREATE TRIGGER jobs_count_updated AFTER UPDATE ON queue.jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue.record_count_changes();
CREATE TRIGGER jobs_count_deleted AFTER DELETE ON queue.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue.record_count_changes();
CREATE TRIGGER jobs_count_truncated AFTER TRUNCATE ON queue.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION queue.forget_counts();

-- The triggers exist (and the lock they took keeps writers out) before the first count.
INSERT INTO queue.job_counts (queue, state, jobs)
SELECT queue, state, count(*) FROM queue.jobs GROUP BY 1, 2;

-- Moves the changes recorded so far into the totals. Safe to run from several sessions at
-- once: a change row is deleted, and so counted, by one of them only.
CREATE FUNCTION queue.fold_counts() RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH moved AS (
        DELETE FROM queue.job_count_changes RETURNING queue, state, jobs, at
    ), totals AS (
        INSERT INTO queue.job_counts AS c (queue, state, jobs)
        SELECT queue, state, sum(jobs) FROM moved GROUP BY 1, 2
        ON CONFLICT (queue, state) DO UPDATE SET jobs = c.jobs + excluded.jobs
    ), finished AS (
        -- Jobs that reached a final state, by the second their statement started.
        INSERT INTO queue.finished_per_second AS f (queue, second, jobs)
        SELECT queue, date_trunc('second', at), sum(jobs) FROM moved
        WHERE state IN ('succeeded', 'failed', 'cancelled') AND jobs > 0
        GROUP BY 1, 2
        ON CONFLICT (queue, second) DO UPDATE SET jobs = f.jobs + excluded.jobs
    )
    DELETE FROM queue.finished_per_second WHERE second < now() - interval '1 hour';
$$;

-- The exact number of jobs per (queue, state) now: the totals plus the changes not folded yet.
CREATE VIEW queue.job_counts_now AS
SELECT queue, state, sum(jobs)::bigint AS jobs
FROM (SELECT queue, state, jobs FROM queue.job_counts
      UNION ALL
      SELECT queue, state, jobs FROM queue.job_count_changes) c
GROUP BY queue, state;

-- Jobs finished per queue in the last `window_seconds` seconds (by the second their
-- finishing statement started), folded or not.
CREATE FUNCTION queue.finished_recently(window_seconds int DEFAULT 60)
RETURNS TABLE (queue text, jobs bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT queue, sum(jobs)::bigint FROM (
        SELECT f.queue, f.jobs FROM queue.finished_per_second f
        WHERE f.second >= date_trunc('second', now()) - make_interval(secs => window_seconds)
        UNION ALL
        SELECT c.queue, c.jobs FROM queue.job_count_changes c
        WHERE c.state IN ('succeeded', 'failed', 'cancelled') AND c.jobs > 0
          AND c.at >= date_trunc('second', now()) - make_interval(secs => window_seconds)
    ) r GROUP BY 1;
$$;

-- Oldest creation time per (queue, state), and the longest a due ready job has waited: one
-- index probe each, whatever the history. Running jobs are few (a lease each) and read
-- through jobs_lease_idx.
CREATE INDEX jobs_created_idx ON queue.jobs (queue, state, created_at) WHERE state <> 'running';
CREATE INDEX jobs_waiting_idx ON queue.jobs (queue, run_at) WHERE state = 'ready';

CREATE OR REPLACE VIEW queue.stats AS
SELECT c.queue, c.state, c.jobs,
       CASE c.state
           WHEN 'ready' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'ready')
           WHEN 'running' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'running')
           WHEN 'succeeded' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'succeeded')
           WHEN 'failed' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'failed')
           WHEN 'cancelled' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'cancelled')
       END AS oldest_created_at
FROM queue.job_counts_now c
WHERE c.jobs > 0;

-- Seconds the longest-waiting due ready job of each queue has waited (since it was enqueued,
-- or since its run_at for a retried or scheduled job).
CREATE VIEW queue.oldest_ready AS
SELECT q.queue, extract(epoch FROM now() - w.run_at)::float8 AS age_seconds
FROM (SELECT DISTINCT queue FROM queue.job_counts_now WHERE state = 'ready' AND jobs > 0) q
CROSS JOIN LATERAL (
    SELECT j.run_at FROM queue.jobs j
    WHERE j.queue = q.queue AND j.state = 'ready' AND j.run_at <= now()
    ORDER BY j.run_at LIMIT 1
) w;

GRANT SELECT ON queue.job_counts_now, queue.oldest_ready TO upsert_worker;
GRANT EXECUTE ON FUNCTION queue.fold_counts(), queue.finished_recently(int) TO upsert_worker;
REVOKE EXECUTE ON FUNCTION queue.fold_counts(), queue.finished_recently(int) FROM PUBLIC;
