-- Migration: 20261125150000_tenant_constraints
-- The seed's foreign keys (§2.1.2, §3.3.1) and tenant-scoped unique names (§3.3.2) on
-- every tenant schema, the seed's indexes earlier steps had folded into composites, and
-- the indexes of the case list's sort orders, as a twelfth provisioning step.
--
-- They hold because the relay keys messages by tenant: a tenant's events reach the
-- projector in journal order, so a referenced row is always there first, and names are
-- unique at every point of that order (the write side checks them in the same order).
-- Checked immediately, so a violation names its event, which is parked.
-- Added NOT VALID, then validated: rows projected before this step by an older build
-- (when events of one tenant could arrive out of order) cannot fail the migration; a
-- constraint that such rows break stays enforced for new rows and is reported (a
-- rebuild of the tenant's read model then validates it).

-- How far each PostgreSQL projection has applied each tenant's log (journal position),
-- written with the rows: with per-tenant order, "applied up to P" means every write of the
-- tenant up to P is visible, which lets any read wait for a command's position token.
CREATE TABLE projector.tenant_positions (
    projection  TEXT        NOT NULL,
    tenant_id   UUID        NOT NULL,
    position    BIGINT      NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, tenant_id)
);

CREATE FUNCTION public.murima_add_constraint(s TEXT, t TEXT, name TEXT, definition TEXT) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conname = name AND conrelid = format('%I.%I', s, t)::regclass) THEN
        RETURN;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = format('%I.%I', s, t)::regclass) = 'p' THEN
        -- PostgreSQL 15 cannot add a NOT VALID foreign key to a partitioned table.
        BEGIN
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', s, t, name, definition);
        EXCEPTION WHEN foreign_key_violation THEN
            RAISE WARNING 'constraint %.%.% not added, existing rows break it: %', s, t, name, SQLERRM;
        END;
    ELSE
        EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s NOT VALID', s, t, name, definition);
        BEGIN
            EXECUTE format('ALTER TABLE %I.%I VALIDATE CONSTRAINT %I', s, t, name);
        EXCEPTION WHEN foreign_key_violation OR check_violation THEN
            RAISE WARNING 'constraint %.%.% holds for new rows only: %', s, t, name, SQLERRM;
        END;
    END IF;
END
$fn$;

CREATE FUNCTION public.murima_add_unique(s TEXT, t TEXT, name TEXT, columns TEXT) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = name AND conrelid = format('%I.%I', s, t)::regclass) THEN
        BEGIN
            EXECUTE format('ALTER TABLE %I.%I ADD CONSTRAINT %I UNIQUE (%s)', s, t, name, columns);
        EXCEPTION WHEN unique_violation THEN
            RAISE WARNING 'unique constraint %.%.% not added, existing rows repeat a name: %', s, t, name, SQLERRM;
        END;
    END IF;
