-- Migration: 20261125123000_channels
-- The seed's channels table (§2.1.2) as a fifth provisioning step; names are unique on
-- the write side (eventstore.unique_names, kind 'channel'). Interactions get their
-- month-partitioned table with the read-model issue.

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_case_types;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_case_types(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.channels (
            id             UUID PRIMARY KEY,
            tenant_id      UUID         NOT NULL REFERENCES public.tenants (id),
            name           VARCHAR(255) NOT NULL,
            type           VARCHAR(50)  NOT NULL,
            configuration  JSONB        NOT NULL,
            created_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
            is_active      BOOLEAN      NOT NULL DEFAULT TRUE,
            version        BIGINT       NOT NULL
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_channels_tenant_id ON %I.channels (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_channels_type ON %I.channels (tenant_id, type)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_channels_is_active ON %I.channels (tenant_id, is_active)', s);
    PERFORM public.murima_isolate_table(s, 'channels');
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
