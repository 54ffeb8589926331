"""A small audit trail whose KPIs are computed by hand in test_dbt.py, and the registry rows it needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg.types.json import Jsonb

from triage import db
from triage.taxonomy import bank

HOUR = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MODEL = "triage-classifier"

# ticket, route, channel, intent, abstained, e2e ms, inference ms, version, arm
DECISIONS = [
    ("H1", "auto_resolve", "chat", "refund_request", False, 10.0, 1.0, 1, "champion"),
    ("H2", "auto_resolve", "chat", "refund_request", False, 20.0, 2.0, 1, "champion"),
    ("H3", "draft_for_review", "email", "complaint", False, 30.0, 3.0, 1, "champion"),
    ("H4", "human_queue", "email", None, True, 40.0, 4.0, 1, "champion"),
    ("H5", "escalate", "email", "fraud_report", False, 50.0, 5.0, 1, "champion"),
    ("H6", "auto_resolve", "internal", "card_arrival", False, 60.0, 6.0, 2, "canary"),
]
# event, ticket, kind, intent, route
FEEDBACK = [
    ("FB1", "H1", "confirm", "refund_request", None),
    ("FB2", "H2", "correct", "dispute_charge", None),  # override
    ("FB5", "H5", "escalate", None, "escalate"),  # already escalated: not an override
]
# call, ticket, status, tokens in, tokens out, cost
LLM_CALLS = [
    ("C1", "H3", "ok", 300, 100, "0.002000"),
    ("C2", "H3", "error", 300, 0, "0.001000"),
]
# action, ticket, status
ACTIONS = [("A1", "H1", "delivered"), ("A2", "H2", "delivered"), ("A6", "H6", "failed")]
# console reviews: key, ticket, reviewer, kind, reply, edited, handling ms
REVIEWS = [
    ("R3", "H3", "ana", "confirm", "Thanks, sorted.", False, 120_000),
    ("R4", "H4", "ana", "correct", None, None, 60_000),
    ("R5", "H5", "ben", "escalate", None, None, 240_000),
]
# a drift report overlapping the hour
DRIFT_WINDOW = (HOUR + timedelta(minutes=30), HOUR + timedelta(minutes=90))


def register_models(url: str, versions: dict[int, str]) -> None:
    with db.connect(url) as conn:
        for version, status in versions.items():
            conn.execute(
                "INSERT INTO triage.model_versions (name, version, status, heads, base_model, data_fingerprint, "
                "artifact_path, artifact_sha256, taxonomy) VALUES (%s, %s, %s, %s, 'minilm', 'fp', %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (MODEL, version, status, Jsonb(bank().heads), f"/models/{version}", "0" * 64,
                 Jsonb(bank().to_json())),
            )


def insert_hand_fixture(url: str) -> None:
    with db.connect(url) as conn:
        for i, (tid, route, channel, intent, abstained, e2e, inf, version, arm) in enumerate(DECISIONS):
            at = HOUR + timedelta(minutes=5 * i)
            conn.execute(
                "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name, "
                "model_version, arm, intent, intent_confidence, urgency, urgency_confidence, abstained, prediction, "
                "masked_text, e2e_latency_ms, inference_ms, received_at, decided_at) VALUES "
                "(%s,%s,%s,'r1','v1',%s,%s,%s,%s,0.9,'normal',0.9,%s,'{}','text',%s,%s,%s,%s)",
                (tid, channel, route, MODEL, version, arm, intent, abstained, e2e, inf, at, at),
            )
        for event, tid, kind, intent, route in FEEDBACK:
            conn.execute(
                "INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, route, created_at) "
                "VALUES (%s,%s,%s,%s,%s,%s)",
                (event, tid, kind, intent, route, HOUR + timedelta(minutes=50)),
            )
        for name in sorted({r[2] for r in REVIEWS}):
            conn.execute("INSERT INTO triage.users (name, role) VALUES (%s, 'reviewer')", (name,))
        for key, tid, who, kind, reply, edited, ms in REVIEWS:
            conn.execute(
                "INSERT INTO triage.reviews (review_key, ticket_id, reviewer, kind, intent, reply, reply_edited, "
                "feedback_event_id, handling_ms, created_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (key, tid, who, kind, "card_arrival" if kind == "correct" else None, reply, edited, f"E-{key}", ms,
                 HOUR + timedelta(minutes=55)),
            )
        for call, tid, status, tin, tout, cost in LLM_CALLS:
            conn.execute(
                "INSERT INTO triage.llm_calls (call_id, ticket_id, workflow, provider, model, prompt_id, "
                "prompt_version, temperature, tokens_in, tokens_out, cost_usd, status, request, created_at) "
                "VALUES (%s,%s,'draft','local','smollm2','draft','1',0.2,%s,%s,%s,%s,'{}',%s)",
                (call, tid, tin, tout, cost, status, HOUR + timedelta(minutes=12)),
            )
        for action, tid, status in ACTIONS:
            conn.execute(
                "INSERT INTO triage.actions (action_id, ticket_id, kind, adapter, idempotency_key, payload, status) "
                "VALUES (%s,%s,'reply','email',%s,'{}',%s)",
                (action, tid, f"K-{action}", status),
            )
        conn.execute(
            "INSERT INTO triage.drift_reports (model_name, model_version, window_start, window_end, n_current, "
            "drift_detected, reasons) VALUES (%s, 1, %s, %s, 500, true, '[\"text drift\"]')",
            (MODEL, *DRIFT_WINDOW),
        )
