-- Fair claiming (queue, generic). Three internal columns, filled at enqueue, so that the claim
-- stays one index scan:
--   fairness_key  the group a job is fair among (an organization); by default its client_id,
--                 '' for none. Domain triggers may fill it first (their names sort before
--                 jobs_queue_place).
--   fair_seq      the job's place in its (queue, priority): a virtual start time. A new job
--                 starts at the later of the queue's head (the smallest fair_seq claimable now)
--                 and its group's tail + 1. Claiming in fair_seq order therefore takes turns
--                 between groups: a group's backlog of a million jobs occupies a million
--                 places, one per turn, while a group with nothing waiting starts at the head.
--   hold          why a ready job is not claimable yet: 'scheduled' (run_at in the future,
--                 or a retry's backoff) or 'ordering' (an earlier job of its ordering key is
--                 unfinished). Held jobs are out of the claim index, so a claim never walks
--                 them; the claim and the worker's sweeper release them when their time comes.
ALTER TABLE queue.jobs ADD COLUMN fairness_key text NOT NULL DEFAULT '';
ALTER TABLE queue.jobs ADD COLUMN fair_seq bigint;
ALTER TABLE queue.jobs ADD COLUMN hold text CHECK (hold IN ('scheduled', 'ordering'));

UPDATE queue.jobs SET fairness_key = client_id::text WHERE client_id IS NOT NULL;
UPDATE queue.jobs SET fair_seq = id;
UPDATE queue.jobs SET hold = 'scheduled' WHERE state = 'ready' AND run_at > now();
ALTER TABLE queue.jobs ALTER COLUMN fair_seq SET NOT NULL;

DROP INDEX queue.jobs_claim_idx;
-- The claim: claimable jobs in (priority, fair_seq) order.
CREATE INDEX jobs_claim_idx ON queue.jobs (queue, priority, fair_seq, id) WHERE state = 'ready' AND hold IS NULL;
-- A group's tail, for placing its next job.
CREATE INDEX jobs_fair_tail_idx ON queue.jobs (queue, priority, fairness_key, fair_seq) WHERE state = 'ready';
-- Held jobs, found by the sweeper without scanning the rest.
CREATE INDEX jobs_scheduled_idx ON queue.jobs (run_at) WHERE state = 'ready' AND hold = 'scheduled';
CREATE INDEX jobs_held_idx ON queue.jobs (ordering_key, id) WHERE state = 'ready' AND hold = 'ordering';

-- The next place in (queue, priority) for a job of `group_key`.
-- Volatile on purpose: called per row while a statement inserts many, it must see the rows
-- that statement inserted before (a stable function would place them all at one place).
-- SECURITY DEFINER: producers insert jobs but may not read them. Both queries are index
-- probes; with statistics taken while the table was empty (an analyze between two imports)
-- the planner would scan the rows a COPY inserts so far, once per row, so it is told not to.
CREATE FUNCTION queue.next_fair_seq(queue_name text, job_priority smallint, group_key text) RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET enable_seqscan = off AS $$
    SELECT greatest(
        coalesce((SELECT h.fair_seq FROM queue.jobs h
                  WHERE h.queue = queue_name AND h.priority = job_priority AND h.state = 'ready' AND h.hold IS NULL
                  ORDER BY h.fair_seq LIMIT 1), 0),
        coalesce((SELECT t.fair_seq + 1 FROM queue.jobs t
                  WHERE t.queue = queue_name AND t.priority = job_priority AND t.state = 'ready'
                    AND t.fairness_key = group_key
                  ORDER BY t.fair_seq DESC LIMIT 1), 0))
$$;

-- Places a new job: its fairness key (the client by default), its place, and a hold when it
-- is not due yet. Producers that COPY many jobs set fairness_key and fair_seq themselves.
CREATE FUNCTION queue.place_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.fairness_key = '' AND NEW.client_id IS NOT NULL THEN
        NEW.fairness_key := NEW.client_id::text;
    END IF;
    IF NEW.fair_seq IS NULL THEN
        NEW.fair_seq := queue.next_fair_seq(NEW.queue, NEW.priority, NEW.fairness_key);
    END IF;
    IF NEW.state = 'ready' AND NEW.run_at > now() AND NEW.hold IS NULL THEN
        NEW.hold := 'scheduled';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_queue_place
    BEFORE INSERT ON queue.jobs
    FOR EACH ROW
    WHEN (NEW.fair_seq IS NULL OR NEW.run_at > now())
    EXECUTE FUNCTION queue.place_job();

