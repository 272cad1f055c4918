-- no-transaction
-- Migration: 20261207130100_webhook_deliveries_due_dropped
--
-- The index on the due time alone is read by nothing since the sender's claim reads
-- `webhook_deliveries_pending` (previous migration); dropped without blocking the writers.
DROP INDEX CONCURRENTLY IF EXISTS projector.webhook_deliveries_due;
