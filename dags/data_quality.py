"""
### data_quality

Every day (`TRIAGE_QUALITY_SCHEDULE`) runs the Great Expectations gate (`monitoring.quality`) on the
data interval's production labels and decisions: texts present and within length, labels in the known
label sets, no unmasked PII in stored text, feedback linked to an existing decision, class counts,
duplicate rate, decision latency within bounds.

- Triggered by hand (the Trigger button), the window is the last schedule period ending now; the
  Trigger form takes `window_start` and `window_end`.
- Results go to `triage.quality_results` (one row per suite and window; re-runs replace it) and to the
  GX data docs under the reports folder (the path is in the task log).
- A failed **critical** expectation fails the run with the expectation, the column and sample row ids
  in the error; `retrain_classifier` runs the same gate on its own window and will not train on such data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from triage.settings import get_settings


@dag(
    dag_id="data_quality",
    schedule=CronDataIntervalTimetable(get_settings().quality_schedule, timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["triage", "ml", "quality"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "window_start": Param(None, type=["null", "string"], format="date-time",
                              description="Start of the window (ISO 8601, UTC); empty: the run's period"),
        "window_end": Param(None, type=["null", "string"], format="date-time",
                            description="End of the window; empty: the end of the run's period (now, by hand)"),
    },
    doc_md=__doc__,
)
def data_quality() -> None:
    @task
    def validate(params: dict[str, Any] | None = None, data_interval_start: datetime | None = None,
                 data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from monitoring.quality import run_quality_gate
        from triage.windows import WindowError, run_window, schedule_period

        settings = get_settings()
        try:
            start, end = run_window(data_interval_start, data_interval_end, run_after=dag_run.run_after,
                                    period=schedule_period(settings.quality_schedule, dag_run.run_after),
                                    params=params)
        except WindowError as exc:
            raise AirflowFailException(str(exc)) from exc
        print(f"window {start.isoformat()} .. {end.isoformat()}")
        result = run_quality_gate(settings, start, end)
        print(f"{result.summary()}; data docs: {result.docs_path}")
        if not result.success:
            raise AirflowFailException(result.summary())
        return {"rows": result.rows, "warnings": [f.describe() for f in result.failures],
                "docs_path": result.docs_path}

    validate()


data_quality()
