-- Operational schema of Triage. Written once per key so at-least-once delivery stays exactly-once in effect.
CREATE SCHEMA IF NOT EXISTS triage;

-- Masked copy of every valid ticket (no raw PII is stored).
CREATE TABLE triage.tickets (
    ticket_id      text PRIMARY KEY,
    channel        text NOT NULL CHECK (channel IN ('email', 'chat', 'internal')),
    customer_ref   text,
    subject_masked text NOT NULL DEFAULT '',
    body_masked    text NOT NULL,
    pii_counts     jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    received_at    timestamptz NOT NULL,
    ingested_at    timestamptz NOT NULL DEFAULT now()
);

-- The audit record: one row per ticket, upserted by ticket id.
CREATE TABLE triage.decisions (
    ticket_id          text PRIMARY KEY,
    channel            text NOT NULL,
    route              text NOT NULL CHECK (route IN ('auto_resolve', 'draft_for_review', 'human_queue', 'escalate')),
    rule_id            text NOT NULL,
    policy_version     text NOT NULL,
    reason             text NOT NULL DEFAULT '',
    model_name         text NOT NULL,
    model_version      integer NOT NULL,
    arm                text NOT NULL DEFAULT 'champion' CHECK (arm IN ('champion', 'canary')),
    intent             text,
    intent_confidence  double precision,
    urgency            text,
    urgency_confidence double precision,
    abstained          boolean NOT NULL DEFAULT false,
    prediction         jsonb NOT NULL,
    challenger         jsonb,
    challenger_mode    text CHECK (challenger_mode IN ('canary', 'shadow')),
    masked_text        text NOT NULL,
    pii_counts         jsonb NOT NULL DEFAULT '{}'::jsonb,
    latency_ms         jsonb NOT NULL DEFAULT '{}'::jsonb,
    e2e_latency_ms     double precision,
    inference_ms       double precision,
    received_at        timestamptz NOT NULL,
    decided_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_decided_at_idx ON triage.decisions (decided_at);
CREATE INDEX decisions_model_idx ON triage.decisions (model_name, model_version);

-- Production labels: one row per feedback event.
CREATE TABLE triage.feedback (
    event_id    text PRIMARY KEY,
    ticket_id   text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('confirm', 'correct', 'reroute', 'escalate')),
    intent      text,
    urgency     text,
    route       text CHECK (route IN ('auto_resolve', 'draft_for_review', 'human_queue', 'escalate')),
    reviewer    text NOT NULL DEFAULT 'unknown',
    comment     text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_ticket_idx ON triage.feedback (ticket_id);
CREATE INDEX feedback_created_at_idx ON triage.feedback (created_at);

-- Model registry.
CREATE TABLE triage.model_versions (
    name             text NOT NULL,
    version          integer NOT NULL CHECK (version >= 1),
    status           text NOT NULL CHECK (status IN ('candidate', 'canary', 'champion', 'retired', 'rejected')),
    heads            jsonb NOT NULL,
    base_model       text NOT NULL,
    data_fingerprint text NOT NULL,
    metrics          jsonb NOT NULL DEFAULT '{}'::jsonb,
    training_args    jsonb NOT NULL DEFAULT '{}'::jsonb,
    artifact_path    text NOT NULL,
    artifact_sha256  text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    changed_by       text NOT NULL DEFAULT 'unknown',
    reason           text NOT NULL DEFAULT '',
    PRIMARY KEY (name, version)
);
-- Exactly one champion per model name, enforced by the database.
CREATE UNIQUE INDEX model_versions_one_champion ON triage.model_versions (name) WHERE status = 'champion';

-- Every status change, with who and why.
CREATE TABLE triage.model_events (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    version     integer NOT NULL,
    from_status text,
    to_status   text NOT NULL,
    changed_by  text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    details     jsonb NOT NULL DEFAULT '{}'::jsonb,
    at          timestamptz NOT NULL DEFAULT now()
);

-- A challenger beside the champion (canary acts on a share, shadow only predicts).
CREATE TABLE triage.deployments (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL,
    champion_version   integer NOT NULL,
    challenger_version integer NOT NULL,
    mode               text NOT NULL CHECK (mode IN ('canary', 'shadow')),
    percent            double precision NOT NULL DEFAULT 0 CHECK (percent >= 0 AND percent <= 100),
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'promoted', 'rolled_back', 'ended')),
    started_at         timestamptz NOT NULL DEFAULT now(),
    ended_at           timestamptz,
    reason             text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX deployments_one_active ON triage.deployments (name) WHERE status = 'active';

