"""The faust agents through `agent.test_context()` (memory transport), with the real Postgres and model.

The outbound topics are replaced by a collecting publisher here; the real broker is covered by the
integration tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from apps.simulator import MALFORMED, TicketGenerator
from streams.app import Worker, create_app
from streams.audit import AuditSink
from streams.models import ModelManager, default_loader
from streams.pipeline import Pipeline
from tests.streams.conftest import MODEL_NAME
from tests.support.stream_helpers import count, rows
from triage.names import TOPIC_DECISIONS, TOPIC_DLQ
from triage.settings import load_settings

pytestmark = pytest.mark.integration  # real Postgres


class Collecting:
    def __init__(self) -> None:
        self.sent: dict[str, list[tuple[bytes | None, bytes]]] = {}

    async def publish(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        self.sent.setdefault(topic, []).extend(items)


async def _worker(db_url: str, tmp_path: Path, publisher: Collecting) -> Worker:
    settings = load_settings({"DATABASE_URL": db_url, "TRIAGE_STATE_DIR": str(tmp_path),
                              "TRIAGE_SERVING_THREADS": "1"})
    models = ModelManager(db_url, MODEL_NAME, default_loader(1))
    assert await models.refresh()
    # The broker is never contacted: test_context feeds the agent directly.
    w = create_app(settings, models=models, sink=AuditSink(db_url), broker="kafka://127.0.0.1:9",
                   publisher=publisher, web_enabled=False)
    w.pipeline.warm_up()  # as the worker does before consuming, so a batch finishes within `_settle`
    return w


async def _settle(w: Worker) -> None:
    """Let the last micro-batch (at most `within` away) finish before the test context stops the agent."""
    await asyncio.sleep(w.settings.batch_within_ms / 1000.0 + 0.5)


def test_ticket_agent_decides_dead_letters_and_skips_duplicates(model_db: str, tmp_path: Path) -> None:
    async def run() -> Collecting:
        pub = Collecting()
        w = await _worker(model_db, tmp_path, pub)
        gen = TicketGenerator(seed=3)
        tickets = [gen.generate().message for _ in range(5)]
        async with w.agents["tickets"].test_context() as agent:
            for t in tickets:
                await agent.put(json.dumps(t).encode(), key=t["ticket_id"].encode())
            for raw in MALFORMED:
                await agent.put(raw)
            await agent.put(json.dumps(tickets[0]).encode())  # a duplicate ticket id
            await _settle(w)
        await w.pipeline.sink.close()
        return pub

    pub = asyncio.run(run())
    assert count(model_db, "SELECT count(*) FROM triage.decisions") == 5
    assert count(model_db, "SELECT count(*) FROM triage.dead_letters") == len(MALFORMED)
    published = [json.loads(v) for _k, v in pub.sent[TOPIC_DECISIONS]]
    # Five decisions; a duplicate in a later batch re-publishes the stored decision (same content).
    assert len({d["ticket_id"] for d in published}) == 5 and len(published) in (5, 6)
    assert len(pub.sent[TOPIC_DLQ]) == len(MALFORMED)
    row = rows(model_db, "SELECT model_name, model_version, arm, rule_id, policy_version, intent, latency_ms "
                         "FROM triage.decisions LIMIT 1")[0]
    assert row[:3] == (MODEL_NAME, 1, "champion") and row[3] and row[4] and row[5]
    assert {"decode", "classify", "inference", "e2e"} <= set(row[6])


def test_feedback_agent_stores_each_event_once_and_dead_letters_bad_ones(db_url: str, tiny_model: Path,
                                                                         tmp_path: Path) -> None:
    from tests.streams.conftest import register_champion

    register_champion(db_url, tiny_model, tmp_path / "models")
    good = {"event_id": "F-1", "ticket_id": "T-1", "kind": "correct", "intent": "card_arrival",
            "urgency": "low", "reviewer": "ana", "created_at": "2026-11-24T08:00:00+00:00"}

    async def run() -> Collecting:
        pub = Collecting()
        w = await _worker(db_url, tmp_path, pub)
        async with w.agents["feedback"].test_context() as agent:
            await agent.put(json.dumps(good).encode())
            await agent.put(json.dumps(good).encode())  # redelivered
            await agent.put(json.dumps({**good, "event_id": "F-2", "intent": "not-an-intent"}).encode())
            await agent.put(b"\x00\x01")
            await _settle(w)
        await w.pipeline.sink.close()
        return pub

    pub = asyncio.run(run())
    assert rows(db_url, "SELECT event_id, kind, intent FROM triage.feedback") == [("F-1", "correct", "card_arrival")]
    reasons = [r[0] for r in rows(db_url, "SELECT reason FROM triage.dead_letters ORDER BY id")]
    assert len(reasons) == 2 and "unknown intent" in reasons[0]
    assert len(pub.sent[TOPIC_DLQ]) == 2


def test_pipeline_stores_nothing_twice_on_replay(model_db: str, tmp_path: Path) -> None:
    from streams.ingest import Source
    from streams.pipeline import RawMessage

    gen = TicketGenerator(seed=9)
    batch = [RawMessage(json.dumps(gen.generate().message).encode(), Source("tickets.raw", 0, i)) for i in range(20)]
    batch.append(RawMessage(b"junk", Source("tickets.raw", 0, 20)))

    async def run() -> tuple[int, int, Collecting]:
        pub = Collecting()
        w = await _worker(model_db, tmp_path, pub)
        p: Pipeline = w.pipeline
        first = await p.process_tickets(batch)
        second = await p.process_tickets(batch)
        await p.sink.close()
        return len(first.decided), second.duplicates, pub

    decided, duplicates, pub = asyncio.run(run())
    assert (decided, duplicates) == (20, 20)
    assert count(model_db, "SELECT count(*) FROM triage.decisions") == 20
    assert count(model_db, "SELECT count(*) FROM triage.dead_letters") == 1
    # The replay re-publishes what was stored the first time (same decided_at), not a new decision.
    sent = [json.loads(v) for _k, v in pub.sent[TOPIC_DECISIONS]]
    assert len(sent) == 40
    first_pass = {d["ticket_id"]: d["decided_at"] for d in sent[:20]}
    assert {d["ticket_id"]: d["decided_at"] for d in sent[20:]} == first_pass
    actions = count(model_db, "SELECT count(*) FROM triage.actions")
    assert actions == sum(1 for d in sent[:20] if d["route"] in ("human_queue", "escalate")), \
        "outbox actions are created once, for the first pass only"


class _Broken:
    heads: dict[str, list[str]] = {"intent": ["a"]}

    def predict(self, texts: list[str]) -> object:
        raise RuntimeError("onnxruntime exploded")


def test_a_batch_that_fails_inside_is_kept_as_dead_letters_not_dropped(model_db: str, tmp_path: Path) -> None:
    from streams.models import LoadedModel, ModelSet

    async def run() -> Collecting:
        pub = Collecting()
        w = await _worker(model_db, tmp_path, pub)
        w.models.current = ModelSet(champion=LoadedModel(MODEL_NAME, 1, _Broken()))
        gen = TicketGenerator(seed=4)
        async with w.agents["tickets"].test_context() as agent:
            for _ in range(3):
                await agent.put(json.dumps(gen.generate().message).encode())
            await _settle(w)
        await w.pipeline.sink.close()
        return pub

    pub = asyncio.run(run())
    assert count(model_db, "SELECT count(*) FROM triage.decisions") == 0
    reasons = [r[0] for r in rows(model_db, "SELECT reason FROM triage.dead_letters")]
    assert len(reasons) == 3 and all("internal error: RuntimeError: onnxruntime exploded" in r for r in reasons)
    assert len(pub.sent[TOPIC_DLQ]) == 3
