"""`triage reports`, `triage dashboard` and `triage drift` through the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.cli import main
from triage.settings import get_settings


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def point(url: str) -> Path:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("TRIAGE_REPORTS_DIR", str(tmp_path / "reports"))
        get_settings.cache_clear()
        return tmp_path / "reports"

    yield point
    get_settings.cache_clear()


def test_dashboard_prints_the_rendered_file(marts_db, env, capsys: pytest.CaptureFixture[str]) -> None:
    reports = env(marts_db[0])
    assert main(["dashboard", "--hours", "24"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == reports / "dashboard.html" and printed.is_file()
    assert main(["reports"]) == 0
    assert f"dashboard: {printed}" in capsys.readouterr().out


def test_dashboard_without_marts_names_the_fix(db_url: str, env, capsys: pytest.CaptureFixture[str]) -> None:
    env(db_url)
    assert main(["dashboard"]) == 1
    assert "build the marts first" in capsys.readouterr().err


def test_drift_then_reports_lists_the_window(db_url: str, env, reference_csv: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    env(db_url)
    assert main(["drift", "--start", "2026-05-01T10:00", "--end", "2026-05-01T11:00",
                 "--reference", str(reference_csv)]) == 0
    assert '"verdict": "no verdict"' in capsys.readouterr().out
    assert main(["reports"]) == 0
    out = capsys.readouterr().out
    assert "2026-05-01 10:00 .. 11:00" in out and "no verdict" in out


def test_bad_times_and_missing_reference_are_usage_errors(db_url: str, env, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    env(db_url)
    assert main(["drift", "--start", "yesterday", "--end", "2026-05-01T11:00"]) == 1
    assert "--start 'yesterday' is not an ISO 8601 time" in capsys.readouterr().err
    assert main(["drift", "--start", "2026-05-01T10:00", "--end", "2026-05-01T11:00"]) == 1
    assert "has no champion" in capsys.readouterr().err
