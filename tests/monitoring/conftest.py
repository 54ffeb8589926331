"""Fixtures for monitoring tests: a seeded database shared by a module, and a reference sample."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from apps.stack.postgres import EmbeddedPostgres
from triage import db

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
    from tests.support.seed import write_reference

    return write_reference(tmp_path_factory.mktemp("model") / "reference.csv")


@pytest.fixture(scope="session")
def marts_db(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Any]:
    """One database with the hand fixture and two simulated days, `dbt build` run once (dbt is slow).

    Returns (url, dbt target folder, the build's DbtResult).
    """
    from monitoring import rollup
    from tests.support import fixtures
    from tests.support.seed import seed_window

    url = fresh_db(pg_server, "marts")
    fixtures.register_models(url, {1: "champion", 2: "canary"})
    fixtures.insert_hand_fixture(url)
    day2 = fixtures.HOUR.replace(hour=0) + timedelta(days=1)
    seed_window(url, day2, day2 + timedelta(days=1), 240, seed=5, canary_share=0.2)
    seed_window(url, day2 + timedelta(days=1), day2 + timedelta(days=2), 240, seed=6, canary_share=0.2, drift=True)
    target = tmp_path_factory.mktemp("dbt_target")
    return url, target, rollup.build(url, target_path=target)
