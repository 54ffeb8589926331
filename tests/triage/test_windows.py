"""The data window of a DAG run: scheduled, manual (no data interval), or from the Trigger form's params."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from triage.errors import TriageError
from triage.windows import WindowError, run_window, schedule_period

NOW = datetime(2026, 12, 2, 18, 40, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_a_scheduled_run_reads_its_data_interval() -> None:
    start, end = NOW - 3 * HOUR, NOW - 2 * HOUR
    assert run_window(start, end, run_after=NOW, period=HOUR) == (start, end)


def test_a_manual_run_reads_the_last_period_ending_when_it_was_asked_for() -> None:
    assert run_window(None, None, run_after=NOW, period=HOUR) == (NOW - HOUR, NOW)
    naive = NOW.replace(tzinfo=None)
    assert run_window(None, None, run_after=naive, period=timedelta(days=1)) == (NOW - timedelta(days=1), NOW)


def test_params_win_and_keep_the_period_when_one_end_is_given() -> None:
    params = {"window_start": "2026-12-01T09:00:00Z", "window_end": "2026-12-01T12:00:00+00:00"}
    assert run_window(None, None, run_after=NOW, period=HOUR, params=params) == (
        datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 12, tzinfo=UTC))
    only_start = run_window(None, None, run_after=NOW, period=HOUR, params={"window_start": "2026-12-01T09:00:00"})
    assert only_start == (datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC))
    only_end = run_window(NOW - 2 * HOUR, NOW - HOUR, run_after=NOW, period=HOUR,
                          params={"window_start": None, "window_end": "2026-12-01T12:00:00Z"})
    assert only_end == (datetime(2026, 12, 1, 11, tzinfo=UTC), datetime(2026, 12, 1, 12, tzinfo=UTC))


@pytest.mark.parametrize("params", [
    {"window_start": "yesterday"},
    {"window_start": "2026-12-01T12:00:00Z", "window_end": "2026-12-01T09:00:00Z"},
])
def test_a_bad_param_is_one_error_naming_it(params: dict[str, str]) -> None:
    with pytest.raises(WindowError, match="window_") as caught:
        run_window(None, None, run_after=NOW, period=HOUR, params=params)
    assert isinstance(caught.value, TriageError)


@pytest.mark.parametrize(("cron", "period"), [
    ("0 * * * *", HOUR), ("0 6 * * *", timedelta(days=1)), ("*/15 * * * *", timedelta(minutes=15)),
])
def test_schedule_period_is_the_gap_between_ticks(cron: str, period: timedelta) -> None:
    assert schedule_period(cron, NOW) == period
