-- Placing a job reads two index entries, whatever the backlog.
--
-- queue.fair_start (the multi-row insert of `serve` and of JobProducer) and queue.next_fair_seq
-- (the placing trigger, for a producer's raw INSERT) each look up the queue's head and the
-- group's tail with `ORDER BY fair_seq [DESC] LIMIT 1`: one probe of jobs_claim_idx and one of
-- jobs_fair_tail_idx, which hold the rows in that order. With no statistics on queue.jobs yet
-- (a new table, before autovacuum's first analyze, or one analyzed while empty) every index
-- looks free, and the planner served the look-ups (the tail, or both) from jobs_waiting_idx
-- (queue, run_at) instead, sorting its rows: every ready job of the queue read on every insert. Measured on a new
-- cluster, `serve` with `Prefer: respond-async`, 128 connections, no worker running: the two
-- look-ups took 1.4 and 1.8 ms per insert after 10 s and 60,000 ready jobs (3.2 of the
-- insert's 4.5 ms), and the front fell to 1,000-2,400 requests/s as the backlog grew; with
-- 33,000 ready jobs, one call of either function took 15-21 ms, 0.4-0.7 ms with this change.
--
-- Neither query ever needs a sort, so sorting is off inside both functions: the planner then
-- takes the index that returns the rows in order (a sort stays possible, at a penalty, should
-- that index be missing). Same idea as migration 0012's sequential scans.
ALTER FUNCTION queue.fair_start(text, smallint, text) SET enable_sort = off;
ALTER FUNCTION queue.next_fair_seq(text, smallint, text) SET enable_sort = off;
