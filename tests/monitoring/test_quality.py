"""The Great Expectations gate: clean windows pass, each kind of bad row is a named critical failure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from triage import db
from triage.settings import load_settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _decision(conn, tid: str, text: str, *, route: str = "human_queue", latency: float = 50.0) -> None:
    conn.execute(
        "INSERT INTO triage.decisions (ticket_id, channel, route, rule_id, policy_version, model_name, model_version,"
        " intent, intent_confidence, urgency, abstained, prediction, masked_text, e2e_latency_ms, received_at,"
        " decided_at) VALUES (%s,'email',%s,'r1','v1','m',1,'card_arrival',0.9,'low',false,%s,%s,%s,%s,%s)",
        (tid, route, Jsonb({}), text, latency, T0, T0 + timedelta(seconds=1)),
    )


def _feedback(conn, eid: str, tid: str, intent: str = "card_arrival") -> None:
    conn.execute(
        "INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, created_at)"
        " VALUES (%s,%s,'correct',%s,'low',%s)",
        (eid, tid, intent, T0 + timedelta(minutes=5)),
    )


def _seed_clean(url: str, n: int = 20) -> None:
    with db.connect(url) as conn:
        for i in range(n):
            _decision(conn, f"T-{i}", f"my card has not arrived yet, reach me at <EMAIL_1> ({i})")
            _feedback(conn, f"F-{i}", f"T-{i}", "card_arrival" if i % 2 else "card_declined")
        conn.commit()


def _gate(url: str, tmp_path):
    from monitoring.quality import run_quality_gate

    settings = load_settings({"DATABASE_URL": url, "TRIAGE_STATE_DIR": str(tmp_path)})
    return run_quality_gate(settings, T0, T0 + timedelta(hours=1), run_key="test")


def test_clean_window_passes_and_is_stored_with_data_docs(db_url, tmp_path):
    _seed_clean(db_url)
    result = _gate(db_url, tmp_path)
    assert result.success, result.summary()
    assert result.rows == {"labels": 20, "decisions": 20}
    assert result.docs_path and (tmp_path / "reports" / "gx").exists()
    with db.connect(db_url) as conn:
        rows = conn.execute("SELECT suite, success FROM triage.quality_results ORDER BY suite").fetchall()
    assert rows == [{"suite": "decisions", "success": True}, {"suite": "labels", "success": True}]


def test_bad_rows_are_critical_failures_naming_expectation_and_rows(db_url, tmp_path):
    _seed_clean(db_url)
    with db.connect(db_url) as conn:
        _decision(conn, "T-pii", "call me on +44 7700 900123 please")  # unmasked PII in stored text
        _feedback(conn, "F-unknown", "T-3", intent="buy_a_boat")  # label outside the label set
        _feedback(conn, "F-orphan", "T-missing")  # feedback without a decision
        conn.commit()
    result = _gate(db_url, tmp_path)
    assert not result.success
    text = result.summary()
    assert "expect_column_values_to_be_in_set on labels.intent failed for 1 rows (rows: F-unknown)" in text
    assert "labels.decision_exists failed for 1 rows (rows: F-orphan)" in text
    assert "decisions.has_pii failed for 1 rows (rows: T-pii)" in text
    with db.connect(db_url) as conn:
        sql = "SELECT success, critical_failures FROM triage.quality_results WHERE suite = 'labels'"
        stored = conn.execute(sql).fetchone()
    assert stored["success"] is False and len(stored["critical_failures"]) >= 2


def test_slow_decisions_are_a_warning_not_a_blocker(db_url, tmp_path):
    _seed_clean(db_url)
    with db.connect(db_url) as conn:
        _decision(conn, "T-slow", "where is my card", latency=60_000)
        conn.commit()
    result = _gate(db_url, tmp_path)
    assert result.success
    assert [f.column for f in result.failures] == ["e2e_latency_ms"]


def test_a_half_written_suite_file_from_an_interrupted_run_does_not_fail_later_runs(db_url, tmp_path):
    """Seen on a fresh `make up`: a manual data_quality run and retrain's quality_gate wrote the same suite
    JSON at once, and every later run failed with JSONDecodeError."""
    _seed_clean(db_url)
    assert _gate(db_url, tmp_path).success
    suite = tmp_path / "reports" / "gx" / "gx" / "expectations" / "labels.json"
    assert suite.exists()
    suite.write_text(suite.read_text() + '\n  }\n}')  # "Extra data", as the race left it
    result = _gate(db_url, tmp_path)
    assert result.success, result.summary()


def test_labels_are_checked_against_the_live_models_taxonomy_and_imported_history_is_skipped(db_url, tmp_path):
    """A team's own label set: 'card_arrival' is valid only while a live model's taxonomy has it."""
    from triage.taxonomy import Taxonomy

    own = Taxonomy(name="shop", intents={"where_is_my_parcel": {}, "card_arrival": {}}, urgencies=["low", "high"])
    _seed_clean(db_url)  # half card_arrival, half card_declined
    with db.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO triage.model_versions (name, version, status, heads, metrics, training_args, artifact_path,"
            " artifact_sha256, changed_by, taxonomy, base_model, data_fingerprint)"
            " VALUES ('m', 1, 'champion', %s, '{}', '{}', '/x', 'x', 't', %s, 'b', 'f')",
            (Jsonb(own.heads), Jsonb(own.to_json())),
        )
        conn.execute(  # seeded history: no decision behind it, so the decision_exists check must not see it
            "INSERT INTO triage.feedback (event_id, ticket_id, kind, intent, urgency, reviewer, created_at)"
            " VALUES ('F-import', 'T-old', 'correct', 'where_is_my_parcel', 'low', 'import', %s)",
            (T0 + timedelta(minutes=5),),
        )
        conn.commit()
    result = _gate(db_url, tmp_path)
    assert not result.success
    assert [(f.column, f.unexpected_count) for f in result.critical_failures] == [("intent", 10)]
    assert result.rows["labels"] == 20
