-- Migration: 20261201090200_denormalised_widths
-- The cases table's denormalised case_type_name and assigned_to_username were 100
-- characters wide while the names they copy (case_types.name, users.username) take
-- 255: a case of a type with a longer name was accepted and then refused by this
-- projection (SQLSTATE 22001). They take what their sources take now; the input
-- contract (`events::contract`) and the test that compares it with these columns keep
-- the two from drifting again.

ALTER FUNCTION public.murima_provision_tenant(UUID) RENAME TO murima_provision_tenant_before_widths;

CREATE FUNCTION public.murima_provision_tenant(p_tenant UUID) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    s TEXT := 'tenant_' || replace(p_tenant::text, '-', '');
BEGIN
    PERFORM public.murima_provision_tenant_before_widths(p_tenant);
    -- Only when still narrow: ALTER TABLE locks the table, and the projector provisions
    -- (idempotently) every tenant it meets after a start.
    IF EXISTS (SELECT FROM information_schema.columns
               WHERE table_schema = s AND table_name = 'cases'
                 AND column_name IN ('case_type_name', 'assigned_to_username')
                 AND character_maximum_length < 255) THEN
        EXECUTE format('ALTER TABLE %I.cases ALTER COLUMN case_type_name TYPE VARCHAR(255),
                                              ALTER COLUMN assigned_to_username TYPE VARCHAR(255)', s);
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
