-- The lease index serves the lease sweep only; a statement that names its jobs by id probes the
-- primary key.
--
-- jobs_lease_idx (locked_until) WHERE state = 'running' is small while dead row versions are
-- removed promptly, so the planner also used it for the batch's statements that name their jobs
-- by id and state = 'running' (the lock of the rows a batch owns, the completion, the
-- heartbeat): one walk of the index instead of one primary-key probe per job. A transaction
-- left open elsewhere (a report, a backup) keeps every row version written after it began, and
-- the index entry of each: the walk then read every job claimed since it began, in every batch.
-- Measured: a no-op drain of 100,000 jobs with a REPEATABLE READ transaction open beside it,
-- 23,035 jobs/s against 34,675 without (34 million entries of this index read, 340 a job);
-- `EXPLAIN` of the lock of 300 owned rows after 60,000 jobs: 6-9 ms, 1,795 buffers.
--
-- With `locked_until IS NOT NULL` in its predicate (always true of a running job: the table's
-- check constraint) the index can serve only statements that say so: the sweep (its
-- `locked_until < now()` implies it), the worker's release at shutdown and `--drain`'s check,
-- and queue.stats below. The statements by id cannot use it and probe the primary key.
-- Rebuilding it reads queue.jobs once and holds writes to it meanwhile (like 0015 and 0019).
DROP INDEX queue.jobs_lease_idx;
CREATE INDEX jobs_lease_idx ON queue.jobs (locked_until) WHERE state = 'running' AND locked_until IS NOT NULL;

CREATE OR REPLACE VIEW queue.stats AS
SELECT c.queue, c.state, c.jobs,
       CASE c.state
           WHEN 'ready' THEN least(
               (SELECT j.created_at FROM queue.jobs j
                WHERE j.queue = c.queue AND j.state = 'ready' AND j.run_at = j.created_at
                ORDER BY j.run_at LIMIT 1),
               (SELECT min(j.created_at) FROM queue.jobs j
                WHERE j.queue = c.queue AND j.state = 'ready' AND j.run_at <> j.created_at))
           WHEN 'running' THEN (SELECT min(j.created_at) FROM queue.jobs j
                                WHERE j.queue = c.queue AND j.state = 'running' AND j.locked_until IS NOT NULL)
           WHEN 'succeeded' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'succeeded')
           WHEN 'failed' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'failed')
           WHEN 'cancelled' THEN (SELECT min(j.created_at) FROM queue.jobs j WHERE j.queue = c.queue AND j.state = 'cancelled')
       END AS oldest_created_at
FROM queue.job_counts_now c
WHERE c.jobs > 0;
