-- Idempotency keys belong to whoever sent them (issue 28): a record is found by
-- (tenant, principal, key), the principal being `user:<id>` for a login token and
-- `operator:<id>` for an operator's token, so another user of the tenant reusing a key
-- neither gets this answer nor learns that the key exists. Records written before have
-- no principal ('') and so answer nobody; every record expires (MURIMA_IDEMPOTENCY_HOURS,
-- 48 by default): the command API ignores older ones and purges them periodically.
ALTER TABLE eventstore.idempotency ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE eventstore.idempotency DROP CONSTRAINT idempotency_pkey;
ALTER TABLE eventstore.idempotency ADD PRIMARY KEY (tenant_id, principal, key);
CREATE INDEX idx_idempotency_created_at ON eventstore.idempotency (created_at);
-- murima_command already holds SELECT, INSERT, UPDATE and DELETE on every eventstore
-- table (20261130130000_service_roles.sql): the purge is a DELETE, a stale record's
-- replacement an UPDATE.
