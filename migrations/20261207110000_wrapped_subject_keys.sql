-- Migration: 20261207110000_wrapped_subject_keys
-- A data subject's key may be stored wrapped by the key-encryption key
-- (MURIMA_SUBJECT_KEK, runtime::subject_keys): 86 bytes (a 24-byte nonce, then the
-- sealed key), or, made without a key-encryption key, the 32 bytes of the key itself.

ALTER TABLE eventstore.subject_keys DROP CONSTRAINT subject_keys_key_check;
ALTER TABLE eventstore.subject_keys
    ADD CONSTRAINT subject_keys_key_length CHECK (key IS NULL OR octet_length(key) IN (32, 86));
