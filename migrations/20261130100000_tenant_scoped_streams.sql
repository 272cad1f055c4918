-- Migration: 20261130100000_tenant_scoped_streams
-- A stream is identified by (tenant, id) (issue 14 point 5): an id used in one tenant is
-- free in every other, so no answer of the write side can tell one tenant that another
-- uses an id. The journal's version uniqueness becomes per tenant and stream.
--
-- Safe on a journal with data: every row set unique per (stream_id, stream_version) is
-- also unique per (tenant_id, stream_id, stream_version), so the new index always
-- builds. It is built first and the old constraint dropped after, in this migration's
-- transaction, so no moment lacks a uniqueness guard. Writes wait while the index
-- builds (it reads the journal once).

CREATE UNIQUE INDEX events_tenant_stream_version_unique
    ON eventstore.events (tenant_id, stream_id, stream_version);
ALTER TABLE eventstore.events
    ADD CONSTRAINT events_tenant_stream_version_unique UNIQUE USING INDEX events_tenant_stream_version_unique;
ALTER TABLE eventstore.events DROP CONSTRAINT events_stream_version_unique;

-- Parked events are looked up per projection and stream, now with the tenant as well:
-- the id alone may name streams of several tenants.
DROP INDEX IF EXISTS projector.idx_parked_events_stream;
CREATE INDEX idx_parked_events_stream ON projector.parked_events (projection, stream_id, tenant_id);
