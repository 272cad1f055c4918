-- Migration: 20261206180000_sla_timer_revisions
--
-- A timer's revision comes from a sequence: counted per row, it started again at 1 after
-- the scheduler deleted the row, so a scheduler that lost its lock mid-round could match
-- a stale revision against a new mark and delete it. And the grants the SLA timers and
-- webhook secrets need are given by name, not left to the migrating role's default
-- privileges (a different migrating role would make every status change fail).
CREATE SEQUENCE eventstore.sla_timer_revisions;
ALTER TABLE eventstore.sla_timers ALTER COLUMN revision SET DEFAULT nextval('eventstore.sla_timer_revisions');

CREATE OR REPLACE FUNCTION eventstore.mark_sla_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eventstore.sla_timers AS t (tenant_id, stream_id, due_at)
    VALUES (NEW.tenant_id, NEW.stream_id, now())
    ON CONFLICT (tenant_id, stream_id)
    DO UPDATE SET due_at = now(), revision = nextval('eventstore.sla_timer_revisions');
    RETURN NULL;
END;
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.sla_timers TO murima_command;
GRANT USAGE, SELECT ON SEQUENCE eventstore.sla_timer_revisions TO murima_command;
GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.webhook_secrets TO murima_command;
GRANT SELECT ON eventstore.webhook_secrets TO murima_projector;
