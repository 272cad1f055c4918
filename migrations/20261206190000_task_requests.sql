-- Migration: 20261206190000_task_requests
--
-- Tasks that workflow actions asked for. A case's `CaseTaskRequested` event names the
-- task's id; the task is a stream of its own, created by the command API's task
-- scheduler (command-api/src/requested_tasks.rs). The journal queues each request here in
-- the transaction that records the event, whichever writer appended it, so none is
-- missed after a crash; the scheduler creates the task (once: a task stream that exists
-- is left alone) and deletes the row.
CREATE TABLE eventstore.task_requests (
    tenant_id    UUID        NOT NULL,
    task_id      UUID        NOT NULL,
    case_id      UUID        NOT NULL,
    -- Who moved the case (the task's created_by); the nil user for the system.
    requested_by UUID        NOT NULL,
    request      JSONB       NOT NULL,
    due_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, task_id)
);
CREATE INDEX task_requests_due ON eventstore.task_requests (due_at);

CREATE FUNCTION eventstore.queue_task_request() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO eventstore.task_requests (tenant_id, task_id, case_id, requested_by, request)
    VALUES (
        NEW.tenant_id,
        (NEW.envelope #>> '{payload,task_id}')::uuid,
        NEW.stream_id,
        COALESCE((NEW.envelope #>> '{actor,user_id}')::uuid, '00000000-0000-0000-0000-000000000000'),
        NEW.envelope -> 'payload'
    )
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

-- Runs as whoever appends (the command API's role, or an owner writing by hand).
CREATE TRIGGER events_queue_task_request AFTER INSERT ON eventstore.events
    FOR EACH ROW WHEN (NEW.event_type = 'CaseTaskRequested')
    EXECUTE FUNCTION eventstore.queue_task_request();

GRANT SELECT, INSERT, UPDATE, DELETE ON eventstore.task_requests TO murima_command;
