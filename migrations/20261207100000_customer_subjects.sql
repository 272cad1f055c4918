-- Migration: 20261207100000_customer_subjects
-- Customers as data subjects (events::personal): a case may name the customer it is
-- about (`customer_id`, the id in the tenant's own records). Their data in the case and
-- in its interactions is sealed with their key in the journal; the read models keep
-- the customer's id beside it, so that erasing the customer (DataSubjectErased) finds
-- every row to replace with the marker, and an export finds every row to return.

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_before_customers;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_before_customers(p_tenant);
    -- Only when missing: ALTER TABLE locks the table, and the projector provisions
    -- (idempotently) every tenant it meets after a start.
    IF NOT EXISTS (SELECT FROM information_schema.columns
                   WHERE table_schema = s AND table_name = 'cases' AND column_name = 'customer_id') THEN
        EXECUTE format('ALTER TABLE %I.cases ADD COLUMN customer_id UUID', s);
        EXECUTE format('CREATE INDEX idx_cases_customer ON %I.cases (customer_id) WHERE customer_id IS NOT NULL', s);
    END IF;
    IF NOT EXISTS (SELECT FROM information_schema.columns
                   WHERE table_schema = s AND table_name = 'interactions' AND column_name = 'customer_id') THEN
        EXECUTE format('ALTER TABLE %I.interactions ADD COLUMN customer_id UUID', s);
        EXECUTE format('CREATE INDEX idx_interactions_customer ON %I.interactions (customer_id)
                        WHERE customer_id IS NOT NULL', s);
    END IF;
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
