-- The journal no longer speaks HTTP (issue 17): an idempotency record keeps what the
-- command recorded (`response`), and the route answers a retry with the status it gives
-- that record. `status` is no longer written; rows written before keep theirs.
ALTER TABLE eventstore.idempotency ALTER COLUMN status DROP NOT NULL;
COMMENT ON COLUMN eventstore.idempotency.status IS
    'unused since 20261202090000: the answer''s status follows from response.events_appended and the route';
