-- crm.phone_key runs for every contact, customer and enqueued job. Two changes, same results
-- for every input (a test compares it with the Swift rules on every example), so stored keys
-- stay valid:
-- - single digits were compared with BETWEEN under the database's collation: with a libc
--   locale such as C.UTF-8 each comparison goes through strcoll (~25 µs a call); byte order
--   ("C") gives the same answers for ASCII digits;
-- - an E.164 spelling (all the worker writes) is its own normalization, so one byte-order
--   regex replaces the general normalizer for it. Together: ~2.4 µs a call.
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
