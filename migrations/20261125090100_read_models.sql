-- Migration: 20261125090100_read_models
-- The relational read side: the tenant registry, the per-tenant schema (created by
-- murima_provision_tenant when a TenantProvisioned event is projected), the reader
-- role that row-level security applies to, and parked (poison) events.

CREATE TABLE public.tenants (
    id          UUID PRIMARY KEY,
    name        VARCHAR(255) NOT NULL,
    slug        VARCHAR(100) NOT NULL UNIQUE,
    settings    JSONB        NOT NULL DEFAULT '{}',
    status      VARCHAR(20)  NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  TIMESTAMPTZ  NOT NULL,
    updated_at  TIMESTAMPTZ  NOT NULL,
    version     BIGINT       NOT NULL
);

-- The query API reads as this role so row-level security applies (owners bypass it).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'murima_reader') THEN
        CREATE ROLE murima_reader NOLOGIN;
    END IF;
EXCEPTION
    -- Roles are cluster-wide: migrations of two databases may race to create it.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
-- The service's own login must be able to SET ROLE to it (superusers can anyway).
DO $$
BEGIN
    EXECUTE format('GRANT murima_reader TO %I', current_user);
EXCEPTION
    WHEN insufficient_privilege OR invalid_grant_operation THEN NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO murima_reader;
GRANT SELECT ON public.tenants TO murima_reader;

CREATE SCHEMA IF NOT EXISTS projector;

-- Events a projection could not apply, with every later event of the same stream
-- parked behind them so the stream never applies out of order.
CREATE TABLE projector.parked_events (
    projection      TEXT        NOT NULL,
    event_id        UUID        NOT NULL,
    tenant_id       UUID        NOT NULL,
    stream_id       UUID        NOT NULL,
    stream_version  BIGINT      NOT NULL,
    event_type      TEXT        NOT NULL,
    envelope        JSONB       NOT NULL,
    error           TEXT        NOT NULL,
    parked_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);
CREATE INDEX idx_parked_events_stream ON projector.parked_events (projection, stream_id);

-- Creates tenant_<id> with the seed's cases table (§2.1.2), its indexes (§4.1),
-- full-text column (§4.1.5) and the tenant-isolation policy (§2.1.1). Idempotent.
-- FKs to case_types and users arrive with those streams' read models.
CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', s);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.cases (
            id               UUID PRIMARY KEY,
            tenant_id        UUID         NOT NULL REFERENCES public.tenants (id),
            case_number      VARCHAR(50)  NOT NULL,
            title            VARCHAR(255) NOT NULL,
            description      TEXT,
            status           VARCHAR(50)  NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'in_progress', 'pending', 'resolved', 'closed')),
            priority         VARCHAR(20)  NOT NULL DEFAULT 'medium'
                CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
            case_type_id     UUID         NOT NULL,
            workflow_id      UUID,
            current_stage_id UUID,
            created_by       UUID         NOT NULL,
            assigned_to      UUID,
            created_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at       TIMESTAMPTZ  NOT NULL DEFAULT now(),
            due_date         TIMESTAMPTZ,
            custom_fields    JSONB,
            tags             TEXT[],
            metadata         JSONB,
            search_vector    tsvector,
            version          BIGINT       NOT NULL,
            CONSTRAINT cases_case_number_unique UNIQUE (case_number, tenant_id),
            CONSTRAINT cases_due_after_created CHECK (due_date IS NULL OR due_date > created_at)
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_tenant_id ON %I.cases (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_status_priority ON %I.cases (tenant_id, status, priority)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_priority ON %I.cases (priority)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_case_type_status ON %I.cases (tenant_id, case_type_id, status)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_assigned_to ON %I.cases (tenant_id, assigned_to)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_created_at ON %I.cases (tenant_id, created_at)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_created_at_status ON %I.cases (tenant_id, created_at, status)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_due_date ON %I.cases (tenant_id, due_date)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_tags ON %I.cases USING GIN (tags)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_custom_fields ON %I.cases USING GIN (custom_fields)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_custom_fields_customer_id ON %I.cases ((custom_fields->>''customer_id''))', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_search_vector ON %I.cases USING GIN (search_vector)', s);
    -- Keyset pagination of the case list: newest first, id breaks ties.
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_cases_list_order ON %I.cases (created_at DESC, id DESC)', s);

    EXECUTE format($sql$
        CREATE OR REPLACE FUNCTION %1$I.cases_search_vector_update() RETURNS trigger AS $t$
        BEGIN
            NEW.search_vector :=
                setweight(to_tsvector('english', COALESCE(NEW.title, '')), 'A') ||
                setweight(to_tsvector('english', COALESCE(NEW.description, '')), 'B');
            RETURN NEW;
        END
        $t$ LANGUAGE plpgsql$sql$, s);
    EXECUTE format('DROP TRIGGER IF EXISTS cases_search_vector_update ON %I.cases', s);
    EXECUTE format('CREATE TRIGGER cases_search_vector_update BEFORE INSERT OR UPDATE ON %1$I.cases
                    FOR EACH ROW EXECUTE FUNCTION %1$I.cases_search_vector_update()', s);

    EXECUTE format('ALTER TABLE %I.cases ENABLE ROW LEVEL SECURITY', s);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I.cases', s);
    EXECUTE format($sql$CREATE POLICY tenant_isolation ON %I.cases
                   USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)$sql$, s);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO murima_reader', s);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO murima_reader', s);
END
$fn$;
