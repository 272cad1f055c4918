-- Migration: 20261206100000_channel_credentials
-- Channel credentials off the log (issue 28, point 5). A configuration key whose
-- lowercase name contains password, passwd, secret, token, api_key, apikey, private_key,
-- credential or access_key (at any depth, arrays included) holds a credential: its value lives here, written in the
-- transaction of the channel's events, and events (ChannelCreated/ChannelUpdated v2)
-- hold only the marker {"set": true, "set_at": ...}. The projector cannot read this table.
--
-- Values recorded before this migration are scrubbed from the journal, parked events and
-- the channels read models, not moved: a channel's credentials entered before it have to
-- be entered again. The projector's upcaster (v1) masks any copy still read from Kafka.

CREATE TABLE eventstore.channel_credentials (
    tenant_id   UUID        NOT NULL,
    channel_id  UUID        NOT NULL,
    -- A JSON pointer into the configuration (`/smtp/password`).
    pointer     TEXT        NOT NULL CHECK (length(pointer) BETWEEN 2 AND 1024),
    value       JSONB       NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel_id, pointer)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.channel_credentials TO murima_command;
REVOKE ALL ON eventstore.channel_credentials FROM murima_projector;

-- The masking of `events::channel::mask_credentials`, for the scrub below.
CREATE FUNCTION pg_temp.murima_mask_credentials(cfg JSONB) RETURNS JSONB
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
    k   TEXT;
    v   JSONB;
    out JSONB := '{}'::jsonb;
BEGIN
    IF jsonb_typeof(cfg) = 'array' THEN
        RETURN (SELECT COALESCE(jsonb_agg(pg_temp.murima_mask_credentials(a.e) ORDER BY a.i), '[]'::jsonb)
                FROM jsonb_array_elements(cfg) WITH ORDINALITY AS a(e, i));
    END IF;
    IF cfg IS NULL OR jsonb_typeof(cfg) <> 'object' THEN
        RETURN cfg;
    END IF;
    FOR k, v IN SELECT key, value FROM jsonb_each(cfg) LOOP
        IF lower(k) ~ '(password|passwd|secret|token|api_key|apikey|private_key|credential|access_key)' THEN
            IF jsonb_typeof(v) = 'null'
               OR (jsonb_typeof(v) = 'object' AND v->'set' = 'true'::jsonb AND (v - 'set' - 'set_at') = '{}'::jsonb) THEN
                out := out || jsonb_build_object(k, v);
            ELSE
                out := out || jsonb_build_object(k, '{"set": true}'::jsonb);
            END IF;
        ELSE
            out := out || jsonb_build_object(k, pg_temp.murima_mask_credentials(v));
        END IF;
    END LOOP;
    RETURN out;
END
$fn$;

UPDATE eventstore.events
SET envelope = jsonb_set(envelope, '{payload,configuration}',
                         pg_temp.murima_mask_credentials(envelope->'payload'->'configuration'))
WHERE stream_type = 'channel' AND event_type = 'ChannelCreated'
  AND envelope->'payload'->'configuration' IS DISTINCT FROM pg_temp.murima_mask_credentials(envelope->'payload'->'configuration');

UPDATE eventstore.events
SET envelope = jsonb_set(jsonb_set(envelope,
        '{payload,configuration,old}', pg_temp.murima_mask_credentials(envelope->'payload'->'configuration'->'old')),
        '{payload,configuration,new}', pg_temp.murima_mask_credentials(envelope->'payload'->'configuration'->'new'))
WHERE stream_type = 'channel' AND event_type = 'ChannelUpdated' AND envelope->'payload' ? 'configuration';

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['projector.parked_events', 'projector.skipped_events'] LOOP
        EXECUTE format($q$
            UPDATE %s SET envelope = jsonb_set(envelope, '{payload,configuration}',
                                               pg_temp.murima_mask_credentials(envelope->'payload'->'configuration'))
            WHERE event_type = 'ChannelCreated' AND envelope->'payload' ? 'configuration'$q$, t);
        EXECUTE format($q$
            UPDATE %s SET envelope = jsonb_set(jsonb_set(envelope,
                '{payload,configuration,old}', pg_temp.murima_mask_credentials(envelope->'payload'->'configuration'->'old')),
                '{payload,configuration,new}', pg_temp.murima_mask_credentials(envelope->'payload'->'configuration'->'new'))
            WHERE event_type = 'ChannelUpdated' AND envelope->'payload' ? 'configuration'$q$, t);
    END LOOP;
END
$$;

DO $$
DECLARE
    s TEXT;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_%' LOOP
        IF to_regclass(format('%I.channels', s)) IS NOT NULL THEN
            EXECUTE format('UPDATE %I.channels SET configuration = pg_temp.murima_mask_credentials(configuration)', s);
        END IF;
    END LOOP;
END
$$;
