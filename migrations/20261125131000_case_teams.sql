-- Migration: 20261125131000_case_teams
-- Cases can be assigned to a team: assigned_team_id on every tenant's cases table (the
-- seed's table has no team column), added as a ninth provisioning step.

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_workflows;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_workflows(p_tenant);
    EXECUTE format('ALTER TABLE %I.cases ADD COLUMN IF NOT EXISTS assigned_team_id UUID', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_assigned_team ON %I.cases (tenant_id, assigned_team_id)', s);
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
