-- Migration: 20261130120000_skipped_credentials
-- Skipped events keep their envelopes too: scrub the password hashes of old UserCreated
-- events there as well (20261130110000 did the journal and the parked events).

UPDATE projector.skipped_events SET envelope = envelope #- '{payload,password_hash}'
WHERE event_type = 'UserCreated' AND envelope->'payload' ? 'password_hash';
