"""Session fixtures: a real embedded PostgreSQL and a real Kafka-protocol broker on free ports.

Both are started once per test session in a temporary folder and always stopped at the end.
Tests that need a clean database use `db_url` (a fresh, migrated database per test).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.stack.kafka import EmbeddedKafka
from apps.stack.postgres import EmbeddedPostgres
from apps.stack.procs import free_port, stop_group
from triage import db

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    base = tmp_path_factory.mktemp("pg")
    server = EmbeddedPostgres(base / "data", free_port(), base / "postgres.log")
    server.start()
    try:
        yield server
    finally:
        server.stop(discard=True)


@pytest.fixture(scope="session")
def migrated_db_url(pg_server: EmbeddedPostgres) -> str:
    """One migrated database shared by the whole session (for tests that only read or use unique keys)."""
    db.ensure_database(pg_server.url(), "triage_shared")
    url = pg_server.url("triage_shared")
    db.migrate(url)
    return url


@pytest.fixture()
def db_url(pg_server: EmbeddedPostgres) -> str:
    """A fresh, migrated database for one test."""
    name = f"t_{next(_db_counter)}_{free_port()}"
    db.ensure_database(pg_server.url(), name)
    url = pg_server.url(name)
    db.migrate(url)
    return url


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker (memory-only; topics are created by the code under test)."""
    log: Path = tmp_path_factory.mktemp("kafka") / "kafka.log"
    broker = EmbeddedKafka(free_port(), log)
    proc = broker.start()
    try:
        yield broker.bootstrap
    finally:
        stop_group(proc.pid)


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own (memory-only, starts in about a second), with Triage's topics."""
    from triage.kafka_admin import ensure_topics
    from triage.names import TOPICS

    b = EmbeddedKafka(free_port(), tmp_path / "kafka.log")
    proc = b.start()
    try:
        ensure_topics(b.bootstrap, TOPICS, 4)
        yield b.bootstrap
    finally:
        stop_group(proc.pid)


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """A complete small model folder (ONNX fp32 + int8, tokenizer, label maps) from `tests.support.tiny_model`.

    Building takes 15-60 s on a busy 2-core machine, so it is cached under `.triage/test-cache`,
    keyed by the hash of its sources.
    """
    from tests.support.tiny_model import cached_tiny_model

    return cached_tiny_model()
