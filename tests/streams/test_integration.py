"""End to end on the real broker and Postgres, with the worker as a real subprocess."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import pytest

from apps.simulator import MALFORMED, TicketGenerator
from tests.support.stream_helpers import WorkerProcess, count, produce, read_values, rows, ticket_bytes, wait_for
from triage.names import TOPIC_DECISIONS, TOPIC_DLQ, TOPIC_RAW

pytestmark = pytest.mark.integration


def _input(n: int, n_bad: int, seed: int = 7) -> list[tuple[bytes | None, bytes]]:
    gen = TicketGenerator(seed=seed)
    good = [ticket_bytes(gen.generate().message) for _ in range(n)]
    bad = [(None, raw) for raw in itertools.islice(itertools.cycle(MALFORMED), n_bad)]
    mixed: list[tuple[bytes | None, bytes]] = []
    step = max(1, n // max(1, n_bad))
    for i, item in enumerate(good):
        mixed.append(item)
        if i % step == 0 and bad:
            mixed.append(bad.pop())
    mixed.extend(bad)
    return mixed


async def _topic_count(bootstrap: str, topic: str, timeout: float = 10.0) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or set())]
        ends = await asyncio.wait_for(consumer.end_offsets(parts), timeout)
        starts = await asyncio.wait_for(consumer.beginning_offsets(parts), timeout)
        return sum(ends[tp] - starts[tp] for tp in parts)
    finally:
        await consumer.stop()


async def _read_json(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[dict]:
    return [json.loads(v) for v in await read_values(bootstrap, topic, expected, timeout)]


def test_thousand_tickets_fifty_malformed_then_replay(model_db: str, broker: str, tmp_path: Path) -> None:
    messages = _input(1000, 50)
    worker = WorkerProcess(model_db, broker, tmp_path).start()
    try:
        produce(broker, TOPIC_RAW, messages)
        wait_for(lambda: count(model_db, "SELECT count(*) FROM triage.decisions") >= 1000
                 and count(model_db, "SELECT count(*) FROM triage.dead_letters") >= 50,
                 120, "1,000 decisions and 50 dead letters")
        assert count(model_db, "SELECT count(*) FROM triage.decisions") == 1000
        assert count(model_db, "SELECT count(*) FROM triage.dead_letters") == 50
        assert count(model_db, "SELECT count(*) FROM triage.tickets") == 1000
        dead = rows(model_db, "SELECT reason, encoding, original, source_topic FROM triage.dead_letters")
        assert {r[3] for r in dead} == {TOPIC_RAW}
        assert any(r[1] == "binary" and r[2].startswith("<binary: ") for r in dead), "non-UTF-8 bytes: size only"
        assert all(r[0] for r in dead)
        decisions = rows(model_db, "SELECT model_version, rule_id, policy_version, route, prediction, "
                                   "e2e_latency_ms FROM triage.decisions")
        assert {r[0] for r in decisions} == {1}
        assert all(r[1] and r[2] for r in decisions)
        assert all(set(r[4]["heads"]) == {"intent", "urgency"} for r in decisions)
        assert all(len(h["top_k"]) <= 3 for r in decisions for h in r[4]["heads"].values())
        published = asyncio.run(_read_json(broker, TOPIC_DECISIONS, 1000))
        assert len({d["ticket_id"] for d in published}) == 1000
        dlq = asyncio.run(_read_json(broker, TOPIC_DLQ, 50))
        assert len(dlq) == 50 and all(d["reason"] and d["source_topic"] == TOPIC_RAW for d in dlq)
        metrics = worker.metrics()
        assert "triage_stream_decisions_total" in metrics and 'triage_stream_model_version{' in metrics
        assert 'triage_stream_stage_seconds_bucket{le="0.005",stage="classify"}' in metrics
        assert 'triage_stream_dead_letters_total{reason="not json",topic="tickets.raw"}' in metrics
        wait_for(lambda: 'triage_stream_consumer_lag{partition="0",topic="tickets.raw"}' in worker.metrics(), 15,
                 "the consumer lag gauge")
        health = worker.health()
        assert health["joined"] is True and health["status"] == "ok", health
        assert health["model"]["champion"] == {"name": "triage-classifier", "version": 1}

        # Replay: the same input again (as after a crash) decides nothing new and writes no rows.
        before_dlq_rows = count(model_db, "SELECT count(*) FROM triage.dead_letters")
        produce(broker, TOPIC_RAW, messages)
        wait_for(lambda: 'triage_stream_duplicates_total 1000.0' in worker.metrics(), 90,
                 "the replayed tickets to be recognised as duplicates")
        assert count(model_db, "SELECT count(*) FROM triage.decisions") == 1000
        assert count(model_db, "SELECT count(*) FROM triage.tickets") == 1000
        # Replayed malformed messages have new offsets: they are new dead letters, each kept once.
        wait_for(lambda: count(model_db, "SELECT count(*) FROM triage.dead_letters") == before_dlq_rows + 50, 30,
                 "the replayed malformed messages")
    finally:
        worker.stop()
