-- A group's next fair place as the calling statement sees the queue.
--
-- queue.next_fair_seq (0008) is volatile so that the placing trigger, called per row, sees the
-- rows its own statement inserted before. A producer that inserts many jobs in one statement
-- can place them itself instead: it asks for each group's start once, in the statement's own
-- snapshot (hence STABLE: none of the statement's new rows, whatever order the plan evaluates
-- it in), and numbers the group's jobs from there. Same rule as next_fair_seq: the later of
-- the queue's head and the group's tail + 1. SECURITY DEFINER: producers may not read jobs.
CREATE FUNCTION queue.fair_start(queue_name text, job_priority smallint, group_key text) RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
DECLARE
    head bigint;
    tail bigint;
BEGIN
    -- plpgsql, not sql: its two plans are kept for the session instead of made on every call.
    SELECT h.fair_seq INTO head FROM queue.jobs h
    WHERE h.queue = queue_name AND h.priority = job_priority AND h.state = 'ready' AND h.hold IS NULL
    ORDER BY h.fair_seq LIMIT 1;
    SELECT t.fair_seq + 1 INTO tail FROM queue.jobs t
    WHERE t.queue = queue_name AND t.priority = job_priority AND t.state = 'ready' AND t.fairness_key = group_key
    ORDER BY t.fair_seq DESC LIMIT 1;
    RETURN greatest(coalesce(head, 0), coalesce(tail, 0));
END
$$;
REVOKE EXECUTE ON FUNCTION queue.fair_start(text, smallint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue.fair_start(text, smallint, text) TO upsert_producer, upsert_worker;
