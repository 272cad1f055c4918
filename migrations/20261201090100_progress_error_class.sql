-- Migration: 20261201090100_progress_error_class
-- What `status` shows of a projection's failures: the class of the last one (transient:
-- retried; deterministic: its stream parked) and since when it has been retrying
-- (NULL once a batch applies again).
ALTER TABLE projector.progress
    ADD COLUMN last_error_class TEXT CHECK (last_error_class IN ('transient', 'deterministic')),
    ADD COLUMN retrying_since   TIMESTAMPTZ;
