-- Migration: 20261125110000_users
-- Users: write-side uniqueness of usernames and emails per tenant, and the seed's
-- users table (§2.1.2) in every tenant schema, added as a second provisioning step.

CREATE TABLE eventstore.user_names (
    tenant_id  UUID NOT NULL,
    username   TEXT NOT NULL,
    user_id    UUID NOT NULL,
    PRIMARY KEY (tenant_id, username)
);

CREATE TABLE eventstore.user_emails (
    tenant_id  UUID NOT NULL,
    email      TEXT NOT NULL,
    user_id    UUID NOT NULL,
    PRIMARY KEY (tenant_id, email)
);
CREATE INDEX idx_user_emails_user ON eventstore.user_emails (tenant_id, user_id);

-- Row-level security for one tenant table: only rows of app.current_tenant_id are
-- visible to the reader role. Every provisioning step calls it for its tables.
CREATE FUNCTION public.murima_isolate_table(s TEXT, t TEXT) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', s, t);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %I.%I', s, t);
    EXECUTE format($sql$CREATE POLICY tenant_isolation ON %I.%I
                   USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid)$sql$, s, t);
    EXECUTE format('GRANT SELECT ON %I.%I TO murima_reader', s, t);
END
$fn$;

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_cases;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_cases(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.users (
            id             UUID PRIMARY KEY,
            tenant_id      UUID         NOT NULL REFERENCES public.tenants (id),
            username       VARCHAR(255) NOT NULL,
            email          VARCHAR(255) NOT NULL,
            password_hash  VARCHAR(255) NOT NULL,
            first_name     VARCHAR(255),
            last_name      VARCHAR(255),
            role           VARCHAR(50)  NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
            status         VARCHAR(50)  NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'locked')),
            last_login     TIMESTAMPTZ,
            created_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
            permissions    JSONB,
            preferences    JSONB,
            metadata       JSONB,
            version        BIGINT       NOT NULL,
            CONSTRAINT users_username_unique UNIQUE (username, tenant_id)
        )$sql$, s);
    -- Emails move between users (one changes, another takes the old one) and those
    -- events may arrive in either order: uniqueness is enforced by the write side.
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_users_email ON %I.users (tenant_id, email)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_users_tenant_id ON %I.users (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_users_role ON %I.users (tenant_id, role)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_users_status ON %I.users (tenant_id, status)', s);
    PERFORM public.murima_isolate_table(s, 'users');
END
$fn$;

-- Tenants provisioned before this migration get the new step too.
DO $$
DECLARE
    t UUID;
BEGIN
    FOR t IN SELECT id FROM public.tenants LOOP
        PERFORM public.murima_provision_tenant(t);
    END LOOP;
END
$$;
