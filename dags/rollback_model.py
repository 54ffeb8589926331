"""
### rollback_model

One-click rollback from the Airflow UI: *Trigger DAG* with `model`, an optional `version` and a `reason`.
The current champion is retired and `version` (default: the champion before it) becomes champion
again; an active canary or shadow deployment ends with it. The registry records who (this DAG run)
and why (`reason`) in `triage.model_events`. CLI equivalent: `triage models rollback`.
A retry of the same run does not roll back twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from triage.settings import get_settings


@dag(
    dag_id="rollback_model",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["triage", "ml", "operations"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "model": Param(get_settings().model_name, type="string", minLength=1, description="Registry name of the model"),
        "version": Param(None, type=["null", "integer"], minimum=1,
                         description="Version to restore; empty = the champion before the current one"),
        "reason": Param("", type="string", description="Why (kept in the registry's history); required"),
    },
    doc_md=__doc__,
)
def rollback_model() -> None:
    @task
    def rollback(params: Any = None, run_id: str | None = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from ml import registry

        model, version, reason = params["model"], params.get("version"), (params.get("reason") or "").strip()
        if not reason:
            raise AirflowFailException("rollback needs a reason: trigger again with the `reason` parameter filled in")
        url, changed_by = get_settings().db_url(), f"airflow:rollback_model:{run_id}"
        done = [e for e in registry.events(url, model)
                if e["changed_by"] == changed_by and e["to_status"] == "champion"]
        if done:  # an earlier try of this run already rolled back
            print(f"{model}: already rolled back to v{done[-1]['version']} by this run")
            return {"model": model, "from_version": None, "to_version": done[-1]["version"]}
        before = registry.champion(url, model)
        try:
            mv = registry.rollback(url, model, to_version=version, changed_by=changed_by, reason=reason)
        except registry.RegistryError as exc:
            raise AirflowFailException(f"{exc} (in this DAG: the `version` parameter)") from None
        print(f"{model}: champion v{before.version if before else '?'} -> v{mv.version} ({reason})")
        return {"model": model, "from_version": before.version if before else None, "to_version": mv.version}

    rollback()


rollback_model()