-- Claims up to `max_jobs` jobs of one queue for `worker`, in (priority, fair_seq, id) order.
--
-- A candidate whose ordering key has an earlier unfinished job is not run: when that earlier
-- job is ready and free, it is claimed instead, with its followers (priority inheritance: a
-- live event never waits for a bulk job of the same person to come round); when it is
-- running, the candidate is held ('ordering') and leaves the claim's path until that job
-- finishes. A claimed key head takes its following ready jobs of the key along, in id order,
-- while room is left, so one person's backlog drains a batch at a time (the worker runs a
-- batch's jobs of one key in id order). A batch holds one priority: urgent jobs never wait in
-- a batch full of bulk ones, so a live event costs a small batch of its own. When the batch is
-- full of the most urgent priority, up to a tenth of it goes to less urgent jobs that have
-- waited longer than `aging_ms`, so that bulk work is never starved by a steady live stream.
-- `urgent` is true when less urgent work was waiting too: the worker then lets its other
-- slots skip this priority (`after_priority`) while this batch runs, so that a live stream is
-- served by one slot in small batches and the others keep draining the backlog in big ones.
CREATE FUNCTION queue.claim(
    queue_name text, max_jobs int, worker text, lease_ms bigint, aging_ms bigint DEFAULT NULL,
    after_priority smallint DEFAULT NULL, urgent_fill int DEFAULT NULL)
