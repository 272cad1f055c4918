-- Migration: 20261125130000_workflows
-- The seed's workflows table (§2.1.2) as an eighth provisioning step, plus the initial
-- stage; names are unique on the write side (eventstore.unique_names, kind 'workflow').

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_documents;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_documents(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.workflows (
            id                UUID PRIMARY KEY,
            tenant_id         UUID         NOT NULL REFERENCES public.tenants (id),
            name              VARCHAR(255) NOT NULL,
            description       TEXT,
            active            BOOLEAN      NOT NULL DEFAULT TRUE,
            created_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
            stages            JSONB        NOT NULL,
            transitions       JSONB        NOT NULL,
            actions           JSONB,
            sla_definitions   JSONB,
            initial_stage_id  UUID         NOT NULL,
            version           BIGINT       NOT NULL
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_workflows_tenant_id ON %I.workflows (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_workflows_active ON %I.workflows (tenant_id, active)', s);
    PERFORM public.murima_isolate_table(s, 'workflows');
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
