"""
### canary_promotion

Started by the `triage_candidate_registered` Asset (or by hand, with an optional `version`): runs the
candidate beside the champion and promotes it only when live numbers say it is better
(`lifecycle.canary`).

1. `start_deployment`: a canary acting for `TRIAGE_CANARY_START_PERCENT` of tickets (sticky by ticket id),
   or with `mode=shadow` (`TRIAGE_CANARY_MODE`) a shadow that only predicts. Idempotent. With no candidate
   newer than the champion (a manual run with nothing to deploy) the run is skipped, saying so.
2. `wait_for_verdict`: a sensor in **reschedule** mode (it frees its worker slot between checks, every
   `TRIAGE_CANARY_POKE_INTERVAL_S`). Each check compares the arms since the deployment (or its last ramp
   step) began: agreement with human labels, override rate, abstention rate, error rate, p95 inference
   latency, with anytime-valid mSPRT tests (lifecycle/sequential.py) at `TRIAGE_CANARY_ALPHA`, valid however
   often the sensor looks. It waits until each arm has
   `TRIAGE_CANARY_MIN_FEEDBACK` labelled decisions; ramps through `TRIAGE_CANARY_RAMP_STEPS` when the
   candidate is significantly better (in place: same deployment, a new step whose evidence starts
   afresh); finishes on promote or roll back (worse, slower, erroring, or no verdict within
   `TRIAGE_CANARY_TIMEOUT_HOURS` of a step).
3. `apply_verdict`: promotes (the old champion is retired) or rolls back (the candidate is rejected, the
   champion is unchanged) in the registry.

4. `stop_if_unsupervised` (a teardown: runs whatever happened) ends the deployment if the run finished
   without a verdict (a failure after the retries), so that no candidate acts unwatched; it returns to
   candidate and can be deployed again.

Every step writes a `triage.model_events` row whose `details` hold the numbers behind it, and logs them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task, teardown

from triage.assets import CANDIDATE_ASSET_NAME, CANDIDATE_ASSET_URI
from triage.settings import get_settings

CANDIDATE_ASSET = Asset(name=CANDIDATE_ASSET_NAME, uri=CANDIDATE_ASSET_URI)
CHANGED_BY = "airflow:canary_promotion"
_settings = get_settings()


def _asset_version(triggering_asset_events: Any) -> int | None:
    """The candidate version named by the newest triggering Asset event, if any."""
    versions = [e.extra.get("version") for events in (triggering_asset_events or {}).values() for e in events
                if e.extra and e.extra.get("version") is not None]
    return int(versions[-1]) if versions else None


@dag(
    dag_id="canary_promotion",
    schedule=CANDIDATE_ASSET,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["triage", "ml", "canary"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "version": Param(None, type=["null", "integer"], minimum=1,
                         description="Candidate version to deploy; empty = the Asset event's or the newest candidate"),
        "mode": Param(None, type=["null", "string"], enum=[None, "canary", "shadow"],
                      description="canary (acts for a share) or shadow (only predicts); empty = TRIAGE_CANARY_MODE"),
    },
    doc_md=__doc__,
)
def canary_promotion() -> None:
    @task
    def start_deployment(params: Any = None, triggering_asset_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from lifecycle import canary
        from ml.registry import RegistryError

        settings = get_settings()
        requested = (params or {}).get("version") or _asset_version(triggering_asset_events)
        try:
            version = canary.pick_candidate(settings, requested)
        except canary.CanaryError as exc:  # no candidate newer than the champion: nothing to deploy
            raise AirflowSkipException(f"nothing to deploy: {exc}") from None
        try:
            dep = canary.start(settings, version, mode=(params or {}).get("mode"), changed_by=CHANGED_BY)
        except (RegistryError, canary.CanaryError) as exc:  # needs a person, not a retry
            raise AirflowFailException(str(exc)) from None
        print(f"{dep.mode} of {dep.name} v{dep.challenger_version} beside champion v{dep.champion_version} "
              f"at {dep.percent:g}% since {dep.started_at.isoformat()}")
        return {"version": dep.challenger_version, "mode": dep.mode, "percent": dep.percent}

    @task.sensor(mode="reschedule", poke_interval=_settings.canary_poke_interval_s,
                 timeout=_settings.canary_timeout_hours * 3600 + 2 * _settings.canary_poke_interval_s)
    def wait_for_verdict(started: dict[str, Any]) -> Any:
        from airflow.sdk import PokeReturnValue
        from airflow.sdk.exceptions import AirflowFailException

        from lifecycle import canary

        dep, verdict = canary.poll(get_settings(), now=datetime.now(UTC), changed_by=CHANGED_BY)
        if dep is None or verdict is None or dep.challenger_version != started["version"]:
            raise AirflowFailException(f"the deployment of v{started['version']} ended outside this run "
                                       "(see `triage canary status`); nothing to decide")
        print(f"v{dep.challenger_version} at {dep.percent:g}% ({dep.mode}): {verdict.action}: {verdict.reason}")
        print(f"numbers: {verdict.numbers}")
        if verdict.action in ("promote", "rollback"):
            return PokeReturnValue(is_done=True, xcom_value={"deployment_id": dep.id, **verdict.as_dict()})
        return PokeReturnValue(is_done=False)

    @task
    def apply_verdict(result: dict[str, Any]) -> str:
        from airflow.sdk.exceptions import AirflowFailException

        from lifecycle import canary

        try:
            state = canary.conclude(get_settings(), result["deployment_id"], canary.CanaryDecision.from_dict(result),
                                    changed_by=CHANGED_BY)
        except canary.CanaryError as exc:
            raise AirflowFailException(str(exc)) from None
        print(f"deployment {result['deployment_id']}: {state}: {result['reason']}")
        return state

    @teardown
    def stop_if_unsupervised(started: dict[str, Any] | None) -> bool:
        from lifecycle import canary

        if not started:  # start_deployment skipped or failed: this run deployed nothing
            print("nothing was deployed by this run; nothing to stop")
            return False
        stopped = canary.stop_if_active(get_settings(), started["version"], changed_by=CHANGED_BY,
                                        reason="canary_promotion ended without a verdict; the candidate no longer acts")
        print("deployment ended: the run finished without a verdict" if stopped else "nothing left running")
        return stopped

    started = start_deployment()
    apply_verdict(wait_for_verdict(started)) >> stop_if_unsupervised(started)


canary_promotion()
