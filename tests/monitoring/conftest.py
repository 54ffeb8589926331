"""Fixtures for monitoring tests: a seeded database shared by a module, and a reference sample."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from triage import db
from triage.stack.postgres import EmbeddedPostgres

_counter = itertools.count()


def fresh_db(pg_server: EmbeddedPostgres, prefix: str) -> str:
    """A new migrated database on the session server (for module-scoped fixtures)."""
    name = f"{prefix}_{next(_counter)}"
    db.ensure_database(pg_server.url(), name)
    url = pg_server.url(name)
    db.migrate(url)
    return url


@pytest.fixture(scope="session")
def reference_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.monitoring.seed import write_reference

    return write_reference(tmp_path_factory.mktemp("model") / "reference.csv")
