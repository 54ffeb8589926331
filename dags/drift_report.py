"""
### drift_report

Every data interval (hourly by default, `TRIAGE_DRIFT_SCHEDULE`), compares the interval's decisions
with the champion model's training sample using Evidently: text drift of the masked ticket text
(domain classifier), intent and urgency prediction drift, confidence drift, abstention rate and the
label mismatch rate where reviewers answered (`monitoring.drift`).

- Triggered by hand (the Trigger button), the window is the last schedule period ending now; the
  Trigger form takes `window_start`, `window_end` and `model_version` (empty: the champion).
- `check_window` writes the HTML report under the reports folder (its path is in the task log and in
  `triage reports`) and upserts one `triage.drift_reports` row for the window: re-runs replace it.
- `emit_drift_event` updates the `triage_drift_detected` Asset, with the reasons in the event's
  extra, only when the window crossed a threshold; `retrain_classifier` is scheduled on that Asset.
  No drift, or too little data in the window: the task is skipped and nothing is emitted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from triage.assets import DRIFT_ASSET_NAME, DRIFT_ASSET_URI
from triage.settings import get_settings

DRIFT_ASSET = Asset(name=DRIFT_ASSET_NAME, uri=DRIFT_ASSET_URI)


@dag(
    dag_id="drift_report",
    schedule=CronDataIntervalTimetable(get_settings().drift_schedule, timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["triage", "monitoring", "drift"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "window_start": Param(None, type=["null", "string"], format="date-time",
                              description="Start of the window (ISO 8601, UTC); empty: the run's period"),
        "window_end": Param(None, type=["null", "string"], format="date-time",
                            description="End of the window; empty: the end of the run's period (now, by hand)"),
        "model_version": Param(None, type=["null", "integer"], minimum=1,
                               description="Model version whose decisions to check; empty: the champion"),
    },
    doc_md=__doc__,
)
def drift_report() -> None:
    @task
    def check_window(params: dict[str, Any] | None = None, data_interval_start: datetime | None = None,
                     data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from monitoring.drift import DriftInputError, run_drift_report, summary_line
        from triage.windows import WindowError, run_window, schedule_period

        try:
            start, end = run_window(data_interval_start, data_interval_end, run_after=dag_run.run_after,
                                    period=schedule_period(get_settings().drift_schedule, dag_run.run_after),
                                    params=params)
            print(f"window {start.isoformat()} .. {end.isoformat()}")
            result = run_drift_report(start, end, model_version=(params or {}).get("model_version"))
        except (DriftInputError, WindowError) as exc:  # no champion / no reference / a bad param: no retry helps
            raise AirflowFailException(str(exc)) from exc
        print(f"drift report: {summary_line(result)}")
        return result.as_dict()

    @task(outlets=[DRIFT_ASSET])
    def emit_drift_event(result: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from monitoring.drift import asset_extra

        extra = asset_extra(result)
        if extra is None:
            raise AirflowSkipException(f"no drift event: {result['status']}, reasons {result['reasons']}")
        outlet_events[DRIFT_ASSET].extra = extra
        return extra

    emit_drift_event(check_window())


drift_report()
