-- Migration: 20261207120000_case_number_sequences
--
-- A tenant's case numbers come from a sequence of its own (issue 18). The counter row
-- of `eventstore.case_numbers` was locked by every open of the tenant until its append
-- committed, WAL flush included: under load a tenant's opens queued on it (in a 64-client
-- run half of `eventstore.append`'s time was that wait). A sequence hands out numbers
-- without a lock that lasts past the call. Numbers stay unique and rise with the order
-- of allocation; an append that fails after taking its number (two writers of one new
-- stream, an idempotency twin) leaves that number unused.
--
-- The sequence is made on a tenant's first open since this migration, continuing from
-- the counter row: `append` reads it with a row lock, so an append of the old body still
-- counting on it (one in flight while this migration replaces the function) commits
-- first, and two first opens of a tenant take their turns. From then on the sequence is
-- the tenant's counter and the row is not read again: a starting number is set in the
-- row before a tenant's first case, or with `setval` on its sequence after. Making the
-- sequence is serialised per tenant by an advisory lock; a twin that made it first is not
-- an error.

CREATE FUNCTION eventstore.next_case_number(p_tenant UUID, p_start BIGINT) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_sequence TEXT := 'eventstore.case_numbers_' || replace(p_tenant::TEXT, '-', '');
BEGIN
    IF to_regclass(v_sequence) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('murima case numbers ' || p_tenant::TEXT, 0));
        BEGIN
            EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s AS BIGINT START WITH %s', v_sequence,
                           greatest(p_start, 1));
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;
        END;
    END IF;
    RETURN nextval(v_sequence);
END;
$$;

REVOKE ALL ON FUNCTION eventstore.next_case_number FROM PUBLIC;
GRANT EXECUTE ON FUNCTION eventstore.next_case_number TO murima_command;

CREATE OR REPLACE FUNCTION eventstore.append(
    p_tenant          UUID,
    p_stream_type     TEXT,
    p_stream          UUID,
    p_expected        BIGINT,
    p_event_ids       UUID[],
    p_event_types     TEXT[],
    p_schema_versions SMALLINT[],
    p_occurred_at     TIMESTAMPTZ,
    p_envelopes       JSONB[],
    p_case_number     BOOLEAN,     -- allocate the tenant's next case number into the first event
    p_key_tenant      UUID,        -- the idempotency key's scope, NULL: no key
    p_principal       TEXT,
    p_key             TEXT,
    p_request_hash    TEXT,
    p_ttl_secs        DOUBLE PRECISION,
    p_answer          JSONB,       -- the answer to store, without its version and position
    p_notify          BOOLEAN      -- tell the command APIs' caches (channel murima_facts)
) RETURNS TABLE (outcome TEXT, stream_version BIGINT, last_position BIGINT, case_number TEXT,
                 stored_hash TEXT, stored_answer JSONB)
LANGUAGE plpgsql AS $$
DECLARE
    v_current   BIGINT;
    v_position  BIGINT;
    v_number    TEXT;
    v_next      BIGINT;
    v_start     BIGINT;
    v_envelopes JSONB[] := p_envelopes;
    v_stored    eventstore.idempotency%ROWTYPE;
    v_claimed   BOOLEAN;
    n           INT := coalesce(array_length(p_event_ids, 1), 0);
BEGIN
    IF p_key IS NOT NULL THEN
        SELECT * INTO v_stored FROM eventstore.idempotency i
         WHERE i.tenant_id = p_key_tenant AND i.principal = p_principal AND i.key = p_key
           AND i.created_at >= now() - make_interval(secs => p_ttl_secs);
        IF FOUND THEN
            RETURN QUERY SELECT 'replay'::TEXT, NULL::BIGINT, NULL::BIGINT, NULL::TEXT,
                                v_stored.request_hash, v_stored.response;
            RETURN;
        END IF;
    END IF;

    SELECT max(e.stream_version) INTO v_current FROM eventstore.events e
     WHERE e.tenant_id = p_tenant AND e.stream_id = p_stream;
    v_current := coalesce(v_current, 0);
    IF v_current <> p_expected THEN
        RETURN QUERY SELECT 'conflict'::TEXT, v_current, NULL::BIGINT, NULL::TEXT, NULL::TEXT, NULL::JSONB;
        RETURN;
    END IF;

    IF p_case_number AND n > 0 THEN
        IF to_regclass('eventstore.case_numbers_' || replace(p_tenant::TEXT, '-', '')) IS NULL THEN
            -- The tenant's first open since sequences (see above): where its sequence starts.
            INSERT INTO eventstore.case_numbers AS c (tenant_id, last_number) VALUES (p_tenant, 0)
            ON CONFLICT (tenant_id) DO UPDATE SET last_number = c.last_number
            RETURNING c.last_number INTO v_start;
        END IF;
        v_next := eventstore.next_case_number(p_tenant, coalesce(v_start, 0) + 1);
        -- Six digits at least, all of them past 999,999 (lpad would cut them off).
        v_number := 'CASE-' || CASE WHEN v_next < 1000000 THEN lpad(v_next::TEXT, 6, '0') ELSE v_next::TEXT END;
        v_envelopes[1] := jsonb_set(v_envelopes[1], '{payload,case_number}', to_jsonb(v_number));
    END IF;

    IF n > 0 THEN
        WITH appended AS (
            INSERT INTO eventstore.events
                (event_id, tenant_id, stream_type, stream_id, stream_version, event_type, schema_version,
                 occurred_at, envelope)
            SELECT p_event_ids[i], p_tenant, p_stream_type, p_stream, p_expected + i, p_event_types[i],
                   p_schema_versions[i], p_occurred_at, v_envelopes[i]
              FROM generate_series(1, n) AS i
             ORDER BY i
            RETURNING position
        ), queued AS (
            INSERT INTO eventstore.outbox (position) SELECT position FROM appended RETURNING position
        )
        SELECT max(position) INTO v_position FROM queued;
    ELSE
        SELECT max(e.position) INTO v_position FROM eventstore.events e
         WHERE e.tenant_id = p_tenant AND e.stream_id = p_stream;
        v_position := coalesce(v_position, 0);
    END IF;

    IF p_key IS NOT NULL THEN
        -- An expired record not yet purged is replaced; a live one is a twin's that
        -- committed since the look above: this call fails, and the caller answers as it did.
        INSERT INTO eventstore.idempotency AS i (tenant_id, principal, key, request_hash, response)
        VALUES (p_key_tenant, p_principal, p_key, p_request_hash,
                p_answer || jsonb_build_object('version', p_expected + n, 'position_at', v_position))
        ON CONFLICT (tenant_id, principal, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, response = EXCLUDED.response, created_at = now(),
                status = NULL
            WHERE i.created_at < now() - make_interval(secs => p_ttl_secs)
        RETURNING true INTO v_claimed;
        IF v_claimed IS NULL THEN
            RAISE EXCEPTION 'the Idempotency-Key was used by a concurrent twin' USING ERRCODE = 'MU001';
        END IF;
    END IF;

    -- A stream other commands read as a fact (a tenant, a user, a case type...): every
    -- command API drops its cached state when this commits.
    IF p_notify AND n > 0 THEN
        PERFORM pg_notify('murima_facts', p_tenant::TEXT || ' ' || p_stream::TEXT || ' ' || (p_expected + n)::TEXT);
    END IF;

    RETURN QUERY SELECT 'appended'::TEXT, p_expected + n, v_position, v_number, NULL::TEXT, NULL::JSONB;
END;
$$;