-- Every call to a generative model (request text is masked).
CREATE TABLE triage.llm_calls (
    call_id        text PRIMARY KEY,
    ticket_id      text NOT NULL,
    workflow       text NOT NULL,
    provider       text NOT NULL,
    model          text NOT NULL,
    prompt_id      text NOT NULL,
    prompt_version text NOT NULL,
    temperature    double precision NOT NULL,
    tokens_in      integer NOT NULL DEFAULT 0,
    tokens_out     integer NOT NULL DEFAULT 0,
    cost_usd       numeric(14, 6) NOT NULL DEFAULT 0,
    latency_ms     double precision NOT NULL DEFAULT 0,
    finish_reason  text,
    status         text NOT NULL CHECK (status IN ('ok', 'error', 'fallback', 'skipped')),
    error          text,
    request        jsonb NOT NULL,
    response       text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_calls_ticket_idx ON triage.llm_calls (ticket_id);

-- Outbox of effects: one row per idempotency key, delivered by the dispatcher.
CREATE TABLE triage.actions (
    action_id       text PRIMARY KEY,
    ticket_id       text NOT NULL,
    kind            text NOT NULL,
    adapter         text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'parked')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX actions_due_idx ON triage.actions (next_attempt_at) WHERE status IN ('pending', 'failed');

-- Rows the human-queue tool reads (the Postgres work-queue adapter).
CREATE TABLE triage.work_queue (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    ticket_id       text NOT NULL,
    route           text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'done')),
    claimed_by      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Dead letters, also kept in the database so nothing is lost when the DLQ topic is trimmed.
CREATE TABLE triage.dead_letters (
    id           bigserial PRIMARY KEY,
    source_topic text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    reason       text NOT NULL,
    original     text NOT NULL,
    encoding     text NOT NULL CHECK (encoding IN ('utf-8', 'base64')),
    key          text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_topic, partition, "offset")
);

CREATE TABLE triage.drift_reports (
    id             bigserial PRIMARY KEY,
    model_name     text NOT NULL,
    model_version  integer,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    n_current      integer NOT NULL DEFAULT 0,
    metrics        jsonb NOT NULL DEFAULT '{}'::jsonb,
    drift_detected boolean NOT NULL DEFAULT false,
    reasons        jsonb NOT NULL DEFAULT '[]'::jsonb,
    report_path    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_name, window_start, window_end)
);

CREATE TABLE triage.quality_results (
    id          bigserial PRIMARY KEY,
    suite       text NOT NULL,
    run_key     text NOT NULL,
    success     boolean NOT NULL,
    critical_failures jsonb NOT NULL DEFAULT '[]'::jsonb,
    results     jsonb NOT NULL DEFAULT '{}'::jsonb,
    docs_path   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (suite, run_key)
);

-- Spend per workflow and window; limits and usage change in one atomic UPDATE.
CREATE TABLE triage.budgets (
    workflow       text NOT NULL,
    period         text NOT NULL CHECK (period IN ('hour', 'day')),
    window_start   timestamptz NOT NULL,
    token_limit    bigint NOT NULL,
    cost_limit_usd numeric(14, 6) NOT NULL,
    tokens_used    bigint NOT NULL DEFAULT 0,
    cost_used_usd  numeric(14, 6) NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow, period, window_start),
    CHECK (tokens_used <= token_limit AND cost_used_usd <= cost_limit_usd)
);
