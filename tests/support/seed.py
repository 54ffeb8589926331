"""Seeded audit-trail rows for monitoring tests: decisions, feedback, LLM calls and actions.

Built from the simulator's labelled tickets so that text, intents and the drift mode are the real ones;
the "model" is the truth with some noise, PII is masked as the stream does (triage.pii).
"""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

from psycopg.types.json import Jsonb

from apps.simulator import TicketGenerator
from triage import db
from triage.labels import ROUTES
from triage.pii import mask
from triage.taxonomy import bank

INTENTS = bank().intent_names

MODEL = "triage-classifier"


def write_reference(path: Path, n: int = 800, seed: int = 101) -> Path:
    """A champion training sample as the classifier writes it (text, intent, urgency)."""
    gen = TicketGenerator(seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "intent", "urgency"])
        for t in gen.stream(n):
            writer.writerow([t.text, t.intent, t.urgency])
    return path


def seed_window(url: str, start: datetime, end: datetime, n: int, *, seed: int, drift: bool = False,
                model_version: int = 1, feedback_rate: float = 0.3, canary_share: float = 0.0) -> int:
    """Insert `n` decisions spread over [start, end) plus their feedback, LLM calls and actions."""
    gen = TicketGenerator(seed=seed, drift_after=0 if drift else None)
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    with db.connect(url) as conn, conn.cursor() as cur:
        for i in range(n):
            t = gen.generate()
            decided = start + timedelta(seconds=span * (i + 0.5) / n)
            intent = t.intent if rng.random() < 0.9 else rng.choice(INTENTS)
            conf = min(0.999, max(0.05, rng.betavariate(8, 2) - (0.15 if drift else 0.0)))
            abstained = conf < 0.35
            route = "human_queue" if abstained else rng.choice(ROUTES)
            text = mask(t.text).text
            tid = f"{t.message['ticket_id']}-{seed}"
            arm = "canary" if rng.random() < canary_share else "champion"
            cur.execute(
                "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name, "
                "model_version, arm, intent, intent_confidence, urgency, urgency_confidence, abstained, prediction, "
                "masked_text, latency_ms, e2e_latency_ms, inference_ms, received_at, decided_at) VALUES "
                "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (tid, t.message["channel"], route, f"r-{route}", "v1", MODEL,
                 model_version + (1 if arm == "canary" else 0), arm, intent, conf, t.urgency,
                 min(0.999, conf + 0.05), abstained, Jsonb({}), text, Jsonb({}), rng.uniform(20, 200),
                 rng.uniform(3, 30), decided - timedelta(milliseconds=100), decided),
            )
            if rng.random() < feedback_rate:
                cur.execute(
                    "INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, created_at) "
                    "VALUES (%s,%s,%s,%s,%s,%s)",
                    (f"F-{tid}", tid, "confirm" if intent == t.intent else "correct", t.intent, t.urgency,
                     decided + timedelta(minutes=5)),
                )
            if route == "draft_for_review":
                tokens_in, tokens_out = rng.randint(200, 600), rng.randint(50, 200)
                cur.execute(
                    "INSERT INTO triage.llm_calls (call_id, ticket_id, workflow, provider, model, prompt_id, "
                    "prompt_version, temperature, tokens_in, tokens_out, cost_usd, latency_ms, status, request, "
                    "created_at) VALUES (%s,%s,'draft','local','smollm2','draft','1',0.2,%s,%s,%s,%s,'ok',%s,%s)",
                    (f"L-{tid}", tid, tokens_in, tokens_out, round((tokens_in + 2 * tokens_out) * 1e-6, 6),
                     rng.uniform(100, 900), Jsonb({}), decided),
                )
            if route == "auto_resolve":
                cur.execute(
                    "INSERT INTO triage.actions (action_id, ticket_id, kind, adapter, idempotency_key, payload, "
                    "status, created_at, updated_at) VALUES (%s,%s,'reply','email',%s,%s,%s,%s,%s)",
                    (f"A-{tid}", tid, f"K-{tid}", Jsonb({}), "delivered" if rng.random() < 0.9 else "failed",
                     decided, decided),
                )
        conn.commit()
    return n
