"""A second Kafka client family: confluent-kafka (librdkafka 2.16) talks to the stack as a user's own
producer and consumer would. It produces tickets (and malformed messages) to `tickets.raw` and reads
`triage.decisions` and `tickets.dlq` through the embedded broker; aiokafka is not involved on that side."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from apps.simulator import TicketGenerator
from tests.support.stream_helpers import WorkerProcess, count, ticket_bytes, wait_for
from triage.names import TOPIC_DECISIONS, TOPIC_DLQ, TOPIC_RAW

pytestmark = pytest.mark.integration

BAD = [b"not json at all", json.dumps({"ticket_id": "bad-channel", "channel": "pigeon", "body": "hi",
                                        "received_at": "2026-12-02T10:00:00Z"}).encode(), b"\xff\xfe\x00 bytes"]


def _consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    consumer = confluent_kafka.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"confluent-{topic}-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    # assign, not subscribe: reads every partition from the start with no consumer-group join to wait for
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            out.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return out


def test_confluent_producer_and_consumer_work_with_the_stack(model_db: str, broker: str, tmp_path: Path) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": broker, "enable.idempotence": False, "acks": "all"})
    gen = TicketGenerator(seed=21)
    tickets = [gen.generate().message for _ in range(40)]
    delivered: list[str | None] = []

    def on_delivery(err: Any, msg: Any) -> None:
        delivered.append(None if err is None else str(err))

    worker = WorkerProcess(model_db, broker, tmp_path).start()
    try:
        wait_for(lambda: worker.health().get("partitions"), 90, "the worker to hold its partitions")
        started = time.monotonic()
        for ticket in tickets:
            key, value = ticket_bytes(ticket)
            producer.produce(TOPIC_RAW, key=key, value=value, on_delivery=on_delivery)
        for raw in BAD:
            producer.produce(TOPIC_RAW, value=raw, on_delivery=on_delivery)
        assert producer.flush(30) == 0, "messages left unsent"
        assert delivered == [None] * (len(tickets) + len(BAD)), delivered

        decisions = _consume(broker, TOPIC_DECISIONS, len(tickets))
        took = time.monotonic() - started
        assert {d["ticket_id"] for d in decisions} == {t["ticket_id"] for t in tickets}
        assert all(d["route"] and d["rule_id"] for d in decisions)
        dead = _consume(broker, TOPIC_DLQ, len(BAD))
        assert len(dead) == len(BAD)
        assert all(d["reason"] and d["source_topic"] == TOPIC_RAW for d in dead), dead
        wait_for(lambda: count(model_db, "SELECT count(*) FROM triage.dead_letters") == len(BAD), 30,
                 "the dead letters in Postgres")
        print(f"confluent-kafka: {len(tickets)} decisions read back {took:.1f}s after the first produce")
    finally:
        worker.stop()
