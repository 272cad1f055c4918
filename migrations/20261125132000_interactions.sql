-- Migration: 20261125132000_interactions
-- The seed's interactions table (§2.1.2), partitioned by month (§5.1.1) as a tenth
-- provisioning step. Partitions are created ahead of time (the current month and the
-- next two, at provisioning and by the projector's hourly maintenance), and on demand
-- before an insert, so an interaction of any month never fails.

-- Creates the month partition of `s`.interactions holding `at`, unless it exists.
CREATE FUNCTION public.murima_interaction_partition(s TEXT, at TIMESTAMPTZ) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    month DATE := date_trunc('month', at AT TIME ZONE 'UTC')::date;
    name TEXT := 'interactions_y' || to_char(month, 'YYYY') || 'm' || to_char(month, 'MM');
BEGIN
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I.%I PARTITION OF %I.interactions FOR VALUES FROM (%L) TO (%L)',
                   s, name, s, month::timestamptz, (month + interval '1 month')::timestamptz);
END
$fn$;

-- The current month and the next two, for one tenant.
CREATE FUNCTION public.murima_interaction_partitions_ahead(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
    i INT;
BEGIN
    FOR i IN 0..2 LOOP
        PERFORM public.murima_interaction_partition(s, now() + make_interval(months => i));
    END LOOP;
END
$fn$;

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_case_teams;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_case_teams(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.interactions (
            id           UUID         NOT NULL,
            tenant_id    UUID         NOT NULL,
            case_id      UUID         NOT NULL,
            channel_id   UUID         NOT NULL,
            user_id      UUID,
            direction    VARCHAR(20)  NOT NULL CHECK (direction IN ('inbound', 'outbound')),
            content      TEXT,
            timestamp    TIMESTAMPTZ  NOT NULL,
            metadata     JSONB,
            external_id  VARCHAR(255),
            tags         TEXT[],
            version      BIGINT       NOT NULL,
            PRIMARY KEY (tenant_id, timestamp, id)
        ) PARTITION BY RANGE (timestamp)$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_interactions_case_id ON %I.interactions (tenant_id, case_id, timestamp)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_interactions_channel_id ON %I.interactions (tenant_id, channel_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_interactions_user_id ON %I.interactions (tenant_id, user_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_interactions_tags ON %I.interactions USING GIN (tags)', s);
    PERFORM public.murima_isolate_table(s, 'interactions');
    PERFORM public.murima_interaction_partitions_ahead(p_tenant);
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
