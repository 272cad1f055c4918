-- Migration: 20261207090000_subject_keys
--
-- The data subjects' keys (events::personal, DESIGN.md guarantee 12). Personal fields of
-- events are sealed with their subject's key before they reach the journal, so the
-- journal, the outbox, Kafka and every parked copy hold only ciphertext. Erasing a
-- subject sets `key` to NULL and stamps `erased_at`: the row stays as the mark that the
-- subject was erased (every reader then shows a marker, and nothing new is sealed for
-- them), and no backup of the journal can bring the data back once the key's backups
-- have aged out.
CREATE TABLE eventstore.subject_keys (
    tenant_id  UUID        NOT NULL,
    subject_id UUID        NOT NULL,
    key        BYTEA       CHECK (key IS NULL OR octet_length(key) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    erased_at  TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, subject_id),
    CONSTRAINT subject_keys_erased_have_no_key CHECK ((key IS NULL) = (erased_at IS NOT NULL))
);

-- Never DELETE: a deleted mark would let a new key be made for an erased subject (the
-- schema's default privileges grant it; it is taken back here).
GRANT SELECT, INSERT, UPDATE ON eventstore.subject_keys TO murima_command;
REVOKE DELETE, TRUNCATE ON eventstore.subject_keys FROM murima_command;
GRANT SELECT ON eventstore.subject_keys TO murima_projector;
