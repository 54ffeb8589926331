"""Produce JSON lines from stdin to a topic with confluent-kafka (librdkafka): a client no one here wrote.

    .venv-stream/bin/python -m tests.support.confluent_produce BOOTSTRAP TOPIC [--key FIELD] < events.jsonl

Prints the number of messages delivered; exits 1 if any delivery failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    import confluent_kafka

    p = argparse.ArgumentParser(prog="python -m tests.support.confluent_produce")
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("--key", default=None, help="field of each object used as the message key")
    a = p.parse_args(argv)
    producer = confluent_kafka.Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": False, "acks": "all"})
    errors: list[str] = []
    sent = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    for line in sys.stdin:
        if not line.strip():
            continue
        obj = json.loads(line)
        key = str(obj[a.key]).encode() if a.key else None
        producer.produce(a.topic, key=key, value=line.strip().encode(), on_delivery=on_delivery)
        sent += 1
    left = producer.flush(30)
    print(json.dumps({"sent": sent, "unsent": left, "errors": errors[:3]}))
    return 1 if errors or left else 0


if __name__ == "__main__":
    sys.exit(main())
