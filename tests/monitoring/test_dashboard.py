"""The dashboard renders from the marts and loads in headless Chromium with no console errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from monitoring import dashboard
from tests.support import fixtures
from triage import db

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=1"]


@pytest.fixture(scope="module")
def rendered(marts_db, tmp_path_factory: pytest.TempPathFactory) -> Path:
    url, _, _ = marts_db
    reports = tmp_path_factory.mktemp("reports")
    evidently = reports / "drift" / "latest.html"
    evidently.parent.mkdir()
    evidently.write_text("<html><body>report</body></html>", encoding="utf-8")
    end = fixtures.HOUR.replace(hour=0) + timedelta(days=3)
    with db.connect(url) as conn:
        conn.execute(
            "INSERT INTO triage.drift_reports (model_name, model_version, window_start, window_end, n_current, "
            "metrics, drift_detected, reasons, report_path) VALUES (%s, 1, %s, %s, 240, '{\"status\": \"ok\"}', "
            "true, '[\"text drift (domain classifier ROC AUC) 0.840 >= 0.65\"]', %s)",
            (fixtures.MODEL, end - timedelta(hours=1), end, str(evidently)),
        )
    return dashboard.render_dashboard(url, reports / "dashboard.html")


def test_page_is_self_contained(rendered: Path) -> None:
    page = rendered.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']https?://""", page), "the page must not load anything from the network"
    assert page.count("<svg") >= len(dashboard.SERIES)
    assert 'href="drift/latest.html"' in page  # relative link to the Evidently report
    assert ">DRIFT<" in page


def test_tiles_compare_the_last_24_hours_with_the_previous(rendered: Path) -> None:
    page = rendered.read_text(encoding="utf-8")
    tickets = re.search(r'id="tile-tickets".*?class="value">([^<]+)<.*?class="delta (\w+)">([^<]+)<', page)
    assert tickets is not None
    assert tickets.group(1) == "240"  # the newest simulated day
    assert tickets.group(3).startswith("+0.0%")


def test_empty_marts_say_what_to_do(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(dashboard.DashboardError, match="build the marts first"):
        dashboard.render_dashboard(db_url, tmp_path / "d.html")


@pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian package chromium (make .venv/.chromium)")
def test_loads_in_headless_chromium_without_console_errors(rendered: Path, tmp_path: Path) -> None:
    screenshot = rendered.parent / "dashboard.png"
    url = rendered.resolve().as_uri()
    shot = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={screenshot}",
         "--window-size=1280,2400", url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    console = [line for line in shot.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in dashboard.SECTIONS:
        assert f'<section id="{section}">' in dom.stdout, f"section {section} missing from the rendered DOM"
    assert [line for line in dom.stderr.splitlines() if "CONSOLE" in line] == []


def test_reviewers_section_shows_throughput_and_minutes_per_case() -> None:
    rows = [{"reviewer": "ana", "handled": 12, "minutes": 30.0, "minutes_per_case": 2.5, "override_rate": 0.25}]
    html_ = dashboard._reviewers_section(rows)
    assert "<td>ana</td>" in html_ and ">12<" in html_ and "2.5 min" in html_ and "25.0%" in html_
    assert "No reviews in the console" in dashboard._reviewers_section([])
