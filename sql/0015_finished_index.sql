-- jobs_finished_idx held every job, also the ready and running ones, whose finished_at is NULL:
-- two index entries per job (when it is enqueued, when it is claimed) that nothing reads.
-- Pruning, the failed jobs and the live page's series read finished rows only, by a range of
-- finished_at, which the planner knows implies NOT NULL. Rebuilding it locks writes to
-- queue.jobs while it runs (seconds per million rows).
DROP INDEX queue.jobs_finished_idx;
CREATE INDEX jobs_finished_idx ON queue.jobs (finished_at) WHERE finished_at IS NOT NULL;
