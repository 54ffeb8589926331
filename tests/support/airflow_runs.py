"""Reading a `dag.test()` run back: task states and the events recorded for an Asset.

Airflow is imported inside the functions: tests/dags/conftest.py configures it first.
"""

from __future__ import annotations


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def asset_events(uri: str) -> list[dict]:
    """Every event recorded for the Asset `uri`: its extra and the run that emitted it."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra, AssetEvent.source_run_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
        ).all()
    return [{"extra": r[0], "run_id": r[1]} for r in rows]
