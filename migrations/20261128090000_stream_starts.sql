-- Migration: 20261128090000_stream_starts
-- One entry per stream (its first event), so "every stream of a kind in a tenant" (the
-- command API folds all custom field definitions before opening a case) costs the number
-- of such streams instead of a scan of the tenant's whole journal.

CREATE INDEX idx_events_stream_starts ON eventstore.events (tenant_id, stream_type, stream_id)
    WHERE stream_version = 1;
