-- The claim's and the sweep's statements are planned once per session, not on every call.
--
-- PL/pgSQL caches a plan per statement, but with parameters PostgreSQL plans each call anew
-- (a "custom" plan) for as long as the generic plan looks costlier, and for the claim it always
-- did: measured with pg_stat_statements over a contact drain, the statement that locks a key
-- head's followers (`j.id = ANY (followers) … FOR UPDATE SKIP LOCKED`) was planned on every one
-- of its 17,148 calls, 46 µs each, more than it took to run, and the candidates' statement on
-- every claim. Every statement of these functions is an index probe by design (migration 0012
-- turns sequential scans off inside them), so the generic plan is the plan they should have.
ALTER FUNCTION queue.claim(text, int, text, bigint, bigint, smallint, int) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION queue.sweep(int) SET plan_cache_mode = force_generic_plan;
