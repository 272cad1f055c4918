-- Migration: 20261201090000_reader_isolation
-- Every read of the query API runs as murima_reader under row-level security, but two
-- relations were outside it:
--   * each tenant's case_statistics materialized view (row-level security does not apply
--     to materialized views), readable by the reader whatever tenant it was bound to;
--   * public.tenants, every tenant's name, slug and settings.
-- The reader now reads the statistics through a security-barrier view that keeps the
-- rows of the tenant it is bound to (through the tenant's case types, which carry the
-- real tenant id in a rebuild's copy too), and public.tenants under a policy: its own
-- tenant's row, or every row in a transaction the query API marks as a platform
-- operator's (`app.platform_reader`).

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_before_reader_isolation;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_before_reader_isolation(p_tenant);
    -- The view once (the projector provisions every tenant it meets after a start, and
    -- replacing a view locks it) ...
    IF NOT EXISTS (SELECT FROM pg_views WHERE schemaname = s AND viewname = 'case_statistics_of_tenant') THEN
        EXECUTE format($sql$
            CREATE VIEW %1$I.case_statistics_of_tenant WITH (security_barrier) AS
            SELECT st.* FROM %1$I.case_statistics st
            WHERE st.case_type_id IN (
                SELECT ct.id FROM %1$I.case_types ct
                WHERE ct.tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)$sql$, s);
        PERFORM public.murima_give_to_projector(s);
    END IF;
    -- ... the grants every time: the earlier steps grant the reader every relation of the
    -- schema (materialized views included) each time they run.
    EXECUTE format('REVOKE ALL ON %I.case_statistics FROM murima_reader', s);
    EXECUTE format('GRANT SELECT ON %I.case_statistics_of_tenant TO murima_reader', s);
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

ALTER TABLE public.tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_own_tenant ON public.tenants FOR SELECT TO murima_reader
    USING (id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid
           OR current_setting('app.platform_reader', true) = 'on');
-- The projector writes every tenant's row (and `verify`, `status` read them).
CREATE POLICY projector_all ON public.tenants TO murima_projector USING (true) WITH CHECK (true);
