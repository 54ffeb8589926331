"""`dag.test()` runs of drift_report and metrics_rollup against the embedded PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.monitoring.conftest import fresh_db
from tests.support import fixtures
from tests.support.airflow_runs import asset_events, task_states
from tests.support.seed import seed_window, write_reference
from triage import db
from triage.assets import DRIFT_ASSET_URI

pytestmark = pytest.mark.integration

T = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def test_drift_report_run_writes_the_row_and_emits_the_asset_only_on_drift(
    dagbag, pg_server, triage_db_env, tmp_path: Path
) -> None:
    url = fresh_db(pg_server, "dag_drift")
    model_dir = tmp_path / "model"
    write_reference(model_dir / "reference.csv")
    with db.connect(url) as conn:
        conn.execute(
            "INSERT INTO triage.model_versions (name, version, status, heads, base_model, data_fingerprint, "
            "artifact_path, artifact_sha256) VALUES (%s, 3, 'champion', '{}', 'minilm', 'fp', %s, %s)",
            (fixtures.MODEL, str(model_dir), "0" * 64),
        )
    seed_window(url, T - timedelta(hours=24), T, 300, seed=21, model_version=3)
    seed_window(url, T, T + timedelta(hours=1), 300, seed=22, drift=True, model_version=3)
    seed_window(url, T + timedelta(hours=1), T + timedelta(hours=2), 15, seed=23, model_version=3)
    reports = tmp_path / "reports"
    triage_db_env(url, TRIAGE_REPORTS_DIR=str(reports))
    dag = dagbag.dags["drift_report"]
    before = len(asset_events(DRIFT_ASSET_URI))

    drifted = dag.test(logical_date=T + timedelta(hours=1))
    assert str(drifted.state) == "success"
    assert drifted.data_interval_start == T and drifted.data_interval_end == T + timedelta(hours=1)
    assert task_states(drifted) == {"check_window": "success", "emit_drift_event": "success"}
    events = asset_events(DRIFT_ASSET_URI)
    assert len(events) == before + 1
    assert events[-1]["run_id"] == drifted.run_id
    assert events[-1]["extra"]["model_version"] == 3 and events[-1]["extra"]["reasons"]

    thin = dag.test(logical_date=T + timedelta(hours=2))
    assert task_states(thin) == {"check_window": "success", "emit_drift_event": "skipped"}
    assert len(asset_events(DRIFT_ASSET_URI)) == before + 1

    with db.connect(url) as conn:
        rows = conn.execute("SELECT window_start, window_end, drift_detected, report_path, model_version "
                            "FROM triage.drift_reports ORDER BY window_start").fetchall()
    assert [(r["window_start"], r["drift_detected"], r["model_version"]) for r in rows] == [
        (T, True, 3), (T + timedelta(hours=1), False, 3)]
    assert Path(rows[0]["report_path"]).parent.parent == reports and Path(rows[0]["report_path"]).is_file()


def test_metrics_rollup_run_builds_the_marts(dagbag, pg_server, triage_db_env, tmp_path: Path) -> None:
    url = fresh_db(pg_server, "dag_rollup")
    fixtures.register_models(url, {1: "champion", 2: "canary"})
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # Fresh data (the freshness check compares with the clock); the run's own interval just precedes it.
    seed_window(url, now - timedelta(hours=1), now, 120, seed=31, canary_share=0.1)
    state = triage_db_env(url)
    run = dagbag.dags["metrics_rollup"].test(logical_date=now)
    assert str(run.state) == "success", task_states(run)
    assert task_states(run) == {"source_freshness": "success", "dbt_build": "success"}
    with db.connect(url) as conn:
        row = conn.execute("SELECT sum(tickets) AS n FROM analytics.agg_triage_kpis "
                           "WHERE grain = 'day' AND breakdown = 'overall'").fetchone()
    assert row["n"] == 120
    assert (state / "dbt" / "target" / "run_results.json").is_file()


def test_drift_report_without_a_champion_fails_without_retrying(dagbag, pg_server, triage_db_env) -> None:
    url = fresh_db(pg_server, "dag_nochamp")
    triage_db_env(url)
    run = dagbag.dags["drift_report"].test(logical_date=T + timedelta(hours=5))
    assert str(run.state) == "failed"
    assert task_states(run) == {"check_window": "failed", "emit_drift_event": "upstream_failed"}
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "check_window"]
    assert ti.try_number == 1
