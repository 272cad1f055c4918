-- Migration: 20261125160000_operations
-- What operators see and steer (issue: operators): each projection's progress, the
-- rebuilds in flight or done, and the poison events an operator chose to skip.

-- One row per projection instance (consumer group), written by its worker with every
-- batch: where it is in each partition, how fast it goes, its last error.
CREATE TABLE projector.progress (
    projection      TEXT        PRIMARY KEY,          -- the consumer group
    positions       JSONB       NOT NULL DEFAULT '{}', -- partition -> next offset
    events_applied  BIGINT      NOT NULL DEFAULT 0,
    events_per_sec  DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_position   BIGINT      NOT NULL DEFAULT 0,   -- journal position of the last event applied
    last_event_at   TIMESTAMPTZ,                       -- when that event happened
    last_batch_at   TIMESTAMPTZ,
    last_error      TEXT,
    last_error_at   TIMESTAMPTZ
);

-- A rebuild copies a projection (all tenants, or one) from the journal into scratch-named
-- stores, then switches them in. At most one unfinished rebuild per projection: a second
-- start resumes it (or is refused while its owner runs: a session advisory lock).
CREATE TABLE projector.rebuilds (
    id              UUID        PRIMARY KEY,
    projection      TEXT        NOT NULL,
    tenant_id       UUID,                              -- NULL: every tenant
    state           TEXT        NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'switched', 'abandoned')),
    copies          JSONB       NOT NULL,              -- tenant id -> scratch id
    position        BIGINT      NOT NULL DEFAULT 0,    -- journal position copied up to
    gaps            BIGINT[]    NOT NULL DEFAULT '{}', -- positions skipped while uncommitted
    events_applied  BIGINT      NOT NULL DEFAULT 0,
    target_position BIGINT      NOT NULL DEFAULT 0,    -- the journal head when it started
    deferred_ddl    TEXT[]      NOT NULL DEFAULT '{}', -- remakes the copy's indexes after the bulk load
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ
);
CREATE UNIQUE INDEX idx_rebuilds_one_unfinished ON projector.rebuilds (projection) WHERE state = 'running';

-- Poison events an operator skipped, kept for the record.
CREATE TABLE projector.skipped_events (LIKE projector.parked_events INCLUDING ALL);
ALTER TABLE projector.skipped_events ADD COLUMN skipped_at TIMESTAMPTZ NOT NULL DEFAULT now();
