-- Migration: 20261130110000_credentials
-- Credentials off the log: password hashes live in a write-side table, written in the
-- same transaction as the user's events; events only say that a password was set or
-- changed (UserCreated v2, UserPasswordChanged).
--
-- The hashes of existing users move here, and are scrubbed from the journal and from
-- parked events, so a relay refill never publishes them again. The projector's upcaster
-- (UserCreated v1) drops the field from any copy still read from the broker.

CREATE TABLE eventstore.credentials (
    tenant_id      UUID        NOT NULL,
    user_id        UUID        NOT NULL,
    password_hash  TEXT        NOT NULL,
    changed_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

INSERT INTO eventstore.credentials (tenant_id, user_id, password_hash, changed_at)
SELECT tenant_id, stream_id, envelope->'payload'->>'password_hash', occurred_at
FROM eventstore.events
WHERE stream_type = 'user' AND event_type = 'UserCreated' AND envelope->'payload' ? 'password_hash'
ON CONFLICT DO NOTHING;

UPDATE eventstore.events SET envelope = envelope #- '{payload,password_hash}'
WHERE stream_type = 'user' AND event_type = 'UserCreated' AND envelope->'payload' ? 'password_hash';

UPDATE projector.parked_events SET envelope = envelope #- '{payload,password_hash}'
WHERE event_type = 'UserCreated' AND envelope->'payload' ? 'password_hash';

-- The users read model no longer holds a hash.
ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_before_credentials;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_before_credentials(p_tenant);
    EXECUTE format('ALTER TABLE %I.users DROP COLUMN IF EXISTS password_hash', s);
END
$fn$;

DO $$
DECLARE
    t UUID;
BEGIN
    FOR t IN SELECT id FROM public.tenants LOOP
        PERFORM public.murima_provision_tenant(t);
    END LOOP;
END
$$;
