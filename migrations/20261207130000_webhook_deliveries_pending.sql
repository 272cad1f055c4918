-- no-transaction
-- Migration: 20261207130000_webhook_deliveries_pending
--
-- The webhook sender takes each tenant's first due deliveries in turn. It ranked every
-- due delivery of every tenant to do so: with one receiver down and 50,000 deliveries
-- queued for it, each claim (every 200 ms) read and sorted all of them twice (80-130 ms).
-- It now finds the tenants with pending deliveries by a skip scan and reads at most its
-- per-tenant share of each along this index. Built concurrently: the table is written by
-- every projector batch and keeps a week of deliveries. (One statement, since
-- CONCURRENTLY refuses a transaction; a build cut short leaves an invalid index that
-- `IF NOT EXISTS` keeps: drop it by hand and start again.)
CREATE INDEX CONCURRENTLY IF NOT EXISTS webhook_deliveries_pending
    ON projector.webhook_deliveries (tenant_id, next_attempt_at) WHERE status = 'pending';
