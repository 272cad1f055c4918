-- Migration: 20261125125000_documents
-- The seed's documents table (§2.1.2) as a seventh provisioning step (no foreign keys:
-- the write side checks the case and the uploader).

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_tasks;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_tasks(p_tenant);
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS %1$I.documents (
            id            UUID PRIMARY KEY,
            tenant_id     UUID          NOT NULL REFERENCES public.tenants (id),
            case_id       UUID          NOT NULL,
            filename      VARCHAR(255)  NOT NULL,
            mime_type     VARCHAR(100)  NOT NULL,
            size          BIGINT        NOT NULL CHECK (size >= 0),
            storage_path  VARCHAR(1024) NOT NULL,
            uploaded_by   UUID          NOT NULL,
            uploaded_at   TIMESTAMPTZ   NOT NULL DEFAULT now(),
            is_deleted    BOOLEAN       NOT NULL DEFAULT FALSE,
            metadata      JSONB,
            version       BIGINT        NOT NULL
        )$sql$, s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_documents_tenant_id ON %I.documents (tenant_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_documents_case_id ON %I.documents (tenant_id, case_id)', s);
    EXECUTE format('CREATE INDEX IF NOT EXISTS idx_documents_uploaded_by ON %I.documents (tenant_id, uploaded_by)', s);
    PERFORM public.murima_isolate_table(s, 'documents');
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
