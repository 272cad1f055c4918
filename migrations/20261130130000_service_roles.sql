-- Migration: 20261130130000_service_roles
-- Least privilege: one PostgreSQL login role per service. None is a superuser or
-- bypasses row-level security; passwords are set by whoever deploys (`command-api
-- migrate` sets them from the environment; the local stack trusts 127.0.0.1).
--
-- - murima_command writes the write side (`eventstore`) and nothing else.
-- - murima_projector reads the journal, writes the read models (the tenant schemas it
--   creates and owns, `public.tenants`, `projector`) and may re-queue journal positions
--   (`eventstore.outbox`, an operator's republish).
-- - murima_query reads as murima_reader (row-level security bound to the caller's tenant)
--   and the projection positions it waits on; it sees no credentials (they live in
--   `eventstore`, which it cannot read).

DO $$
DECLARE
    r TEXT;
BEGIN
    FOREACH r IN ARRAY ARRAY['murima_command', 'murima_projector', 'murima_query'] LOOP
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
                EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE', r);
            END IF;
        EXCEPTION
            -- Roles are cluster-wide: migrations of two databases may race to create them.
            WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
END
$$;

-- The write side.
GRANT USAGE ON SCHEMA eventstore TO murima_command;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA eventstore TO murima_command;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA eventstore TO murima_command;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventstore GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO murima_command;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventstore GRANT USAGE, SELECT ON SEQUENCES TO murima_command;

-- The projector.
DO $$
BEGIN
    EXECUTE format('GRANT CREATE, CONNECT ON DATABASE %I TO murima_projector', current_database());
END
$$;
GRANT USAGE ON SCHEMA eventstore TO murima_projector;
GRANT SELECT ON ALL TABLES IN SCHEMA eventstore TO murima_projector;
REVOKE SELECT ON eventstore.credentials FROM murima_projector;
GRANT INSERT ON eventstore.outbox TO murima_projector;
ALTER DEFAULT PRIVILEGES IN SCHEMA eventstore GRANT SELECT ON TABLES TO murima_projector;
GRANT USAGE ON SCHEMA projector TO murima_projector;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA projector TO murima_projector;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA projector TO murima_projector;
ALTER DEFAULT PRIVILEGES IN SCHEMA projector GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO murima_projector;
ALTER DEFAULT PRIVILEGES IN SCHEMA projector GRANT USAGE, SELECT ON SEQUENCES TO murima_projector;
-- (REFERENCES: every tenant table's tenant_id refers to public.tenants.)
GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES ON public.tenants TO murima_projector;

-- Tenant schemas are the projector's: it alters them (policies, partitions, view
-- refreshes, rebuild swaps). Whoever else provisions one (a migration, an operator's
-- rebuild run as an owner) hands it over at once.
CREATE FUNCTION public.murima_give_to_projector(s TEXT) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    o RECORD;
BEGIN
    IF current_user = 'murima_projector' THEN
        RETURN;
    END IF;
    EXECUTE format('ALTER SCHEMA %I OWNER TO murima_projector', s);
    FOR o IN
        SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = s AND c.relkind IN ('r', 'p', 'm', 'v', 'S')
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %I.%I OWNER TO murima_projector',
            CASE o.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'v' THEN 'VIEW'
                           WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, s, o.relname);
    END LOOP;
    FOR o IN
        SELECT p.oid::regprocedure AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = s
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO murima_projector', o.f);
    END LOOP;
END
$fn$;

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_before_roles;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM public.murima_provision_tenant_before_roles(p_tenant);
    PERFORM public.murima_give_to_projector('tenant_' || replace(p_tenant::text, '-', ''));
END
$fn$;

DO $$
DECLARE
    s TEXT;
BEGIN
    FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\_%' LOOP
        PERFORM public.murima_give_to_projector(s);
    END LOOP;
END
$$;

-- The query API. (Memberships are cluster-wide too: a race with another database's
-- migration granting the same one is no failure.)
DO $$
BEGIN
    GRANT murima_reader TO murima_query;
EXCEPTION
    WHEN duplicate_object OR unique_violation OR internal_error THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA projector TO murima_query;
GRANT SELECT ON projector.tenant_positions TO murima_query;
