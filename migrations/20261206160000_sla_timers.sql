-- Migration: 20261206160000_sla_timers
--
-- When the SLA scheduler (command-api/src/sla.rs) next looks at a case. Kept by the
-- journal itself: an event that may start, stop or restart a case's SLA clocks (its SLA
-- set, a status change) marks the case due now, in the transaction that records it, so
-- no clock is missed whichever writer appended the event. The scheduler decides on the
-- case (`CaseCommand::CheckSla`) and moves `due_at` to the case's next warning or breach,
-- or deletes the row when no clock runs. `revision` lets it do so only if no event marked
-- the case again meanwhile.
CREATE TABLE eventstore.sla_timers (
    tenant_id UUID        NOT NULL,
    stream_id UUID        NOT NULL,
    due_at    TIMESTAMPTZ NOT NULL,
    revision  BIGINT      NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, stream_id)
);
CREATE INDEX sla_timers_due ON eventstore.sla_timers (due_at);

CREATE FUNCTION eventstore.mark_sla_due() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eventstore.sla_timers AS t (tenant_id, stream_id, due_at)
    VALUES (NEW.tenant_id, NEW.stream_id, now())
    ON CONFLICT (tenant_id, stream_id) DO UPDATE SET due_at = now(), revision = t.revision + 1;
    RETURN NULL;
END;
$$;

-- Runs as whoever appends (the command API's role, or an owner writing by hand).
CREATE TRIGGER events_mark_sla_due AFTER INSERT ON eventstore.events
    FOR EACH ROW WHEN (NEW.event_type IN ('CaseSlaSet', 'CaseStatusChanged'))
    EXECUTE FUNCTION eventstore.mark_sla_due();

-- Cases that had SLA targets before the scheduler: each is looked at once.
INSERT INTO eventstore.sla_timers (tenant_id, stream_id, due_at)
SELECT DISTINCT tenant_id, stream_id, now() FROM eventstore.events WHERE event_type = 'CaseSlaSet'
ON CONFLICT DO NOTHING;
