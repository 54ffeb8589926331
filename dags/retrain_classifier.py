"""
### retrain_classifier

Daily (`TRIAGE_RETRAIN_SCHEDULE`) and whenever `drift_report` updates the `triage_drift_detected`
Asset, fine-tunes the champion on the production labels it has not seen and registers the result as a
candidate only when it is better (`lifecycle.retrain`). The run's upper bound is its data interval end (the
drift event's time for a drift-triggered run), never the clock, so a re-run sees the same labels.

1. `quality_gate`: the Great Expectations gate (`monitoring.quality`) on the labels and decisions since
   the champion's labels ended. A critical failure fails the run, naming the expectation and rows (also in
   `triage.quality_results` and the data docs); fix or remove those rows, then clear the task to re-run.
2. `build_training_set`: the champion's full base data (stored with it, or `TRIAGE_RETRAIN_BASE_DATA`;
   refused unless its fingerprint is the one the champion recorded) plus the new labels (corrections
   repeated `TRIAGE_RETRAIN_CORRECTION_WEIGHT` times); the newest `TRIAGE_RETRAIN_HOLDOUT_FRACTION` of
   labels is held out as the recent slice, and the hash-chosen holdout of the base data, which no model
   has trained on, as the fixed holdout. Fewer than `TRIAGE_RETRAIN_MIN_NEW_LABELS`: skipped, with the counts.
3. `fine_tune`: the champion's recipe, warm-started from the whole champion (encoder and heads); exports
   ONNX fp32 + int8.
4. `evaluate`: candidate and champion, served as in production, on the fixed holdout and the recent
   slice; the verdict with every number (per-class F1 before and after included) is in the log and in
   `comparison.json` in the work folder, and becomes the candidate's retrain record in the registry.
5. `register_candidate`: registers a candidate that beats the champion by `TRIAGE_RETRAIN_PROMOTION_MARGIN`
   with no class regressing beyond `TRIAGE_RETRAIN_MAX_CLASS_REGRESSION`, and updates the
   `triage_candidate_registered` Asset, which starts `canary_promotion`. Otherwise skipped with the reason.
6. `clean_up` (a teardown: it runs whatever happened, and does not decide the run's state) deletes the
   candidate's working copy; the registry keeps its own. The training set CSVs, `new_labels.csv` (every new
   label, its split and whether it was a correction) and `comparison.json` stay under
   `<state_dir>/retrain/<run id>/` for audit.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, dag, task, teardown

from triage.assets import CANDIDATE_ASSET_NAME, CANDIDATE_ASSET_URI, DRIFT_ASSET_NAME, DRIFT_ASSET_URI
from triage.settings import get_settings

DRIFT_ASSET = Asset(name=DRIFT_ASSET_NAME, uri=DRIFT_ASSET_URI)
CANDIDATE_ASSET = Asset(name=CANDIDATE_ASSET_NAME, uri=CANDIDATE_ASSET_URI)
CHANGED_BY = "airflow:retrain_classifier"


def _until(data_interval_end: datetime | None, dag_run: Any) -> datetime:
    """The run's upper bound: its data interval end, else the time it was due to run."""
    return data_interval_end or dag_run.run_after


def _work_dir(run_id: str) -> Path:
    return get_settings().state_dir / "retrain" / re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


@dag(
    dag_id="retrain_classifier",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(get_settings().retrain_schedule, timezone="UTC"), assets=DRIFT_ASSET),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["triage", "ml", "retrain"],
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    doc_md=__doc__,
)
def retrain_classifier() -> None:
    @task
    def quality_gate(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lifecycle.retrain import SkipRetrain, label_window
        from monitoring.quality import run_quality_gate

        settings, until = get_settings(), _until(data_interval_end, dag_run)
        try:
            champion, since = label_window(settings, until)
        except SkipRetrain as exc:
            raise AirflowSkipException(str(exc)) from None
        result = run_quality_gate(settings, since, until)
        print(f"quality gate on labels {since.isoformat()} .. {until.isoformat()}: {result.summary()}; "
              f"data docs: {result.docs_path}")
        if not result.success:
            raise AirflowFailException(f"retraining blocked: {result.summary()}")
        return {"champion_version": champion.version, "since": since.isoformat(), "until": until.isoformat()}

    @task
    def build_training_set(window: dict[str, Any], run_id: str | None = None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from lifecycle.retrain import RetrainConfig, SkipRetrain, build_training_set

        settings = get_settings()
        try:
            ts = build_training_set(settings, RetrainConfig.from_settings(settings),
                                    until=datetime.fromisoformat(window["until"]), work_dir=_work_dir(str(run_id)))
        except SkipRetrain as exc:
            raise AirflowSkipException(str(exc)) from None
        return ts.work_dir

    @task(execution_timeout=timedelta(seconds=get_settings().retrain_time_budget_s * 1.5 + 900))
    def fine_tune(work_dir: str) -> str:
        from lifecycle.retrain import RetrainConfig, fine_tune, load_training_set

        settings = get_settings()
        return str(fine_tune(settings, RetrainConfig.from_settings(settings), load_training_set(Path(work_dir))))

    @task
    def evaluate(work_dir: str, candidate_dir: str) -> dict[str, Any]:
        from lifecycle.retrain import RECORD_KEYS, RetrainConfig, evaluate_pair, load_training_set

        settings = get_settings()
        result = evaluate_pair(settings, RetrainConfig.from_settings(settings), load_training_set(Path(work_dir)),
                               Path(candidate_dir))
        return {k: result[k] for k in ("better", "reasons", *RECORD_KEYS)}

    @task(outlets=[CANDIDATE_ASSET])
    def register_candidate(work_dir: str, candidate_dir: str, comparison: dict[str, Any], *,
                           outlet_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from lifecycle.retrain import SkipRetrain, load_training_set, register_candidate

        settings = get_settings()
        try:
            mv = register_candidate(settings, load_training_set(Path(work_dir)), Path(candidate_dir), comparison,
                                    changed_by=CHANGED_BY)
        except SkipRetrain as exc:
            raise AirflowSkipException(str(exc)) from None
        extra = {"model": mv.name, "version": mv.version, "champion_version": comparison["champion_version"],
                 "summary": comparison["summary"]}
        print(f"registered {mv.name} v{mv.version} as candidate: {comparison['summary']}")
        outlet_events[CANDIDATE_ASSET].extra = extra
        return extra

    @teardown
    def clean_up(run_id: str | None = None) -> None:
        from lifecycle.retrain import clean

        freed = clean(_work_dir(str(run_id)))
        print(f"removed the candidate's working copy ({freed / 1e6:.1f} MB); audit files kept in "
              f"{_work_dir(str(run_id))}")

    window = quality_gate()
    work_dir = build_training_set(window)
    candidate = fine_tune(work_dir)
    register_candidate(work_dir, candidate, evaluate(work_dir, candidate)) >> clean_up()


retrain_classifier()
