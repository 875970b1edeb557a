-- The live page's series (docs/operations.md, "The live page"): per bucket of the last
-- minutes, the jobs finished (from queue.finished_per_second) and the 99th percentiles of the
-- latest `sample` jobs finished in it (through jobs_finished_idx). The newest bucket is the
-- current one; `seconds` is the part of it gone by.
--
-- JIT is off for it: the planner's guess for a range of finished_at whose bounds it cannot
-- see is large enough to make PostgreSQL compile the query (about 400 ms), while running it
-- takes a few milliseconds.
CREATE FUNCTION queue.recent_series(bucket_seconds int DEFAULT 20, buckets int DEFAULT 30, sample int DEFAULT 400)
RETURNS TABLE (start timestamptz, seconds float8, finished bigint, sampled bigint, latency_p99 float8, run_p99 float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
    WITH b AS (
        SELECT to_timestamp((floor(extract(epoch FROM now()) / bucket_seconds) - n) * bucket_seconds) AS start
        FROM generate_series(0, buckets - 1) n
    )
    SELECT b.start,
           least(bucket_seconds, greatest(1, extract(epoch FROM now() - b.start)))::float8,
           (SELECT coalesce(sum(f.jobs), 0) FROM queue.finished_per_second f
            WHERE f.second >= b.start AND f.second < b.start + bucket_seconds * interval '1 second')::bigint,
           s.sampled, s.latency_p99, s.run_p99
    FROM b
    CROSS JOIN LATERAL (
        SELECT count(*) AS sampled,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY r.latency) AS latency_p99,
               percentile_disc(0.99) WITHIN GROUP (ORDER BY r.run) AS run_p99
        FROM (
            -- From due (enqueued, or run_at for a retry or a scheduled job) and from claimed.
            SELECT extract(epoch FROM j.finished_at - j.run_at)::float8 AS latency,
                   extract(epoch FROM j.finished_at - j.started_at)::float8 AS run
            FROM queue.jobs j
            WHERE j.finished_at >= b.start AND j.finished_at < b.start + bucket_seconds * interval '1 second'
              AND j.state IN ('succeeded', 'failed') AND j.started_at IS NOT NULL
            ORDER BY j.finished_at DESC LIMIT sample
        ) r
    ) s
    ORDER BY b.start;
$$;

GRANT EXECUTE ON FUNCTION queue.recent_series(int, int, int) TO upsert_worker;
REVOKE EXECUTE ON FUNCTION queue.recent_series(int, int, int) FROM PUBLIC;