RETURNS TABLE (id bigint, queue text, kind text, payload jsonb, client_id uuid, attempts int, max_attempts int,
               ordering_key text, fairness_key text, priority smallint, created_at timestamptz, urgent boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    take bigint[] := '{}';
    held bigint[];
    room int := max_jobs;
    candidates bigint[];
    keys text[];
    heads bigint[];
    nexts bigint[];
    top smallint;
    bottom smallint;
    level smallint;
    priorities smallint[];
    cut int;
    pressing boolean := false;
    aged bigint[];
    round int := 0;
    i int;
    h record;
    f bigint;
    followers bigint[];
    free bigint[];
BEGIN
    -- A claim need not wait for its commit to reach the disk: if the server crashes first, the
    -- claim is lost and its jobs are simply ready again, as they were; the batch that works
    -- them commits synchronously, flushing the claim with it. One flush per batch, not two.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Rounds: a round that holds candidates (their key is busy) scans again past them, so a
    -- hot key at the head of the queue is set aside within a few rounds, not walked by every
    -- claim. At most four rounds.
    LOOP
        round := round + 1;
        held := '{}';
        aged := '{}';
        -- Candidates in fair order, each with the first two unfinished jobs of its key (the
        -- head and the next one): one index probe each. Most are their key's head with
        -- nothing after.
        SELECT array_agg(c.id ORDER BY c.priority, c.fair_seq, c.id),
               array_agg(c.ordering_key ORDER BY c.priority, c.fair_seq, c.id),
               array_agg(k.ids[1] ORDER BY c.priority, c.fair_seq, c.id),
               array_agg(k.ids[2] ORDER BY c.priority, c.fair_seq, c.id),
               array_agg(c.priority ORDER BY c.priority, c.fair_seq, c.id),
               min(c.priority), max(c.priority)
        INTO candidates, keys, heads, nexts, priorities, top, bottom
        FROM (SELECT j.id, j.ordering_key, j.priority, j.fair_seq FROM queue.jobs j
              WHERE j.queue = queue_name AND j.state = 'ready' AND j.hold IS NULL AND j.run_at <= now()
                AND NOT j.id = ANY (take) AND (level IS NULL OR j.priority = level)
                AND (after_priority IS NULL OR j.priority > after_priority)
              ORDER BY j.priority, j.fair_seq, j.id
              LIMIT room
              FOR UPDATE SKIP LOCKED) c
        LEFT JOIN LATERAL (
            SELECT array_agg(e.id ORDER BY e.id) AS ids
            FROM (SELECT e.id FROM queue.jobs e
                  WHERE c.ordering_key IS NOT NULL AND e.ordering_key = c.ordering_key
                    AND e.state IN ('ready', 'running')
                  ORDER BY e.id LIMIT 2) e) k ON true;
        EXIT WHEN candidates IS NULL;
        -- One priority per batch: the most urgent one found.
        level := coalesce(level, top);
        IF bottom > level THEN
            -- Urgent jobs with less urgent work waiting: a small batch of the urgent ones,
            -- topped up with the next less urgent jobs to `urgent_fill`, so that its fixed
            -- cost is shared without making the urgent jobs wait for a big batch.
            pressing := true;
            SELECT min(p.o) INTO cut FROM unnest(priorities) WITH ORDINALITY AS p(v, o) WHERE p.v > level;
            cut := greatest(cut, least(coalesce(urgent_fill, 0), cardinality(candidates)) + 1);
            candidates := candidates[1:cut - 1];
            keys := keys[1:cut - 1];
            heads := heads[1:cut - 1];
            nexts := nexts[1:cut - 1];
            room := least(room, cut - 1);
            top := level;
            bottom := level;
        END IF;

        -- Aging: a full round of one priority lends up to a tenth of its room to older, less
        -- urgent work.
        IF round = 1 AND aging_ms IS NOT NULL AND cardinality(candidates) = room AND top = bottom AND room >= 2 THEN
            SELECT coalesce(array_agg(a.id ORDER BY a.priority, a.fair_seq, a.id), '{}') INTO aged
            FROM (SELECT j.id, j.priority, j.fair_seq, j.run_at FROM queue.jobs j
                  WHERE j.queue = queue_name AND j.state = 'ready' AND j.hold IS NULL AND j.priority > top
                  ORDER BY j.priority, j.fair_seq, j.id
                  LIMIT greatest(1, room / 10)
                  FOR UPDATE SKIP LOCKED) a
            WHERE a.run_at < now() - aging_ms * interval '1 millisecond';
        END IF;
        IF cardinality(aged) > 0 THEN
            -- Aged jobs go through the same ordering rules, ahead of the rest.
            SELECT array_agg(a.id ORDER BY a.ord), array_agg(a.ordering_key ORDER BY a.ord),
                   array_agg(k.ids[1] ORDER BY a.ord), array_agg(k.ids[2] ORDER BY a.ord)
            INTO candidates, keys, heads, nexts
            FROM (SELECT x.id, x.ord, j.ordering_key
                  FROM unnest(aged || candidates[1:room - cardinality(aged)]) WITH ORDINALITY AS x(id, ord)
                  JOIN queue.jobs j ON j.id = x.id) a
            LEFT JOIN LATERAL (
                SELECT array_agg(e.id ORDER BY e.id) AS ids
                FROM (SELECT e.id FROM queue.jobs e
                      WHERE a.ordering_key IS NOT NULL AND e.ordering_key = a.ordering_key
                        AND e.state IN ('ready', 'running')
                      ORDER BY e.id LIMIT 2) e) k ON true;
        END IF;

        FOR i IN 1 .. cardinality(candidates) LOOP
            EXIT WHEN room = 0;
            CONTINUE WHEN candidates[i] = ANY (take);
            IF keys[i] IS NULL OR (heads[i] = candidates[i] AND nexts[i] IS NULL) THEN
                -- The common case: no other unfinished job of its key.
                take := take || candidates[i];
                room := room - 1;
                CONTINUE;
            END IF;
            -- The key's head: the candidate itself, or an earlier job.
            SELECT j.id, j.state, j.hold, j.run_at INTO h FROM queue.jobs j WHERE j.id = heads[i];
            IF h.id IS NULL OR h.id = ANY (take)
               OR h.id <> candidates[i] AND (h.state <> 'ready' OR h.run_at > now() OR h.hold = 'scheduled')
            THEN
                -- The key is busy (its head runs, waits for its time, or was taken by this
                -- claim already): every later ready job of it leaves the claim's path at once,
                -- not one claim at a time.
                UPDATE queue.jobs j SET hold = 'ordering'
                WHERE j.id IN (SELECT b.id FROM queue.jobs b
                               WHERE b.ordering_key = keys[i] AND b.state = 'ready' AND b.hold IS NULL
                                 AND b.id > heads[i] AND NOT b.id = ANY (take)
                               FOR UPDATE SKIP LOCKED);
                held := held || candidates[i];
                CONTINUE;
            END IF;
            IF h.id <> candidates[i] THEN
                PERFORM 1 FROM queue.jobs j WHERE j.id = h.id AND j.state = 'ready' FOR UPDATE SKIP LOCKED;
                IF NOT FOUND THEN
                    held := held || candidates[i];  -- another claim is taking the head right now
                    CONTINUE;
                END IF;
                IF pressing THEN
                    room := room + 1;  -- an urgent batch keeps its urgent job's place for it
                END IF;
            END IF;
            take := take || h.id;
            room := room - 1;
            -- Its followers, in id order, while they are ready, due and free: found in one
            -- probe, locked in one statement, kept up to the first that was not. At most an
            -- eighth of the batch, unless nothing else is waiting: one person's backlog
            -- drains fast, and leaves the rest of every batch to everyone else.
            IF room > 0 THEN
                SELECT coalesce(array_agg(x.id ORDER BY x.id), '{}') INTO followers
                FROM (SELECT j.id, bool_and(j.state = 'ready' AND j.hold IS DISTINCT FROM 'scheduled' AND j.run_at <= now())
                                       OVER (ORDER BY j.id) AS due
                      FROM queue.jobs j
                      WHERE j.ordering_key = keys[i] AND j.state IN ('ready', 'running') AND j.id > h.id
                      ORDER BY j.id LIMIT least(room, greatest(max_jobs / 8, room - (cardinality(candidates) - i), 1))) x
                WHERE x.due;
                SELECT coalesce(array_agg(l.id), '{}') INTO free
                FROM (SELECT j.id FROM queue.jobs j WHERE j.id = ANY (followers) AND j.state = 'ready'
                      FOR UPDATE SKIP LOCKED) l;
                FOREACH f IN ARRAY followers LOOP
                    EXIT WHEN NOT f = ANY (free);
                    take := take || f;
                    room := room - 1;
                END LOOP;
            END IF;
            IF NOT candidates[i] = ANY (take) THEN
                held := held || candidates[i];
            END IF;
        END LOOP;

        IF cardinality(held) > 0 THEN
            UPDATE queue.jobs SET hold = 'ordering' WHERE id = ANY (held) AND NOT id = ANY (take) AND state = 'ready';
        END IF;
        EXIT WHEN room = 0 OR cardinality(held) = 0 OR round >= 4;
    END LOOP;

    RETURN QUERY
    UPDATE queue.jobs j
    SET state = 'running',
        hold = NULL,
        attempts = j.attempts + 1,
        locked_by = worker,
        locked_until = now() + lease_ms * interval '1 millisecond',
        started_at = clock_timestamp()
    WHERE j.id = ANY (take)
    RETURNING j.id, j.queue, j.kind, j.payload, j.client_id, j.attempts, j.max_attempts, j.ordering_key,
              j.fairness_key, j.priority, j.created_at, pressing;
END
$$;

-- The worker's sweeper, run every poll interval by one worker at a time: scheduled jobs that
-- came due become claimable again (placed anew, like new jobs, so that a burst of them takes
-- turns with everyone else), and held jobs whose key has no earlier unfinished job are
-- released (a backstop: finishing a job releases its follower directly, but a job held in the
-- same moment its predecessor finished, or an operator's cancel, needs this). Returns how many
-- jobs it released.
CREATE FUNCTION queue.sweep(max_jobs int DEFAULT 1000) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    released int := 0;
    changed int;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('queue.sweep', 0)) THEN
        RETURN 0;
    END IF;
    WITH due AS (
        SELECT j.id, j.queue, j.priority, j.fairness_key,
               row_number() OVER (PARTITION BY j.queue, j.priority, j.fairness_key ORDER BY j.run_at, j.id) AS rank
        FROM (SELECT id, queue, priority, fairness_key, run_at FROM queue.jobs
              WHERE state = 'ready' AND hold = 'scheduled' AND run_at <= now()
              ORDER BY run_at LIMIT max_jobs FOR UPDATE SKIP LOCKED) j
    ), placed AS (
        SELECT d.id, queue.next_fair_seq(d.queue, d.priority, d.fairness_key) + d.rank - 1 AS seq
        FROM due d
    )
    UPDATE queue.jobs j SET hold = NULL, fair_seq = p.seq FROM placed p WHERE j.id = p.id;
    GET DIAGNOSTICS changed = ROW_COUNT;
    released := released + changed;

    WITH RECURSIVE heads (ordering_key, id, depth) AS (
        (SELECT ordering_key, id, 1 FROM queue.jobs
         WHERE state = 'ready' AND hold = 'ordering' ORDER BY ordering_key, id LIMIT 1)
        UNION ALL
        SELECT nx.ordering_key, nx.id, h.depth + 1 FROM heads h
        CROSS JOIN LATERAL (SELECT ordering_key, id FROM queue.jobs
                            WHERE state = 'ready' AND hold = 'ordering' AND ordering_key > h.ordering_key
                            ORDER BY ordering_key, id LIMIT 1) nx
        WHERE h.depth < max_jobs
    )
    UPDATE queue.jobs j SET hold = NULL
    FROM heads h
    WHERE j.id = h.id AND j.state = 'ready' AND j.hold = 'ordering'
      AND NOT EXISTS (SELECT 1 FROM queue.jobs e
                      WHERE e.ordering_key = h.ordering_key AND e.id < h.id AND e.state IN ('ready', 'running'));
    GET DIAGNOSTICS changed = ROW_COUNT;
    released := released + changed;
    IF released > 0 THEN
        PERFORM pg_notify('queue_jobs', '');
    END IF;
    RETURN released;
END
$$;

REVOKE EXECUTE ON FUNCTION queue.next_fair_seq(text, smallint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION queue.next_fair_seq(text, smallint, text) TO upsert_producer, upsert_worker;
GRANT EXECUTE ON FUNCTION queue.claim(text, int, text, bigint, bigint, smallint, int), queue.sweep(int) TO upsert_worker;
