-- crm.phone_key compared single digits with BETWEEN under the database's collation: with a
-- libc locale such as C.UTF-8 each comparison goes through strcoll, and the function took
-- ~25 µs a call (it runs for every contact, customer and enqueued job). Byte order ("C")
-- gives the same answers for ASCII digits, in ~5 µs. Same results, so stored keys stay valid.
CREATE OR REPLACE FUNCTION crm.phone_key(raw text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    d text := substr(crm.normalize_phone(raw), 2);
BEGIN
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
