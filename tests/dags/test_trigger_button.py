"""The Airflow UI's Trigger button, on a real `airflow standalone` over the session's embedded PostgreSQL.

One Airflow for the module, started as `triage up` starts it (`EmbeddedAirflow`, `airflow_env`). Every DAG but
`rollback_model` (it needs an operator's params) is triggered as the UI does it, `POST .../dagRuns` with
`logical_date: null`, and must end in `success`; a failure shows the failed task's log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from apps.stack.airflow import UNPAUSED_MARK, AirflowAPI, EmbeddedAirflow, airflow_home, dags_line
from apps.stack.postgres import EmbeddedPostgres
from apps.stack.procs import free_port, stop_group
from tests.support.lifecycle import settings_for
from tests.support.seed import seed_window
from triage import db

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SKIP = {"rollback_model"}
RUN_TIMEOUT_S = 300.0


def _airflow_base_env(url: str, airflow_url: str, state_dir: Path, port: int) -> dict[str, str]:
    """The test process's environment without its Airflow and Triage variables (tests/dags/conftest.py sets
    some for `dag.test()`), plus the stack's: Triage's database and state for the tasks, fast DAG parsing."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "TRIAGE_", "PYTEST_")) and k != "DATABASE_URL"}
    sql = airflow_url.replace("postgresql://", "postgresql+psycopg://", 1)
    env.update({
        "DATABASE_URL": url,
        "TRIAGE_STATE_DIR": str(state_dir),
        "TRIAGE_AIRFLOW_PORT": str(port),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": sql,
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    })
    return env


def _seed(url: str, settings: Any, model_dir: Path) -> int:
    """A champion (the tiny model, with its reference sample) and a day of its decisions up to now."""
    from ml import registry

    mv = registry.register(url, model_dir, name=settings.model_name, status="champion", changed_by="test",
                           reason="trigger button test", models_dir=settings.models_dir)
    now = datetime.now(UTC)
    seed_window(url, now - timedelta(hours=24), now - timedelta(hours=1), 200, seed=41, model_version=mv.version)
    seed_window(url, now - timedelta(hours=1), now - timedelta(seconds=5), 250, seed=42, model_version=mv.version)
    return mv.version


@pytest.fixture(scope="module")
def airflow(pg_server: EmbeddedPostgres, tiny_model: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowAPI, EmbeddedAirflow]]:
    base = tmp_path_factory.mktemp("trigger_button")
    name = f"trigger_{free_port()}"
    db.ensure_database(pg_server.url(), name)
    db.ensure_database(pg_server.url(), f"{name}_airflow")
    url = pg_server.url(name)
    db.migrate(url)
    port = free_port()
    settings = settings_for(url, base / "state", airflow_port=str(port))
    _seed(url, settings, tiny_model)
    env = _airflow_base_env(url, pg_server.url(f"{name}_airflow"), settings.state_dir, port)
    flow = EmbeddedAirflow(settings, base / "airflow.log", base_env=env)
    started = time.monotonic()
    try:
        flow.start(timeout=300)
        api = AirflowAPI.for_settings(settings)
        print(f"airflow standalone healthy in {time.monotonic() - started:.0f}s")
        yield api, flow
        api.close()
    finally:
        if flow.proc is not None:
            stop_group(flow.proc.pid)


def _log_line(entry: Any) -> str:
    """One structured log entry as text, with the exception when it carries one."""
    if not isinstance(entry, dict):
        return str(entry)
    errors = [f"{e.get('exc_type')}: {e.get('exc_value')}" for e in entry.get("error_detail") or []]
    return " | ".join([str(entry.get("event", "")), *errors])


def _task_logs(api: AirflowAPI, dag_id: str, run_id: str) -> str:
    """Each failed task's log, through the API as the UI reads it."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    out = []
    for ti in api.get(path)["task_instances"]:
        out.append(f"--- {ti['task_id']}: {ti['state']}")
        if ti["state"] in ("failed", "up_for_retry") and ti["try_number"] > 0:
            log = api.get(f"{path}/{ti['task_id']}/logs/{ti['try_number']}", full_content="true")
            out += [_log_line(c) for c in log["content"]][-60:]
    return "\n".join(out)


def test_dags_are_created_unpaused_and_a_manual_run_of_each_succeeds(airflow) -> None:
    api, flow = airflow
    dags = {d["dag_id"]: d for d in flow.settle_dags(api, timeout=240)}
    assert len(dags) == flow.expected_dags(), f"parsed only {sorted(dags)}"
    assert not [d for d, v in dags.items() if v["is_paused"]], "DAGs were created paused"
    line = dags_line(list(dags.values()), flow.expected_dags())
    print(f"  dags       {line}")
    assert "drift_report (" in line and "on demand: rollback_model" in line and line.endswith("paused: none")

    runs = {}
    for dag_id in sorted(set(dags) - SKIP):
        run = api.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {}})
        assert run["logical_date"] is None and run["run_type"] == "manual"
        runs[dag_id] = run["dag_run_id"]

    deadline, states = time.monotonic() + RUN_TIMEOUT_S, {}
    while time.monotonic() < deadline and len(states) < len(runs):
        for dag_id, run_id in runs.items():
            state = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in ("success", "failed") and dag_id not in states:
                states[dag_id] = state
                print(f"{dag_id}: {state} after {RUN_TIMEOUT_S - (deadline - time.monotonic()):.0f}s")
        time.sleep(3)
    problems = {d: states.get(d, "still running") for d in runs if states.get(d) != "success"}
    details = "\n".join(f"{d}: {s}\n{_task_logs(api, d, runs[d])}" for d, s in problems.items())
    assert not problems, details


def test_paused_dags_of_an_older_stack_are_unpaused_once(airflow) -> None:
    api, flow = airflow
    mark = airflow_home(flow.settings) / UNPAUSED_MARK
    assert mark.is_file()
    api.patch("/api/v2/dags/metrics_rollup", {"is_paused": True})
    mark.unlink()  # as on a stack created before Triage unpaused its DAGs
    assert not {d["dag_id"]: d["is_paused"] for d in flow.settle_dags(api)}["metrics_rollup"]
    assert mark.is_file()
    api.patch("/api/v2/dags/metrics_rollup", {"is_paused": True})  # an operator's pause is kept from now on
    assert {d["dag_id"]: d["is_paused"] for d in flow.settle_dags(api)}["metrics_rollup"]
