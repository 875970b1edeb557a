-- crm.phone_key runs for every contact and customer row written (generated columns), and the
-- worker always writes phones in E.164 form. Such a spelling is its own normalization, so one
-- byte-order regex replaces the general normalizer for it (4.0 µs to 2.4 µs a call). Same
-- results for every input (a test compares both on every example).
CREATE OR REPLACE FUNCTION crm.phone_key(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    d text;
BEGIN
    IF raw COLLATE "C" ~ '^\+[1-9][0-9]{6,14}$' THEN
        d := substr(raw, 2);
    ELSE
        d := substr(crm.normalize_phone(raw), 2);
    END IF;
    IF d IS NULL THEN
        RETURN NULL;
    END IF;
    IF length(d) = 12 AND left(d, 2) = '55'
       AND substr(d, 3, 1) COLLATE "C" BETWEEN '1' AND '9'
       AND substr(d, 4, 1) COLLATE "C" BETWEEN '1' AND '9'
       AND substr(d, 5, 1) COLLATE "C" BETWEEN '6' AND '9' THEN
        RETURN left(d, 4) || '9' || substr(d, 5);
    END IF;
    IF length(d) = 13 AND left(d, 3) IN ('521', '549') THEN
        RETURN left(d, 2) || substr(d, 4);
    END IF;
    RETURN d;
END
$$;

-- "The client's oldest customer with that match key" (DOMAIN.md section 4) must be one
-- customer. created_at defaulted to now(), the transaction's start, so the customers a batch
-- created all had the same age and the tie went to the lowest (random) id. Each row's own
-- insertion time settles it: the customer created first is the oldest.
ALTER TABLE crm.customers ALTER COLUMN created_at SET DEFAULT clock_timestamp();
