"""`triage reports | dashboard | drift`: what monitoring produced, the KPI page, a drift check on demand."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apps.cli.common import UsageError
from triage.settings import get_settings


def register(sub: Any) -> None:
    rep = sub.add_parser("reports", help="list drift reports (newest first) and the dashboard file")
    rep.add_argument("--limit", type=int, default=20, help="how many drift reports to list (default 20)")
    rep.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    rep.set_defaults(func=cmd_reports)

    dash = sub.add_parser("dashboard", help="render the KPI dashboard (self-contained HTML) and print its path")
    dash.add_argument("--out", type=Path, default=None, help="output file (default <reports>/dashboard.html)")
    dash.add_argument("--hours", type=int, default=48, help="hours of hourly time series to show (default 48)")
    dash.set_defaults(func=cmd_dashboard)

    drift = sub.add_parser("drift", help="run the Evidently drift check for one window now")
    drift.add_argument("--start", required=True, help="window start, ISO 8601 (UTC if no offset)")
    drift.add_argument("--end", required=True, help="window end, ISO 8601 (UTC if no offset)")
    drift.add_argument("--reference", type=Path, default=None,
                       help="reference CSV (text,intent,urgency); default: the registry champion's sample")
    drift.set_defaults(func=cmd_drift)


def _when(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--{name} {value!r} is not an ISO 8601 time; use e.g. 2026-03-01T10:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_reports(args: argparse.Namespace) -> int:
    from monitoring.dashboard import DASHBOARD_FILE
    from monitoring.drift import latest_reports

    if args.limit < 1:
        raise UsageError(f"--limit {args.limit} must be at least 1")
    rows = latest_reports(limit=args.limit)
    for r in rows:
        status = (r["metrics"] or {}).get("status", "ok")
        verdict = "no verdict" if status != "ok" else ("DRIFT" if r["drift_detected"] else "no drift")
        if args.json:
            print(json.dumps({**{k: v for k, v in r.items() if k != "metrics"}, "verdict": verdict}, default=str))
        else:
            print(f"{r['window_start']:%Y-%m-%d %H:%M} .. {r['window_end']:%H:%M}  {r['model_name']} "
                  f"v{r['model_version']}  {verdict:<10}  n={r['n_current']:<6} {r['report_path'] or '-'}")
    if not rows and not args.json:
        print("no drift reports yet: the drift_report DAG writes one per window (or run `triage drift`)")
    dashboard = get_settings().reports_path / DASHBOARD_FILE
    if dashboard.exists() and not args.json:
        print(f"dashboard: {dashboard}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from monitoring.dashboard import render_dashboard

    if args.hours < 1:
        raise UsageError(f"--hours {args.hours} must be at least 1")
    path = render_dashboard(out_path=args.out, hours=args.hours)
    print(path)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from monitoring.drift import run_drift_report, summary_line

    start, end = _when(args.start, "start"), _when(args.end, "end")
    result = run_drift_report(start, end, reference_path=args.reference)
    print(summary_line(result))
    return 0
