-- Migration: 20261125124000_tasks
-- The seed's tasks table (§2.1.2) as a sixth provisioning step (no foreign keys to cases
-- or users: the write side checks them, and events of different streams may arrive in
-- any order).

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_channels;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_channels(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.tasks (
            id            UUID PRIMARY KEY,
            tenant_id     UUID         NOT NULL REFERENCES public.tenants (id),
            case_id       UUID         NOT NULL,
            title         VARCHAR(255) NOT NULL,
            description   TEXT,
            status        VARCHAR(50)  NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'in_progress', 'done', 'cancelled')),
            priority      VARCHAR(20)  NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
            assigned_to   UUID,
            created_by    UUID         NOT NULL,
            created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
            due_date      TIMESTAMPTZ,
            completed_at  TIMESTAMPTZ,
            metadata      JSONB,
            version       BIGINT       NOT NULL
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_tasks_tenant_id ON %I.tasks (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_tasks_case_id ON %I.tasks (tenant_id, case_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_tasks_status ON %I.tasks (tenant_id, status)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_tasks_assigned_to ON %I.tasks (tenant_id, assigned_to)', s);
    PERFORM public.murima_isolate_table(s, 'tasks');
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
