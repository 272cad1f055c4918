-- Migration: 20261125090000_eventstore
-- The write side: an append-only journal (one row per event, unique per stream and
-- version), the outbox the relay drains to Kafka, idempotency records and allocators.

CREATE SCHEMA IF NOT EXISTS eventstore;

CREATE TABLE eventstore.events (
    position        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        UUID        NOT NULL UNIQUE,
    tenant_id       UUID        NOT NULL,
    stream_type     TEXT        NOT NULL,
    stream_id       UUID        NOT NULL,
    stream_version  BIGINT      NOT NULL CHECK (stream_version > 0),
    event_type      TEXT        NOT NULL,
    schema_version  SMALLINT    NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    envelope        JSONB       NOT NULL,
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, stream_version)
);
CREATE INDEX idx_events_tenant_position ON eventstore.events (tenant_id, position);

-- Positions not yet acknowledged by the broker. The relay publishes them in position
-- order and deletes them once delivered; re-publishing = re-inserting positions.
CREATE TABLE eventstore.outbox (
    position BIGINT PRIMARY KEY REFERENCES eventstore.events (position)
);

-- The answer to a command sent with an Idempotency-Key, stored in the command's
-- transaction so a retry gets the same answer and appends nothing.
CREATE TABLE eventstore.idempotency (
    tenant_id     UUID        NOT NULL,
    key           TEXT        NOT NULL,
    request_hash  TEXT        NOT NULL,
    status        SMALLINT    NOT NULL,
    response      JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Human case numbers (CASE-000123), allocated under a row lock per tenant.
CREATE TABLE eventstore.case_numbers (
    tenant_id    UUID   PRIMARY KEY,
    last_number  BIGINT NOT NULL
);

CREATE TABLE eventstore.tenant_slugs (
    slug       TEXT PRIMARY KEY,
    tenant_id  UUID NOT NULL UNIQUE
);

-- What the relay has delivered to the broker since the topic was last (re)filled, so
-- it can tell when a broker lost its log (an in-memory broker restarting empty).
CREATE TABLE eventstore.relay_state (
    topic             TEXT        PRIMARY KEY,
    delivered         BIGINT      NOT NULL DEFAULT 0,
    refills           INTEGER     NOT NULL DEFAULT 0,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
