"""The data window of a scheduled job: what a DAG run reads, decided in one place.

A scheduled run has a data interval; a run from the Airflow UI's Trigger button (a REST call with
`logical_date: null`) has none, and then the window is the last schedule period ending when the run
was asked for. Explicit params (the Trigger form's `window_start` / `window_end`) win over both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from triage.errors import TriageError


class WindowError(TriageError, ValueError):
    """A window that cannot be read: a param that is not a time, or an end not after its start."""


def _as_time(name: str, value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise WindowError(
                f"{name} {value!r} is not a time; give an ISO 8601 time such as 2026-12-01T09:00:00Z"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_window(
    interval_start: datetime | None,
    interval_end: datetime | None,
    *,
    run_after: datetime,
    period: timedelta,
    params: dict[str, Any] | None = None,
) -> tuple[datetime, datetime]:
    """[start, end) for one run: params, else the data interval, else the last `period` ending at `run_after`."""
    params = params or {}
    start = _as_time("window_start", params.get("window_start"))
    end = _as_time("window_end", params.get("window_end"))
    if interval_start is not None and interval_end is not None:
        default_start, default_end = interval_start, interval_end
    else:
        default_end = run_after if run_after.tzinfo else run_after.replace(tzinfo=UTC)
        default_start = default_end - period
    if end is None:
        end = default_end if start is None else min(start + (default_end - default_start), default_end)
    if start is None:
        start = end - (default_end - default_start)
    if end <= start:
        raise WindowError(f"window_end {end.isoformat()} is not after window_start {start.isoformat()}; "
                          "give an end later than the start, or leave both empty for the last period")
    return start, end


def schedule_period(cron: str, at: datetime) -> timedelta:
    """The length of the schedule's period that ends last before `at` (a cron expression, e.g. hourly = 1 h)."""
    from croniter import croniter  # type: ignore[import-untyped]  # no stubs; an Airflow dependency

    ticks = croniter(cron, at if at.tzinfo else at.replace(tzinfo=UTC))
    last: datetime = ticks.get_prev(datetime)
    before: datetime = ticks.get_prev(datetime)
    return last - before
