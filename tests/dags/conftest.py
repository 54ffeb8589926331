"""Airflow for DAG tests: a metadata database on the session's embedded PostgreSQL, migrated once.

`airflow_home` sets AIRFLOW_HOME and the AIRFLOW__* variables, then runs `airflow db migrate` in a
subprocess, all before anything imports airflow (Airflow reads its configuration on first import).
So test modules import airflow and the DAG files inside their tests, never at the top. Depend on
`airflow_home` (directly or through `dagbag`) in every test that touches Airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.stack.postgres import EmbeddedPostgres
from triage import db
from triage.settings import PROJECT_ROOT

DAGS_FOLDER = PROJECT_ROOT / "dags"


@pytest.fixture(scope="session")
def airflow_home(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if "airflow" in sys.modules:
        pytest.fail("airflow was imported before the airflow_home fixture configured it; "
                    "import airflow inside tests, not at module top level")
    home = tmp_path_factory.mktemp("airflow_home")
    db.ensure_database(pg_server.url(), "airflow_meta")
    sql_url = pg_server.url("airflow_meta").replace("postgresql://", "postgresql+psycopg://", 1)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sql_url,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        started = time.monotonic()
        proc = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                              capture_output=True, text=True, env=os.environ.copy(), check=False, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"airflow db migrate failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        print(f"airflow db migrate: {time.monotonic() - started:.1f}s")
        yield home


@pytest.fixture(scope="session")
def dagbag(airflow_home: Path) -> Any:
    """A DagBag of dags/ (examples are off through the environment), parsed once per session."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


@pytest.fixture()
def triage_db_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Point Triage's settings at a given database URL (for tasks that call get_settings())."""
    from triage.settings import get_settings

    def point(url: str, **extra: str) -> Path:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("TRIAGE_STATE_DIR", str(tmp_path / "state"))
        for key, value in extra.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return tmp_path / "state"

    yield point
    get_settings.cache_clear()
