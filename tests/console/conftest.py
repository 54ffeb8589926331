"""The review console served for real: uvicorn on a free port, the embedded PostgreSQL and broker, users.

`seed_queue` writes what the worker's outbox leaves for people (decisions and work_queue rows) from
simulator tickets whose planted PII went through the real masking, so a test can check that no page or
API answer ever shows a planted value.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb

from apps.simulator import TicketGenerator
from apps.stack.procs import free_port
from triage import db
from triage.kafka_admin import ensure_topics
from triage.names import TOPICS
from triage.pii import mask
from triage.settings import load_settings

PASSWORD = "correct horse battery"


@dataclass
class Seeded:
    ticket_ids: list[str]
    planted: list[str] = field(default_factory=list)  # raw PII values that must never be shown


def seed_queue(url: str, n: int = 6, seed: int = 3) -> Seeded:
    """n queued tickets (draft_for_review with a draft, human_queue, escalate in turn), PII masked as the worker
    does."""
    gen = TicketGenerator(seed=seed, pii_rate=1.0)
    routes = ("draft_for_review", "human_queue", "escalate")
    out = Seeded([])
    now = datetime.now(UTC)
    with db.connect(url) as conn:
        for i in range(n):
            t = gen.generate()
            out.planted += [v for values in t.pii.values() for v in values]
            masked = mask(t.text).text
            tid = f"{t.message['ticket_id']}-{uuid.uuid4().hex[:6]}"  # unique on the session's shared broker
            route = routes[i % 3]
            conf = round(0.55 + 0.07 * i, 2)
            heads = {"intent": {"label": t.intent, "confidence": conf, "abstained": False,
                                "top_k": [{"label": t.intent, "score": conf}]},
                     "urgency": {"label": t.urgency, "confidence": 0.8, "abstained": False,
                                 "top_k": [{"label": t.urgency, "score": 0.8}]}}
            decided = now - timedelta(minutes=10 * (n - i))
            conn.execute(
                "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, reason, model_name,"
                " model_version, intent, intent_confidence, urgency, abstained, prediction, masked_text, received_at,"
                " decided_at) VALUES (%s, %s, %s, 'r-test', '2026.12.1', 'test rule', 'triage-classifier', 1, %s, %s,"
                " %s, false, %s, %s, %s, %s)",
                (tid, t.message["channel"], route, t.intent, conf, t.urgency,
                 Jsonb({"model_name": "triage-classifier", "model_version": 1, "heads": heads}), masked, decided,
                 decided))
            draft = ({"text": "Hello, thanks for writing. We are looking into it. <PERSON_1>", "source": "template",
                      "prompt_id": "default", "prompt_version": "1", "llm_call_id": None, "fallback_reason": None}
                     if route == "draft_for_review" else None)
            payload = {"ticket_id": tid, "channel": t.message["channel"], "route": route, "decided_route": route,
                       "rule_id": "r-test", "policy_version": "2026.12.1", "reason": "test rule", "intent": t.intent,
                       "intent_confidence": conf, "urgency": t.urgency, "model": "triage-classifier:1",
                       "masked_text": masked, "text_withheld": None, "draft": draft, "decided_at": decided.isoformat()}
            kind = {"draft_for_review": "review", "human_queue": "human", "escalate": "escalate"}[route]
            conn.execute("INSERT INTO triage.work_queue (idempotency_key, ticket_id, route, payload) "
                         "VALUES (%s, %s, %s, %s)", (f"{tid}:{kind}:work_queue", tid, route, Jsonb(payload)))
            out.ticket_ids.append(tid)
    return out


@dataclass
class ConsoleServer:
    base: str
    url: str  # database
    bootstrap: str
    settings: Any

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, follow_redirects=False)

    def login(self, name: str, password: str = PASSWORD) -> httpx.Client:
        """A browser-like client: the login form with its CSRF token, then the session cookie."""
        c = self.client()
        page = c.get("/login")
        token = c.cookies["csrftoken"]
        assert f'value="{token}"' in page.text
        r = c.post("/login", data={"name": name, "password": password, "next": "/", "csrftoken": token})
        assert r.status_code == 303, r.text
        c.headers["x-csrftoken"] = token
        return c


@pytest.fixture()
def console(db_url: str, kafka: str, tmp_path: Path) -> Iterator[ConsoleServer]:
    import uvicorn

    from apps.console.app import create_app
    from apps.console.users import add_user

    ensure_topics(kafka, TOPICS, 1)
    state = tmp_path / "state"
    settings = load_settings({"DATABASE_URL": db_url, "KAFKA_BOOTSTRAP_SERVERS": kafka, "TRIAGE_STATE_DIR": str(state)})
    for name, role in (("ana", "reviewer"), ("ben", "reviewer"), ("lea", "lead")):
        add_user(db_url, name, role, PASSWORD)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the console did not start"
        time.sleep(0.05)
    try:
        yield ConsoleServer(f"http://127.0.0.1:{port}", db_url, kafka, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