END
$fn$;

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_statistics;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_statistics(p_tenant);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_status ON %I.cases (tenant_id, status)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_case_type_id ON %I.cases (case_type_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_interactions_tenant_id ON %I.interactions (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_interactions_timestamp ON %I.interactions (timestamp)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_documents_is_deleted ON %I.documents (is_deleted)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_tasks_due_date ON %I.tasks (due_date)', s);
    -- The case list's other orders (query API `sort=`), key for key as the list orders them.
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_updated_order ON %I.cases (updated_at DESC, id DESC)', s);
    EXECUTE format($sql$CREATE INDEX IF NOT EXISTS idx_cases_due_order
                   ON %I.cases ((COALESCE(due_date, 'infinity'::timestamptz)), id)$sql$, s);
    EXECUTE format($sql$CREATE INDEX IF NOT EXISTS idx_cases_priority_order ON %I.cases
                   ((CASE priority WHEN 'urgent' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END) DESC, id DESC)$sql$, s);
    PERFORM public.murima_add_unique(s, 'users', 'users_email_tenant_unique', 'email, tenant_id');
    PERFORM public.murima_add_unique(s, 'teams', 'teams_name_tenant_unique', 'name, tenant_id');
    PERFORM public.murima_add_unique(s, 'case_types', 'case_types_name_tenant_unique', 'name, tenant_id');
    PERFORM public.murima_add_unique(s, 'channels', 'channels_name_tenant_unique', 'name, tenant_id');
    PERFORM public.murima_add_unique(s, 'workflows', 'workflows_name_tenant_unique', 'name, tenant_id');

    PERFORM public.murima_add_constraint(s, 'team_members', 'team_members_team_id_fkey',
        format('FOREIGN KEY (team_id) REFERENCES %I.teams (id) ON DELETE CASCADE', s));
    PERFORM public.murima_add_constraint(s, 'team_members', 'team_members_user_id_fkey',
        format('FOREIGN KEY (user_id) REFERENCES %I.users (id) ON DELETE CASCADE', s));
    PERFORM public.murima_add_constraint(s, 'case_types', 'case_types_workflow_id_fkey',
        format('FOREIGN KEY (workflow_id) REFERENCES %I.workflows (id)', s));
    PERFORM public.murima_add_constraint(s, 'cases', 'cases_case_type_id_fkey',
        format('FOREIGN KEY (case_type_id) REFERENCES %I.case_types (id)', s));
    PERFORM public.murima_add_constraint(s, 'cases', 'cases_created_by_fkey',
        format('FOREIGN KEY (created_by) REFERENCES %I.users (id)', s));
    PERFORM public.murima_add_constraint(s, 'cases', 'cases_assigned_to_fkey',
        format('FOREIGN KEY (assigned_to) REFERENCES %I.users (id)', s));
    PERFORM public.murima_add_constraint(s, 'cases', 'cases_assigned_team_id_fkey',
        format('FOREIGN KEY (assigned_team_id) REFERENCES %I.teams (id)', s));
    PERFORM public.murima_add_constraint(s, 'cases', 'cases_workflow_id_fkey',
        format('FOREIGN KEY (workflow_id) REFERENCES %I.workflows (id)', s));
    PERFORM public.murima_add_constraint(s, 'interactions', 'interactions_tenant_id_fkey',
        'FOREIGN KEY (tenant_id) REFERENCES public.tenants (id)');
    PERFORM public.murima_add_constraint(s, 'interactions', 'interactions_case_id_fkey',
        format('FOREIGN KEY (case_id) REFERENCES %I.cases (id)', s));
    PERFORM public.murima_add_constraint(s, 'interactions', 'interactions_channel_id_fkey',
        format('FOREIGN KEY (channel_id) REFERENCES %I.channels (id)', s));
    PERFORM public.murima_add_constraint(s, 'interactions', 'interactions_user_id_fkey',
        format('FOREIGN KEY (user_id) REFERENCES %I.users (id)', s));
    PERFORM public.murima_add_constraint(s, 'documents', 'documents_case_id_fkey',
        format('FOREIGN KEY (case_id) REFERENCES %I.cases (id)', s));
    PERFORM public.murima_add_constraint(s, 'documents', 'documents_uploaded_by_fkey',
        format('FOREIGN KEY (uploaded_by) REFERENCES %I.users (id)', s));
    PERFORM public.murima_add_constraint(s, 'tasks', 'tasks_case_id_fkey',
        format('FOREIGN KEY (case_id) REFERENCES %I.cases (id)', s));
    PERFORM public.murima_add_constraint(s, 'tasks', 'tasks_assigned_to_fkey',
        format('FOREIGN KEY (assigned_to) REFERENCES %I.users (id)', s));
    PERFORM public.murima_add_constraint(s, 'tasks', 'tasks_created_by_fkey',
        format('FOREIGN KEY (created_by) REFERENCES %I.users (id)', s));
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
