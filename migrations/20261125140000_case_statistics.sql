-- Migration: 20261125140000_case_statistics
-- Completes the cases read model as an eleventh provisioning step:
--   * denormalised case_type_name and assigned_to_username, kept right by the projector
--     when a case type is renamed or a user arrives after the case that names them;
--   * resolved_at, the time of the latest move to resolved or closed (NULL when open);
--   * the seed's case_statistics materialized view (§8.4.1), with the unique index that
--     REFRESH ... CONCURRENTLY needs, refreshed on a schedule by the projector.
-- And the projector's checkpoints, written in the same transaction as the rows they cover.

CREATE TABLE projector.checkpoints (
    projection   TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    partition    INT         NOT NULL,
    next_offset  BIGINT      NOT NULL,
    -- The relay's refill count the offset belongs to (a refilled log restarts at 0).
    epoch        INT         NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_interactions;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_interactions(p_tenant);
    EXECUTE format('ALTER TABLE %I.cases ADD COLUMN IF NOT EXISTS case_type_name VARCHAR(100)', s);
    EXECUTE format('ALTER TABLE %I.cases ADD COLUMN IF NOT EXISTS assigned_to_username VARCHAR(100)', s);
    EXECUTE format('ALTER TABLE %I.cases ADD COLUMN IF NOT EXISTS resolved_at TIMESTAMPTZ', s);
    EXECUTE format($sql$
        CREATE MATERIALIZED VIEW IF NOT EXISTS %1$I.case_statistics AS
        SELECT c.case_type_id,
               ct.name AS case_type_name,
               c.status,
               COUNT(*) AS case_count,
               AVG(EXTRACT(EPOCH FROM (COALESCE(c.resolved_at, NOW()) - c.created_at)) / 3600)::NUMERIC(10,2)
                   AS avg_time_hours
        FROM %1$I.cases c
        JOIN %1$I.case_types ct ON c.case_type_id = ct.id
        WHERE c.created_at >= DATE_TRUNC('month', NOW())
        GROUP BY c.case_type_id, ct.name, c.status$sql$, s);
    EXECUTE format('CREATE UNIQUE INDEX IF NOT EXISTS idx_case_statistics_key ON %I.case_statistics (case_type_id, status)', s);
    EXECUTE format($sql$
        CREATE OR REPLACE FUNCTION %1$I.refresh_case_statistics() RETURNS void AS $r$
        BEGIN
            REFRESH MATERIALIZED VIEW CONCURRENTLY %1$I.case_statistics;
        END
        $r$ LANGUAGE plpgsql$sql$, s);
    EXECUTE format('GRANT SELECT ON %I.case_statistics TO murima_reader', s);
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

-- Rows projected before this step: fill the new columns from what the schema holds.
DO $$
DECLARE
    t UUID;
    s TEXT;
BEGIN
    FOR t IN SELECT id FROM public.tenants LOOP
        s := 'tenant_' || replace(t::text, '-', '');
        EXECUTE format('UPDATE %1$I.cases c SET case_type_name = ct.name FROM %1$I.case_types ct
                        WHERE ct.id = c.case_type_id AND c.case_type_name IS DISTINCT FROM ct.name', s);
        EXECUTE format('UPDATE %1$I.cases c SET assigned_to_username = u.username FROM %1$I.users u
                        WHERE u.id = c.assigned_to AND c.assigned_to_username IS DISTINCT FROM u.username', s);
        EXECUTE format('UPDATE %1$I.cases SET resolved_at = updated_at
                        WHERE status IN (''resolved'', ''closed'') AND resolved_at IS NULL', s);
    END LOOP;
END
$$;
