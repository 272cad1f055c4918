-- A finished rebuild's leftovers (an abandoned rebuild's copies, a switched one's old
-- copy) are dropped after it is marked finished, when their store answers: NULL here
-- means some may still be there, and the projector's maintenance tries again.
ALTER TABLE projector.rebuilds ADD COLUMN cleaned_at TIMESTAMPTZ;
UPDATE projector.rebuilds SET cleaned_at = finished_at WHERE state <> 'running';
CREATE INDEX idx_rebuilds_to_clean ON projector.rebuilds (projection) WHERE state <> 'running' AND cleaned_at IS NULL;
