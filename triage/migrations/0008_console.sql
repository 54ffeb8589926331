-- The review console (apps/console): its people, their API tokens, claims on tickets, and reviews.

-- A person who works the queue. Roles (triage/labels.py ROLES): a reviewer works tickets, a lead also
-- sees everyone's work and the metrics, an admin also manages users. Passwords: argon2id hashes only.
CREATE TABLE triage.users (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role          text NOT NULL CHECK (role IN ('reviewer', 'lead', 'admin')),
    password_hash text,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens for machines (`triage users token NAME`); only their SHA-256 is stored.
CREATE TABLE triage.api_tokens (
    token_sha256 text PRIMARY KEY,
    user_name    text NOT NULL REFERENCES triage.users (name),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);

-- One live claim per ticket: a reviewer holds it until expires_at (TRIAGE_CONSOLE_CLAIM_MINUTES), a
-- release, or a review; an expired claim may be taken by anyone.
CREATE TABLE triage.claims (
    ticket_id  text PRIMARY KEY,
    reviewer   text NOT NULL REFERENCES triage.users (name),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- One row per review action, written once (review_key is the client's idempotency key): what the person
-- did, the feedback event it became on tickets.feedback, and the reply it sent (with the draft it started
-- from, so the edit is a label for drafting). handling_ms: from the claim to the review.
CREATE TABLE triage.reviews (
    review_key        text PRIMARY KEY,
    ticket_id         text NOT NULL,
    reviewer          text NOT NULL REFERENCES triage.users (name),
    kind              text NOT NULL CHECK (kind IN ('confirm', 'correct', 'reroute', 'escalate')),
    intent            text,
    urgency           text,
    route             text CHECK (route IN ('auto_resolve', 'draft_for_review', 'human_queue', 'escalate')),
    reply             text,
    draft             text,
    reply_edited      boolean,
    comment           text NOT NULL DEFAULT '',
    feedback_event_id text NOT NULL UNIQUE,
    reply_action_key  text,
    claimed_at        timestamptz,
    handling_ms       bigint,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reviews_ticket_idx ON triage.reviews (ticket_id);
CREATE INDEX reviews_reviewer_idx ON triage.reviews (reviewer, created_at);
CREATE INDEX work_queue_open_idx ON triage.work_queue (created_at) WHERE status <> 'done';
