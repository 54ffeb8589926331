"""Stream fixtures: a small real model (built once by `tests.support.tiny_model` in the ops environment), a
database with it registered as champion, and a broker of the test's own so integration tests do not share topics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.stack.kafka import EmbeddedKafka
from apps.stack.procs import free_port, stop_group
from triage.kafka_admin import ensure_topics
from triage.names import TOPICS
from triage.schemas import ModelVersion

MODEL_NAME = "triage-classifier"


def register_champion(url: str, model_dir: Path, store: Path) -> ModelVersion:
    from ml import registry

    return registry.register(
        url, model_dir, name=MODEL_NAME, status="champion", changed_by="tests", reason="test fixture", models_dir=store
    )


@pytest.fixture()
def model_db(db_url: str, tiny_model: Path, tmp_path: Path) -> str:
    """A fresh migrated database with the tiny model registered as champion (version 1)."""
    register_champion(db_url, tiny_model, tmp_path / "models")
    return db_url


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own (memory-only, starts in about a second), with Triage's topics."""
    b = EmbeddedKafka(free_port(), tmp_path / "kafka.log")
    proc = b.start()
    try:
        ensure_topics(b.bootstrap, TOPICS, 4)
        yield b.bootstrap
    finally:
        stop_group(proc.pid)
