"""`dag.test()` runs of the model-lifecycle DAGs against the embedded PostgreSQL with a tiny model.

retrain_classifier fixes a champion's confused pair of intents without forgetting the rest (the retrain
demonstration), registers the candidate and updates the candidate Asset; a failed quality gate blocks it
with the reason; canary_promotion promotes a better canary and rolls back a worse one (the
champion unchanged); rollback_model restores the previous champion; data_quality fails on bad labels.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lifecycle import canary
from lifecycle.retrain import MIN_CLASS_SUPPORT
from tests.monitoring.conftest import fresh_db
from tests.support import fixtures
from tests.support.airflow_runs import asset_events, task_states
from tests.support.lifecycle import CONFUSED_PAIR, MODEL, confused_champion, seed_arms, seed_decisions, settings_for
from triage import db
from triage.assets import CANDIDATE_ASSET_URI

pytestmark = pytest.mark.integration


def _statuses(url: str) -> dict[int, str]:
    with db.connect(url) as conn:
        return {r["version"]: r["status"] for r in conn.execute("SELECT version, status FROM triage.model_versions")}


@pytest.fixture(scope="module")
def confused(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return confused_champion(tmp_path_factory)


def _register_champion(url: str, model_dir: Path, tmp_path: Path):
    from ml import registry

    settings = settings_for(url, tmp_path / "state")
    return registry.register(url, model_dir, name=MODEL, status="champion", changed_by="test", reason="seed",
                             models_dir=settings.models_dir)


@pytest.mark.slow
def test_retrain_fixes_a_confused_pair_without_forgetting_and_updates_the_asset(
        dagbag, pg_server, triage_db_env, confused: Path, tmp_path: Path) -> None:
    """The retrain demonstration (README, "Retraining without forgetting"): a champion that names
    card_arrival and card_lost_or_stolen as each other, 500 reviewers' corrections of that pair, one DAG run.
    The registered candidate's record shows the pair fixed on the recent slice and on the holdout that no
    model trained on, and no other class with 10+ rows down by more than the regression bound."""
    url = fresh_db(pg_server, "dag_retrain")
    champ = _register_champion(url, confused, tmp_path)
    start = champ.created_at + timedelta(minutes=1)
    seed_decisions(url, start, start + timedelta(hours=10), 500, seed=11, only=CONFUSED_PAIR, swap=CONFUSED_PAIR)
    until = (start + timedelta(hours=12)).replace(microsecond=0)
    state = triage_db_env(url, TRIAGE_RETRAIN_MIN_NEW_LABELS="100", TRIAGE_RETRAIN_EPOCHS="1")
    before = len(asset_events(CANDIDATE_ASSET_URI))

    run = dagbag.dags["retrain_classifier"].test(logical_date=until)
    assert str(run.state) == "success", task_states(run)
    assert set(task_states(run).values()) == {"success"} and len(task_states(run)) == 6
    assert _statuses(url) == {1: "champion", 2: "candidate"}
    with db.connect(url) as conn:
        mv = conn.execute("SELECT metrics, reason, changed_by, training_args FROM triage.model_versions "
                          "WHERE version = 2").fetchone()
        champ_args = conn.execute("SELECT training_args FROM triage.model_versions WHERE version = 1").fetchone()[
            "training_args"]
        gate = conn.execute("SELECT success FROM triage.quality_results").fetchall()
    retrained, counts = mv["metrics"]["retrain"], mv["metrics"]["retrain"]["counts"]
    assert retrained["labels_until"] == until.isoformat() and counts["new_labels"] == 500
    assert counts["confirmations"] == 0 and counts["corrections"] == counts["new_train"] - counts["new_in_holdout"]
    assert champ.created_at < datetime.fromisoformat(retrained["trained_until"]) < until

    # The full base data, identified by the fingerprint the registry holds for the champion, and its holdout,
    # which the champion and the candidate both left out; the candidate keeps the new labels as base data.
    base = retrained["base_data"]
    assert base["rows"] == counts["base_rows"] == champ_args["base_rows"] == 3000
    assert base["fingerprint"] == champ_args["base_fingerprint"]
    assert base["holdout_fingerprint"] == champ_args["holdout_fingerprint"]
    assert base["holdout_rows"] == counts["fixed_holdout"] == champ_args["holdout_rows"]
    assert champ_args["train_rows"] + champ_args["val_rows"] + base["holdout_rows"] == 3000
    cand_args = mv["training_args"]
    assert cand_args["init_from"] and cand_args["base_rows"] == 3000 + counts["new_train"]
    assert cand_args["holdout_rows"] == base["holdout_rows"] + counts["new_in_holdout"]

    # The confused pair is fixed on both evaluation sets; no other class regresses beyond the bound.
    per_class, bound = retrained["per_class"], retrained["max_class_regression"]
    for split in ("fixed_holdout", "recent"):
        for cls in CONFUSED_PAIR:
            row = per_class[split]["intent"][cls]
            assert row["support"] >= MIN_CLASS_SUPPORT and row["champion_f1"] < 0.2, (split, cls, row)
            assert row["candidate_f1"] >= 0.9, (split, cls, row)
    others = [(head, cls, row) for head, rows in per_class["fixed_holdout"].items() for cls, row in rows.items()
              if row["support"] >= MIN_CLASS_SUPPORT and not (head == "intent" and cls in CONFUSED_PAIR)]
    assert len([1 for head, _, _ in others if head == "intent"]) >= 12  # most intents have enough rows to judge
    assert all(row["change"] >= -bound for _, _, row in others), [o for o in others if o[2]["change"] < -bound]
    assert retrained["class_regressions"] == []
    print("retrain demonstration, per-class F1 champion -> candidate (support):")
    for split, heads in per_class.items():
        for head, rows in heads.items():
            print(f"  {split} {head}: " + ", ".join(
                f"{c} {r['champion_f1']:.3f}->{r['candidate_f1']:.3f} ({r['support']})" for c, r in rows.items()))
    print(f"  scores: {retrained['scores']}")
    assert retrained["scores"]["recent"]["gain"] >= 0.01 and mv["reason"].startswith("candidate beats the champion")
    assert mv["changed_by"] == "airflow:retrain_classifier"
    assert gate and all(r["success"] for r in gate)
    events = asset_events(CANDIDATE_ASSET_URI)
    assert len(events) == before + 1 and events[-1]["run_id"] == run.run_id
    assert events[-1]["extra"]["version"] == 2 and events[-1]["extra"]["champion_version"] == 1
    (work,) = (state / "retrain").iterdir()
    assert (work / "comparison.json").is_file() and (work / "new_labels.csv").is_file()
    assert not (work / "candidate").exists()  # the registry holds the model; the working copy is gone


def test_quality_failure_blocks_retraining_and_too_few_labels_skip(
        dagbag, pg_server, triage_db_env, confused: Path, tmp_path: Path, capsys) -> None:
    url = fresh_db(pg_server, "dag_retrain_blocked")
    champ = _register_champion(url, confused, tmp_path)
    start = champ.created_at + timedelta(minutes=1)
    seed_decisions(url, start, start + timedelta(hours=2), 40, seed=12)
    triage_db_env(url, TRIAGE_RETRAIN_MIN_NEW_LABELS="100")
    dag = dagbag.dags["retrain_classifier"]

    few = dag.test(logical_date=(start + timedelta(hours=3)).replace(microsecond=0))
    assert task_states(few)["quality_gate"] == "success"
    assert task_states(few)["build_training_set"] == "skipped"
    assert {task_states(few)[t] for t in ("fine_tune", "evaluate", "register_candidate")} == {"skipped"}
    assert str(few.state) == "success"

    with db.connect(url) as conn:
        conn.execute("INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, created_at) "
                     "VALUES ('F-bad', 'T-12-3', 'correct', 'not_an_intent', 'normal', %s)",
                     (start + timedelta(hours=2, minutes=30),))
    capsys.readouterr()
    blocked = dag.test(logical_date=(start + timedelta(hours=4)).replace(microsecond=0))
    assert str(blocked.state) == "failed"
    assert task_states(blocked)["quality_gate"] == "failed"
    assert task_states(blocked)["build_training_set"] == "upstream_failed"
    out = capsys.readouterr()
    assert "retraining blocked: critical data quality failure" in out.out + out.err
    with db.connect(url) as conn:
        row = conn.execute("SELECT critical_failures FROM triage.quality_results WHERE suite = 'labels' "
                           "AND NOT success").fetchone()
    assert any("expect_column_values_to_be_in_set on labels.intent" in f and "F-bad" in f
               for f in row["critical_failures"])
    assert _statuses(url) == {1: "champion"}


def _fake_models(url: str) -> None:
    """Champion v1 and candidate v2 of the bank's taxonomy, with no artifacts (the DAGs only change statuses)."""
    assert fixtures.MODEL == MODEL
    fixtures.register_models(url, {1: "champion", 2: "candidate"})


