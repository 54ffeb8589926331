"""The dbt project: sources match triage/names.py; `dbt build` passes on seeded data; KPI numbers by hand."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from monitoring import rollup
from tests.support import fixtures
from triage import db, names

DBT = rollup.DBT_PROJECT_DIR


def test_sources_name_the_tables_of_names_py() -> None:
    sources = yaml.safe_load((DBT / "models" / "staging" / "_staging__sources.yml").read_text())["sources"]
    (source,) = sources
    assert source["schema"] == names.SCHEMA
    tables = {t["name"] for t in source["tables"]}
    known = set(names.TABLES) | set(names.VIEWS)
    assert tables <= known, tables - known
    used = {names.T_DECISIONS, names.T_FEEDBACK, names.T_LLM_CALLS, names.T_ACTIONS, names.T_MODEL_VERSIONS,
            names.T_DRIFT_REPORTS, names.V_LABELLED_DECISIONS, names.V_TAXONOMY_LABELS, names.T_REVIEWS}
    assert tables == used


def test_marts_go_to_the_analytics_schema() -> None:
    project = yaml.safe_load((DBT / "dbt_project.yml").read_text())
    assert project["models"]["triage"]["marts"]["+schema"] == names.ANALYTICS_SCHEMA
    profile = yaml.safe_load((DBT / "profiles.yml").read_text())
    assert profile["triage"]["outputs"]["default"]["schema"] == names.ANALYTICS_SCHEMA


def test_dbt_env_splits_a_socket_url() -> None:
    env = rollup.dbt_env("postgresql://postgres@/triage_x?host=/tmp/sock&port=6543", base={})
    got = (env["DBT_TRIAGE_HOST"], env["DBT_TRIAGE_PORT"], env["DBT_TRIAGE_DBNAME"])
    assert got == ("/tmp/sock", "6543", "triage_x")
    env = rollup.dbt_env("postgresql://u:s3cret@db.example:5433/prod", base={})
    assert env["DBT_ENV_SECRET_TRIAGE_PASSWORD"] == "s3cret" and env["DBT_TRIAGE_HOST"] == "db.example"


def _kpi(url: str, grain: str, breakdown: str, **dims: object) -> dict:
    where = " AND ".join(f"{k} = %({k})s" for k in dims)
    with db.connect(url) as conn:
        rows = conn.execute(
            f"SELECT * FROM {names.ANALYTICS_SCHEMA}.agg_triage_kpis WHERE grain = %(grain)s AND "
            f"breakdown = %(breakdown)s AND period_start = %(start)s" + (f" AND {where}" if where else ""),
            {"grain": grain, "breakdown": breakdown, "start": fixtures.HOUR if grain == "hour"
             else fixtures.HOUR.replace(hour=0), **dims},
        ).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def test_build_passes_with_unit_tests(marts_db) -> None:
    _, _, result = marts_db
    statuses = {r["unique_id"]: r["status"] for r in result.results}
    assert all(s in ("success", "pass") for s in statuses.values()), statuses
    unit = "unit_test.triage.int_decisions_joined_to_feedback.test_unreviewed_decisions_are_not_overridden"
    assert unit in statuses
    assert "unit_test.triage.int_decisions_joined_to_llm_calls_and_actions.test_cost_logic" in statuses
    assert any(u.startswith("test.triage.relationships_fct_decisions_model_version_key") for u in statuses)
    assert any(u.startswith("test.triage.label_in_taxonomy_stg_triage__decisions_intent") for u in statuses)


@pytest.mark.parametrize("grain", ["hour", "day"])
def test_overall_kpis_match_the_hand_computation(marts_db, grain: str) -> None:
    url, _, _ = marts_db
    row = _kpi(url, grain, "overall")
    assert row["tickets"] == 6
    assert row["automated_completions"] == 1  # H1 only: H2 overridden, H6's action failed
    assert row["automated_completion_rate"] == Decimal("0.1667")
    assert (row["reviewed"], row["overrides"]) == (3, 1)
    assert row["override_rate"] == Decimal("0.3333")
    assert row["abstention_rate"] == Decimal("0.1667")
    assert row["e2e_latency_p50_ms"] == pytest.approx(35.0)
    assert row["e2e_latency_p95_ms"] == pytest.approx(57.5)  # 50 + 0.75 * (60 - 50)
    assert row["e2e_latency_p99_ms"] == pytest.approx(59.5)
    assert row["inference_p95_ms"] == pytest.approx(5.75)
    assert (row["llm_calls"], row["tokens_total"]) == (2, 700)
    assert row["cost_usd_total"] == Decimal("0.003")
    assert row["cost_per_ticket_usd"] == Decimal("0.0005")
    assert row["cost_per_1k_tickets_usd"] == Decimal("0.5")
    assert row["drift_flag"] is True


def test_breakdowns_by_route_and_model_version(marts_db) -> None:
    url, _, _ = marts_db
    auto = _kpi(url, "hour", "route", route="auto_resolve")
    assert (auto["tickets"], auto["automated_completions"], auto["overrides"]) == (3, 1, 1)
    assert auto["intent"] is None and auto["channel"] is None
    canary = _kpi(url, "hour", "model_version", model_version_key="triage-classifier:v2")
    assert (canary["arm"], canary["tickets"], canary["automated_completion_rate"]) == ("canary", 1, Decimal("0"))
    draft = _kpi(url, "hour", "intent", intent="complaint")
    assert draft["cost_per_1k_tickets_usd"] == Decimal("3")
    none = _kpi(url, "hour", "intent", intent="(none)")
    assert none["abstention_rate"] == Decimal("1")


def test_seeded_day_has_no_drift_flag_and_sane_rates(marts_db) -> None:
    url, _, _ = marts_db
    with db.connect(url) as conn:
        rows = conn.execute(
            f"SELECT tickets, automated_completion_rate, override_rate, drift_flag FROM {names.ANALYTICS_SCHEMA}"
            ".agg_triage_kpis WHERE grain = 'day' AND breakdown = 'overall' ORDER BY period_start").fetchall()
    assert [r["tickets"] for r in rows] == [6, 240, 240]
    assert rows[1]["drift_flag"] is False
    assert 0 < rows[1]["automated_completion_rate"] < 1 and 0 < rows[1]["override_rate"] < 1


def test_failing_test_is_named(marts_db) -> None:
    url, target, _ = marts_db
    with db.connect(url) as conn:
        conn.execute("UPDATE triage.decisions SET model_version = 9 WHERE ticket_id = 'H1'")
    try:
        with pytest.raises(rollup.RollupError, match="relationships_fct_decisions_model_version_key"):
            rollup.build(url, target_path=target, select="fct_decisions")
    finally:
        with db.connect(url) as conn:
            conn.execute("UPDATE triage.decisions SET model_version = 1 WHERE ticket_id = 'H1'")


def test_docs_generate_writes_the_catalog(marts_db) -> None:
    url, target, _ = marts_db
    rollup.docs_generate(url, target_path=target)
    assert (Path(target) / "catalog.json").is_file()
    assert (Path(target) / "index.html").is_file()


def test_stale_sources_fail_the_freshness_check_by_name(marts_db) -> None:
    url, target, _ = marts_db  # its newest decision is months before the clock
    with pytest.raises(rollup.RollupError, match=r"source\.triage\.triage\.decisions \(error\)"):
        rollup.check_freshness(url, target_path=target)


def test_a_second_build_waits_for_the_first(marts_db) -> None:
    """Two builds replacing the same views deadlock in PostgreSQL: the build lock makes the second wait."""
    import threading

    url, target, _ = marts_db
    done = threading.Event()
    with db.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (rollup.BUILD_LOCK,))  # as a build in progress would
        worker = threading.Thread(target=lambda: (rollup.build(url, target_path=target, select="stg_triage__actions"),
                                                  done.set()))
        worker.start()
        try:
            assert not done.wait(3.0), "the build ran while another one held the build lock"
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (rollup.BUILD_LOCK,))
    worker.join(120)
    assert done.is_set(), "the build did not run once the lock was released"


def test_a_label_outside_the_models_taxonomy_fails_the_build_by_name(pg_server, tmp_path) -> None:
    """Accepted values come from the registry: the bank's 'fraud_report' is no label of a shop's model."""
    from psycopg.types.json import Jsonb

    from tests.monitoring.conftest import fresh_db
    from triage.taxonomy import Taxonomy

    shop = Taxonomy(name="shop", intents={"where_is_my_parcel": {}, "return_item": {}}, urgencies=[])
    url = fresh_db(pg_server, "labels")
    with db.connect(url) as conn:
        conn.execute(
            "INSERT INTO triage.model_versions (name, version, status, heads, base_model, data_fingerprint,"
            " artifact_path, artifact_sha256, taxonomy) VALUES ('shop', 1, 'champion', %s, 'b', 'f', '/x', 'x', %s)",
            (Jsonb(shop.heads), Jsonb(shop.to_json())),
        )
        for tid, intent in (("S1", "where_is_my_parcel"), ("S2", "fraud_report")):
            conn.execute(
                "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name,"
                " model_version, intent, intent_confidence, abstained, prediction, masked_text, received_at,"
                " decided_at) VALUES (%s, 'chat', 'human_queue', 'r', 'v', 'shop', 1, %s, 0.9, false, '{}', 'hi',"
                " now(), now())",
                (tid, intent),
            )
        conn.execute("INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, created_at) "
                     "VALUES ('F1', 'S1', 'correct', 'return_item', now())")
        conn.commit()
    with pytest.raises(rollup.RollupError) as err:
        rollup.build(url, target_path=tmp_path / "dbt",
                     select="stg_triage__taxonomy_labels stg_triage__decisions stg_triage__feedback")
    text = str(err.value)
    assert "label_in_taxonomy_stg_triage__decisions_intent" in text and "Got 1 result" in text, text
    assert "label_in_taxonomy_stg_triage__feedback_label_intent" not in text, text


def test_reviewer_work_per_day_by_hand(marts_db) -> None:
    """agg_reviewer_daily from fixtures.REVIEWS: ana 2 cases (2 and 1 min, one override, her one reply as
    drafted), ben 1 escalation in 4 minutes."""
    url, _, _ = marts_db
    with db.connect(url) as conn:
        rows = {r["reviewer"]: r for r in conn.execute(
            f"SELECT * FROM {names.ANALYTICS_SCHEMA}.agg_reviewer_daily WHERE period_start = %s",
            (fixtures.HOUR.replace(hour=0),)).fetchall()}
    assert set(rows) == {"ana", "ben"}
    ana, ben = rows["ana"], rows["ben"]
    assert (ana["tickets_handled"], float(ana["human_minutes"]), float(ana["human_minutes_per_case"])) == (2, 3.0, 1.5)
    assert float(ana["median_handling_minutes"]) == 1.5
    assert (ana["override_rate"], ana["drafts_unedited_rate"]) == (Decimal("0.5000"), Decimal("1.0000"))
    assert (ben["tickets_handled"], float(ben["median_handling_minutes"]), ben["override_rate"]) == (
        1, 4.0, Decimal("1.0000"))
    assert ben["drafts_unedited_rate"] is None
