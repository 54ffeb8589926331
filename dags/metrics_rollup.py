"""
### metrics_rollup

Every data interval (hourly by default, `TRIAGE_ROLLUP_SCHEDULE`), checks that the `triage` sources
are fresh (`dbt source freshness`), then runs `dbt build` of the `dbt/` project: staging and
intermediate views, the `analytics` marts (`fct_decisions`, `fct_llm_calls`, `dim_model_versions`,
`agg_triage_kpis`), their data tests and unit tests (`monitoring.rollup`).

A failing model, test or stale source fails the task with the node and its message named. The marts are
rebuilt from the sources on every run, so any re-run of any interval converges to the same tables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, dag, task

from triage.settings import get_settings


@dag(
    dag_id="metrics_rollup",
    schedule=CronDataIntervalTimetable(get_settings().rollup_schedule, timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["triage", "monitoring", "dbt"],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
)
def metrics_rollup() -> None:
    @task
    def source_freshness() -> dict[str, Any]:
        from monitoring.rollup import check_freshness

        result = check_freshness().as_dict()
        print(f"dbt source freshness: {result}")
        return result

    @task
    def dbt_build() -> dict[str, Any]:
        from monitoring.rollup import build

        result = build().as_dict()
        print(f"dbt build: {result}")
        return result

    source_freshness() >> dbt_build()


metrics_rollup()
