-- Migration: 20261125120000_case_types
-- Case types: the seed's case_types table (§2.1.2) as a fourth provisioning step. As
-- with teams, the name is unique on the write side only (eventstore.unique_names).

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_teams;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_teams(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.case_types (
            id                UUID PRIMARY KEY,
            tenant_id         UUID         NOT NULL REFERENCES public.tenants (id),
            name              VARCHAR(255) NOT NULL,
            description       TEXT,
            form_definition   JSONB        NOT NULL,
            validation_rules  JSONB,
            workflow_id       UUID,
            created_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
            is_active         BOOLEAN      NOT NULL DEFAULT TRUE,
            version           BIGINT       NOT NULL
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_case_types_tenant_id ON %I.case_types (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_case_types_is_active ON %I.case_types (tenant_id, is_active)', s);
    PERFORM public.murima_isolate_table(s, 'case_types');
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
