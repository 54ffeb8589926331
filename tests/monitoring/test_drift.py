"""Evidently drift on seeded windows: flagged with the simulator's drift mode, not without it."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitoring import drift
from tests.monitoring.conftest import fresh_db
from tests.support.seed import MODEL, seed_window
from triage import db

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
CLEAN = (T0 + timedelta(hours=24), T0 + timedelta(hours=25))
DRIFTED = (T0 + timedelta(hours=25), T0 + timedelta(hours=26))
THIN = (T0 + timedelta(hours=26), T0 + timedelta(hours=27))
THRESHOLDS = drift.DriftThresholds(min_rows=200, min_feedback=30)


@pytest.fixture(scope="module")
def seeded(pg_server, reference_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    url = fresh_db(pg_server, "drift")
    seed_window(url, T0, CLEAN[0], 400, seed=11)  # the confidence baseline
    seed_window(url, *CLEAN, 400, seed=12)
    seed_window(url, *DRIFTED, 400, seed=13, drift=True)
    seed_window(url, *THIN, 20, seed=14)
    reports = tmp_path_factory.mktemp("reports")
    results = {
        name: drift.run_drift_report(*window, url=url, model_name=MODEL, reference_path=reference_csv,
                                     reports_dir=reports, thresholds=THRESHOLDS)
        for name, window in (("clean", CLEAN), ("drifted", DRIFTED), ("thin", THIN))
    }
    return url, results


def test_clean_window_has_no_drift(seeded) -> None:
    _, results = seeded
    clean = results["clean"]
    assert clean.status == drift.STATUS_OK
    assert not clean.drift_detected, clean.reasons
    assert clean.metrics["text_drift"]["score"] < THRESHOLDS.text_auc
    assert clean.metrics["intent_confidence_drift"]["drift"] is False  # baseline was used
    assert Path(clean.report_path).is_file()


def test_drifted_window_is_flagged_with_reasons(seeded) -> None:
    _, results = seeded
    drifted = results["drifted"]
    assert drifted.drift_detected
    assert drifted.metrics["text_drift"]["drift"] is True
    assert drifted.metrics["intent_drift"]["drift"] is True
    assert any(r.startswith("text drift") for r in drifted.reasons)
    html = Path(drifted.report_path).read_text(encoding="utf-8")
    assert "Absolute text content drift" in html


def test_thin_window_gives_no_verdict_and_no_report(seeded) -> None:
    _, results = seeded
    thin = results["thin"]
    assert thin.status == drift.STATUS_INSUFFICIENT
    assert not thin.drift_detected and thin.report_path is None
    assert "too little data" in thin.reasons[0]


def test_rows_are_upserted_once_per_window(seeded, reference_csv: Path, tmp_path: Path) -> None:
    url, results = seeded
    again = drift.run_drift_report(*THIN, url=url, model_name=MODEL, reference_path=reference_csv,
                                   reports_dir=tmp_path, thresholds=THRESHOLDS)
    assert again.status == drift.STATUS_INSUFFICIENT
    with db.connect(url) as conn:
        rows = conn.execute("SELECT window_start, metrics->>'status' AS status "
                            "FROM triage.drift_reports ORDER BY window_start").fetchall()
    # (other tests re-run the clean window with other thresholds: its verdict is theirs to check)
    assert [(r["window_start"], r["status"]) for r in rows] == [
        (CLEAN[0], "ok"), (DRIFTED[0], "ok"), (THIN[0], "insufficient_data")]
    listed = drift.latest_reports(url)
    assert listed[0]["window_start"] == THIN[0]


def test_reference_is_sampled_down_to_max_rows(seeded, reference_csv: Path, tmp_path: Path) -> None:
    url, _ = seeded
    small = replace(THRESHOLDS, max_rows=300)
    result = drift.run_drift_report(*CLEAN, url=url, model_name=MODEL, reference_path=reference_csv,
                                    reports_dir=tmp_path, thresholds=small)
    assert (result.metrics["n_reference"], result.metrics["n_sampled"]) == (300, 300)


def test_mismatch_threshold_flags_a_clean_window(seeded, reference_csv: Path, tmp_path: Path) -> None:
    url, _ = seeded
    strict = replace(THRESHOLDS, mismatch_max=0.0)
    result = drift.run_drift_report(*CLEAN, url=url, model_name=MODEL, reference_path=reference_csv,
                                    reports_dir=tmp_path, thresholds=strict)
    assert result.drift_detected
    assert [r for r in result.reasons if r.startswith("label mismatch rate")]


def test_missing_reference_names_the_file(db_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "reference.csv"
    with pytest.raises(drift.DriftInputError, match="nope/reference.csv"):
        drift.run_drift_report(*CLEAN, url=db_url, model_name=MODEL, reference_path=missing)


def test_no_champion_says_how_to_fix(db_url: str) -> None:
    with pytest.raises(drift.DriftInputError, match="no champion"):
        drift.run_drift_report(*CLEAN, url=db_url, model_name=MODEL)


def test_scrub_masks_pii_and_drops_placeholders_on_both_sides() -> None:
    raw = "Call me on +44 7123 456789 or mail a.b@gmail.com, card 4111 1111 1111 1111."
    masked = "Call me on <PHONE_1> or mail <EMAIL_1>, card <CARD_1>."
    assert drift.scrub([raw]) == drift.scrub([masked]) == ["call me on or mail , card ."]


def test_reference_file_name_matches_the_model_layout() -> None:
    from ml import layout

    assert drift.REFERENCE_FILE == layout.REFERENCE


def test_checks_without_data_are_skipped_with_the_reason(reference_csv: Path) -> None:
    import pandas as pd

    reference = drift.load_reference(reference_csv)
    n = 250
    current = pd.DataFrame({
        "ticket_id": [f"T{i}" for i in range(n)], "text": reference["text"].iloc[:n].tolist(),
        "intent": [None] * n, "urgency": reference["urgency"].iloc[:n].tolist(),
        "intent_confidence": [None] * n, "urgency_confidence": [0.8] * n, "abstained": [True] * n,
        "label_intent": [None] * n,
    })
    metrics, reasons = drift.evaluate(reference, current, None, THRESHOLDS, None)
    assert "skipped" in metrics["intent_drift"] and "skipped" in metrics["intent_confidence_drift"]
    assert "skipped" in metrics["urgency_confidence_drift"]  # no baseline
    assert metrics["urgency_drift"]["drift"] is False
    assert reasons == [f"abstention rate 1.000 > {THRESHOLDS.abstention_max}"]


def test_reports_older_than_the_retention_are_deleted_and_unlinked(seeded, tmp_path: Path) -> None:
    url, _ = seeded
    folder = tmp_path / "drift"
    folder.mkdir()
    old, new = folder / "m__old.html", folder / "m__new.html"
    for p in (old, new):
        p.write_text("<html></html>")
    now = time.time()
    os.utime(old, (now - 40 * 86_400, now - 40 * 86_400))
    with db.connect(url) as conn:
        conn.execute("INSERT INTO triage.drift_reports (model_name, window_start, window_end, n_current, metrics, "
                     "drift_detected, reasons, report_path) VALUES ('m', now() - interval '40 days', "
                     "now() - interval '40 days' + interval '1 hour', 0, '{}', false, '[]', %s)", (str(old),))
    assert drift.prune_reports(url, tmp_path, keep_days=0) == [], "0 keeps every report"
    assert drift.prune_reports(url, tmp_path, keep_days=30, now=now) == [old]
    assert not old.exists() and new.exists()
    with db.connect(url) as conn:
        row = conn.execute("SELECT report_path FROM triage.drift_reports WHERE model_name = 'm'").fetchone()
        conn.execute("DELETE FROM triage.drift_reports WHERE model_name = 'm'")
    assert row is not None and row["report_path"] is None