@pytest.mark.parametrize(("accuracy", "outcome", "statuses"), [
    (0.92, "promoted", {1: "retired", 2: "champion"}),
    (0.45, "rolled_back", {1: "champion", 2: "rejected"}),
])
def test_canary_promotion_promotes_a_better_and_rolls_back_a_worse_candidate(
        dagbag, pg_server, triage_db_env, tmp_path: Path, accuracy: float, outcome: str,
        statuses: dict[int, str]) -> None:
    url = fresh_db(pg_server, "dag_canary")
    _fake_models(url)
    triage_db_env(url, TRIAGE_CANARY_MIN_FEEDBACK="150")
    # The canary has been live for 3 hours; its window holds the labelled decisions of both arms.
    settings = settings_for(url, tmp_path / "state", canary_min_feedback="150")
    canary.start(settings, 2, changed_by="test")
    with db.connect(url) as conn:
        started = conn.execute("UPDATE triage.deployments SET started_at = now() - interval '3 hours', "
                               "step_started_at = now() - interval '3 hours' "
                               "RETURNING started_at").fetchone()["started_at"]
    seed_arms(url, started, datetime.now(UTC) - timedelta(minutes=5), 200, champion=(1, 0.7),
              challenger=(2, accuracy), seed=13)

    run = dagbag.dags["canary_promotion"].test(run_conf={"version": 2})
    assert str(run.state) == "success", task_states(run)
    assert task_states(run) == {"start_deployment": "success", "wait_for_verdict": "success",
                            "apply_verdict": "success", "stop_if_unsupervised": "success"}
    assert _statuses(url) == statuses
    teardown = next(ti for ti in run.get_task_instances() if ti.task_id == "stop_if_unsupervised")
    assert teardown.xcom_pull(task_ids="stop_if_unsupervised") is False  # the verdict already ended it
    with db.connect(url) as conn:
        dep = conn.execute("SELECT status, reason, percent FROM triage.deployments").fetchall()
        ev = conn.execute("SELECT changed_by, details FROM triage.model_events WHERE version = 2 "
                          "AND details ? 'step' ORDER BY id").fetchall()
    assert [d["status"] for d in dep] == [outcome]
    assert ev[-1]["changed_by"] == "airflow:canary_promotion"
    assert ev[-1]["details"]["step"] == ("promote" if outcome == "promoted" else "rollback")
    assert ev[-1]["details"]["challenger"]["judged"] == 200
    assert ev[-1]["details"]["tests"]["agreement"]["p_greater" if outcome == "promoted" else "p_less"] < 0.05


