-- Nothing raw at rest for dead letters: `original` holds the masked text ('utf-8') or a size placeholder
-- ('binary'); the exact bytes, for `triage dlq replay`, are kept Fernet-encrypted in `original_encrypted`
-- until `purge_after` (received_at + TRIAGE_DLQ_RETENTION_DAYS), when the purge sets them NULL and the
-- masked row stays for the audit.
ALTER TABLE triage.dead_letters
    ADD COLUMN original_encrypted bytea,
    ADD COLUMN purge_after        timestamptz,
    ADD COLUMN replayed_at        timestamptz;

ALTER TABLE triage.dead_letters DROP CONSTRAINT dead_letters_encoding_check;

-- Rows stored before this migration hold their original unmasked (text or base64). SQL can neither mask nor
-- encrypt it, so it is withheld: those rows keep their reason and origin, and cannot be replayed.
UPDATE triage.dead_letters
SET original = '[withheld: stored unmasked before migration 0006]',
    encoding = CASE WHEN encoding = 'base64' THEN 'binary' ELSE encoding END;

ALTER TABLE triage.dead_letters ADD CONSTRAINT dead_letters_encoding_check CHECK (encoding IN ('utf-8', 'binary'));

-- What the purge looks for: originals still held.
CREATE INDEX dead_letters_purge_idx ON triage.dead_letters (purge_after) WHERE original_encrypted IS NOT NULL;
