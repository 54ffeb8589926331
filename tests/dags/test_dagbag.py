"""Every file in dags/ imports cleanly, quickly, and declares tags, retries and docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dags.conftest import DAGS_FOLDER

DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_"))
MAX_PARSE_SECONDS = 2.0


def test_dags_folder_has_the_monitoring_dags() -> None:
    assert {"drift_report.py", "metrics_rollup.py"} <= {p.name for p in DAG_FILES}


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_each_file_defines_a_dag_and_parses_fast(dagbag, path: Path) -> None:
    stats = {Path(s.file).name: s for s in dagbag.dagbag_stats}
    assert path.name in stats, f"{path.name} was not parsed"
    assert stats[path.name].dag_num >= 1, f"{path.name} defines no DAG"
    assert stats[path.name].duration.total_seconds() < MAX_PARSE_SECONDS


def test_every_dag_sets_tags_retries_docs_and_no_catchup(dagbag) -> None:
    assert dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id}: no tags"
        assert dag.default_args.get("retries", 0) >= 1, f"{dag_id}: no retries in default_args"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id}: no doc_md"
        assert dag.catchup is False, f"{dag_id}: catchup must be off"
        assert dag.max_active_runs is not None, f"{dag_id}: max_active_runs unset"
        for t in dag.tasks:
            assert t.retries >= 1, f"{dag_id}.{t.task_id}: retries not set"


def test_drift_report_emits_the_shared_asset_and_uses_interval_windows(dagbag) -> None:
    from triage.assets import DRIFT_ASSET_URI

    dag = dagbag.dags["drift_report"]
    emit = dag.get_task("emit_drift_event")
    assert [o.uri for o in emit.outlets] == [DRIFT_ASSET_URI]
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert list(dagbag.dags["metrics_rollup"].get_task("dbt_build").upstream_task_ids) == ["source_freshness"]