def test_rollback_model_restores_the_previous_champion_from_params(dagbag, pg_server, triage_db_env) -> None:
    from ml import registry

    url = fresh_db(pg_server, "dag_rollback")
    _fake_models(url)
    registry.promote(url, MODEL, 2, changed_by="test", reason="canary won")
    triage_db_env(url)
    dag = dagbag.dags["rollback_model"]

    no_reason = dag.test(run_conf={"model": MODEL})
    assert task_states(no_reason) == {"rollback": "failed"}
    assert _statuses(url) == {1: "retired", 2: "champion"}

    unknown = dag.test(run_conf={"model": MODEL, "reason": "complaints about v2 routing"})
    assert task_states(unknown) == {"rollback": "failed"}  # v1 never became champion through the registry

    run = dag.test(run_conf={"model": MODEL, "version": 1, "reason": "complaints about v2 routing"})
    assert task_states(run) == {"rollback": "success"}
    assert _statuses(url) == {1: "champion", 2: "retired"}
    last = registry.events(url, MODEL)[-1]
    assert (last["version"], last["to_status"]) == (1, "champion")
    assert last["changed_by"].startswith("airflow:rollback_model:") and "complaints about v2" in last["reason"]


def test_data_quality_fails_on_a_window_with_bad_labels(dagbag, pg_server, triage_db_env) -> None:
    url = fresh_db(pg_server, "dag_quality")
    t = datetime(2026, 5, 2, 2, 0, tzinfo=UTC)  # a boundary of the daily 02:00 schedule
    seed_decisions(url, t - timedelta(days=1), t, 60, seed=14)
    seed_decisions(url, t, t + timedelta(days=1), 60, seed=15, prefix="B")
    with db.connect(url) as conn:
        conn.execute("UPDATE triage.feedback SET urgency = 'whenever' WHERE ticket_id = 'B-15-7'")
    triage_db_env(url)
    dag = dagbag.dags["data_quality"]
    good = dag.test(logical_date=t)
    assert good.data_interval_end == t and task_states(good) == {"validate": "success"}
    bad = dag.test(logical_date=t + timedelta(days=1))
    assert task_states(bad) == {"validate": "failed"}
    with db.connect(url) as conn:
        rows = conn.execute("SELECT run_key, success, critical_failures FROM triage.quality_results "
                            "WHERE suite = 'labels' ORDER BY run_key").fetchall()
    assert [r["success"] for r in rows] == [True, False]
    assert "labels.urgency" in rows[1]["critical_failures"][0] and "F-B-15-7" in rows[1]["critical_failures"][0]


def test_assets_tie_the_loop_and_the_canary_waits_without_holding_a_slot(dagbag) -> None:
    from triage.assets import DRIFT_ASSET_URI

    retrain_dag = dagbag.dags["retrain_classifier"]
    assert type(retrain_dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert retrain_dag.timetable.asset_condition.uri == DRIFT_ASSET_URI
    assert [o.uri for o in retrain_dag.get_task("register_candidate").outlets] == [CANDIDATE_ASSET_URI]
    assert list(retrain_dag.get_task("build_training_set").upstream_task_ids) == ["quality_gate"]
    promotion = dagbag.dags["canary_promotion"]
    assert promotion.timetable.asset_condition.uri == CANDIDATE_ASSET_URI
    sensor = promotion.get_task("wait_for_verdict")
    assert sensor.mode == "reschedule" and sensor.poke_interval >= 60
    assert set(dagbag.dags["rollback_model"].params) == {"model", "version", "reason"}
    assert dagbag.dags["rollback_model"].schedule is None
