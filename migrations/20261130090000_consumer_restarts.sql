-- Migration: 20261130090000_consumer_restarts
-- Workers replace a consumer that stalls, loses its broker or meets a gap in the log
-- (issue: crash safety); operators see how often and why in `status`. Verify results
-- are kept so the last one can be read back and exported as metrics.

ALTER TABLE projector.progress
    ADD COLUMN restarts            BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN last_restart_at     TIMESTAMPTZ,
    ADD COLUMN last_restart_reason TEXT;

-- The last `verify` of each projection instance (consumer group): what it found and
-- what its repair left. The projector exports these as gauges on /metrics.
CREATE TABLE projector.verifications (
    projection       TEXT        PRIMARY KEY,
    ran_at           TIMESTAMPTZ NOT NULL,
    missing          BIGINT      NOT NULL,
    stale            BIGINT      NOT NULL,
    extra            BIGINT      NOT NULL,
    repaired_streams BIGINT      NOT NULL,
    unrepaired       BIGINT      NOT NULL
);
