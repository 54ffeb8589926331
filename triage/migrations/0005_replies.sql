-- The reply outbox of the embedded stack: a reply or a draft that no mail or ticketing system took
-- (no TRIAGE_WEBHOOK_URL) is delivered here, so every route ends in an effect. The review console
-- shows these rows as sent; a production adapter (the webhook) replaces this table.
CREATE TABLE triage.replies (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    ticket_id       text NOT NULL,
    kind            text NOT NULL,
    channel         text NOT NULL DEFAULT '',
    body            text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'sent' CHECK (status IN ('sent')),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replies_ticket_idx ON triage.replies (ticket_id);
