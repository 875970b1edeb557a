-- The claim and the sweep are index-driven by design (docs/design.md). When the planner's
-- statistics of queue.jobs were taken while the table was empty (autovacuum's ANALYZE after an
-- operator pruned everything, say), their cached plans scan the whole table instead, on every
-- call, ever more slowly as the queue refills: measured, a claim went from under a millisecond
-- to 38 ms reading 40,000 blocks. Sequential scans are therefore off inside them, as in
-- queue.next_fair_seq and queue.fair_start: an index exists for every query they run.
ALTER FUNCTION queue.claim(text, int, text, bigint, bigint, smallint, int) SET enable_seqscan = off;
ALTER FUNCTION queue.sweep(int) SET enable_seqscan = off;
