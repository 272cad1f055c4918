-- Migration: 20261206170000_webhooks
--
-- Webhooks (issue 20). A subscription is a stream (`webhook`); its signing secret lives
-- off the log, written with the subscription's command, like channel credentials.
CREATE TABLE eventstore.webhook_secrets (
    tenant_id  UUID        NOT NULL,
    webhook_id UUID        NOT NULL,
    secret     TEXT        NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, webhook_id)
);

-- The subscriptions as the projector reads them to match events, and the query API shows
-- them to administrators. Outside the tenant schemas: a rebuild of the relational read
-- model replays into copies, and must neither lose subscriptions nor deliver again.
CREATE TABLE projector.webhooks (
    tenant_id   UUID        NOT NULL,
    id          UUID        NOT NULL,
    url         TEXT        NOT NULL,
    event_types TEXT[]      NOT NULL,
    description TEXT,
    active      BOOLEAN     NOT NULL DEFAULT true,
    deleted     BOOLEAN     NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- One delivery per subscription and event (the key keeps a redelivered, replayed or
-- refilled event from being queued twice), with its attempts: the delivery log, and the
-- dead letters (`status = 'dead'`) of a receiver that kept failing.
CREATE TABLE projector.webhook_deliveries (
    tenant_id       UUID        NOT NULL,
    webhook_id      UUID        NOT NULL,
    event_id        UUID        NOT NULL,
    event_type      TEXT        NOT NULL,
    body            JSONB       NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INT         NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_status     INT,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON projector.webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON projector.webhook_deliveries (tenant_id, webhook_id, created_at DESC, event_id);

-- The projector owns both (it writes every tenant's rows); the query API reads its
-- caller's tenant's rows only.
ALTER TABLE projector.webhooks OWNER TO murima_projector;
ALTER TABLE projector.webhook_deliveries OWNER TO murima_projector;
GRANT USAGE ON SCHEMA projector TO murima_reader;
GRANT SELECT ON projector.webhooks, projector.webhook_deliveries TO murima_reader;
ALTER TABLE projector.webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE projector.webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY reader_own_tenant ON projector.webhooks FOR SELECT TO murima_reader
    USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid);
CREATE POLICY reader_own_tenant ON projector.webhook_deliveries FOR SELECT TO murima_reader
    USING (tenant_id = NULLIF(current_setting('app.current_tenant_id', true), '')::uuid);
