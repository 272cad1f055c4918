-- Migration: 20261128090200_relay_state_delivered
-- The relay's count of deliveries was what its old lost-log check compared with the
-- broker's watermarks; the check now keeps the watermarks themselves (relay_offsets) and
-- nothing reads the count any more.

ALTER TABLE eventstore.relay_state DROP COLUMN delivered;
