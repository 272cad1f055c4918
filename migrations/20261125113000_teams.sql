-- Migration: 20261125113000_teams
-- Teams: the seed's teams and team_members tables (§2.1.2) as a third provisioning
-- step. Events of different streams reach the projector in any order, so the read model
-- holds no constraint that spans streams: team names are unique on the write side
-- (eventstore.unique_names, kind 'team') and team_members has no foreign keys.

-- Names unique per tenant among the streams of one kind (teams, case types, channels,
-- templates, workflows, custom fields); a rename frees the stream's old name.
CREATE TABLE eventstore.unique_names (
    tenant_id  UUID NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    stream_id  UUID NOT NULL,
    PRIMARY KEY (tenant_id, kind, name)
);
CREATE INDEX idx_unique_names_stream ON eventstore.unique_names (tenant_id, kind, stream_id);

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_users;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_users(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.teams (
            id           UUID PRIMARY KEY,
            tenant_id    UUID         NOT NULL REFERENCES public.tenants (id),
            name         VARCHAR(255) NOT NULL,
            description  TEXT,
            created_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
            updated_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
            metadata     JSONB,
            version      BIGINT       NOT NULL
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_teams_tenant_id ON %I.teams (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_teams_name ON %I.teams (tenant_id, name)', s);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.team_members (
            team_id    UUID        NOT NULL,
            user_id    UUID        NOT NULL,
            tenant_id  UUID        NOT NULL,
            role       VARCHAR(50) NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'lead')),
            joined_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (team_id, user_id)
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_team_members_user_id ON %I.team_members (user_id)', s);
    PERFORM public.murima_isolate_table(s, 'teams');
    PERFORM public.murima_isolate_table(s, 'team_members');
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
