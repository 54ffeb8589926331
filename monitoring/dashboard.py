"""A self-contained HTML dashboard from the `analytics` marts: inline SVG, inline CSS, no JavaScript.

Sections: KPI tiles (last 24 h vs the 24 h before), hourly time series (volume, automation and
override rates, p95 latency, cost per 1,000 tickets), breakdowns by intent and by model version
(champion vs canary), and the latest drift status with a link to its Evidently report. The clock is
the data's: "now" is the end of the newest hour in the marts, so a render is reproducible.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from triage import db
from triage.errors import TriageError
from triage.names import ANALYTICS_SCHEMA, T_DRIFT_REPORTS, qualified
from triage.settings import get_settings

SECTIONS = ("kpis", "timeseries", "by-intent", "by-model-version", "reviewers", "drift")
DASHBOARD_FILE = "dashboard.html"
FCT = f"{ANALYTICS_SCHEMA}.fct_decisions"
AGG = f"{ANALYTICS_SCHEMA}.agg_triage_kpis"
REVIEWERS = f"{ANALYTICS_SCHEMA}.agg_reviewer_daily"

_TILE_SQL = f"""
SELECT
    count(*) AS tickets,
    avg(is_automated_completion::int) AS automation_rate,
    sum(is_overridden::int)::float / nullif(sum(is_reviewed::int), 0) AS override_rate,
    avg(is_abstained::int) AS abstention_rate,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY e2e_latency_ms) AS e2e_p95_ms,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY inference_ms) AS inference_p95_ms,
    1000 * sum(cost_usd) / nullif(count(*), 0) AS cost_per_1k_usd
FROM {FCT} WHERE decided_at >= %(start)s AND decided_at < %(end)s
"""

_BREAKDOWN_SQL = """
SELECT {dims}, count(*) AS tickets,
    avg(is_automated_completion::int) AS automation_rate,
    sum(is_overridden::int)::float / nullif(sum(is_reviewed::int), 0) AS override_rate,
    avg(is_abstained::int) AS abstention_rate,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY e2e_latency_ms) AS e2e_p95_ms,
    1000 * sum(cost_usd) / nullif(count(*), 0) AS cost_per_1k_usd
FROM {fct} WHERE decided_at >= %(start)s AND decided_at < %(end)s
GROUP BY {dims} ORDER BY tickets DESC, {dims}
"""


class DashboardError(TriageError, RuntimeError):
    """The marts are missing or empty; the message says how to build them."""


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    fmt: str  # "int", "pct", "ms", "usd"
    better: str  # "up" or "down": which direction is good


TILES = (
    Tile("tickets", "Tickets", "int", "up"),
    Tile("automation_rate", "Automated completion", "pct", "up"),
    Tile("override_rate", "Human override rate", "pct", "down"),
    Tile("abstention_rate", "Abstention rate", "pct", "down"),
    Tile("e2e_p95_ms", "p95 end-to-end latency", "ms", "down"),
    Tile("inference_p95_ms", "p95 inference latency", "ms", "down"),
    Tile("cost_per_1k_usd", "Cost per 1,000 tickets", "usd", "down"),
)

SERIES = (
    ("tickets", "Volume (tickets per hour)", "int"),
    ("automated_completion_rate", "Automated completion rate", "pct"),
    ("override_rate", "Human override rate", "pct"),
    ("e2e_latency_p95_ms", "p95 end-to-end latency", "ms"),
    ("cost_per_1k_tickets_usd", "Cost per 1,000 tickets", "usd"),
)


def fmt(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    v = float(value)
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "ms":
        return f"{v:,.0f} ms" if v >= 100 else f"{v:.1f} ms"
    if kind == "usd":
        return f"${v:,.4f}" if v < 1 else f"${v:,.2f}"
    return f"{v:,.0f}"


def _delta(cur: Any, prev: Any, tile: Tile) -> str:
    if cur is None or prev is None:
        return '<span class="delta flat">no previous data</span>'
    c, p = float(cur), float(prev)
    if tile.fmt == "pct":
        diff, text = c - p, f"{100 * (c - p):+.1f} pts"
    else:
        diff = c - p
        text = f"{100 * diff / p:+.1f}%" if p else f"{diff:+.2f}"
    good = (diff > 0) == (tile.better == "up")
    cls = "flat" if abs(diff) < 1e-12 else ("good" if good else "bad")
    return f'<span class="delta {cls}">{html.escape(text)} vs previous 24 h</span>'


def line_chart(points: list[tuple[datetime, float | None]], title: str, kind: str,
               width: int = 560, height: int = 180) -> str:
    """An inline SVG line chart with min/max labels and the first/last hour on the x axis."""
    pad_l, pad_r, pad_t, pad_b = 70, 12, 28, 28
    values = [v for _, v in points if v is not None]
    esc = html.escape(title)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" class="chart">'
            f'<title>{esc}</title><text x="{pad_l}" y="18" class="ctitle">{esc}</text>')
    if not values:
        return head + f'<text x="{pad_l}" y="{height // 2}" class="axis">no data</text></svg>'
    lo, hi = min(values + [0.0]), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    t0, t1 = points[0][0], points[-1][0]
    span = max((t1 - t0).total_seconds(), 1.0)
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(t: datetime, v: float) -> tuple[float, float]:
        x = pad_l + plot_w * ((t - t0).total_seconds() / span if len(points) > 1 else 0.5)
        return x, pad_t + plot_h * (1 - (v - lo) / (hi - lo))

    segments: list[list[str]] = [[]]
    for t, v in points:
        if v is None:
            segments.append([])
            continue
        x, y = xy(t, v)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(f'<polyline class="line" points="{" ".join(s)}"/>' for s in segments if len(s) > 1)
    dots = "".join(f'<circle class="dot" cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2"/>'
                   for s in segments for p in s if len(s) == 1)
    axis = (f'<line class="grid" x1="{pad_l}" y1="{pad_t}" x2="{pad_l + plot_w}" y2="{pad_t}"/>'
            f'<line class="grid" x1="{pad_l}" y1="{pad_t + plot_h}" x2="{pad_l + plot_w}" y2="{pad_t + plot_h}"/>'
            f'<text x="{pad_l - 6}" y="{pad_t + 4}" class="axis" text-anchor="end">{html.escape(fmt(hi, kind))}</text>'
            f'<text x="{pad_l - 6}" y="{pad_t + plot_h + 4}" class="axis" text-anchor="end">'
            f'{html.escape(fmt(lo, kind))}</text>'
            f'<text x="{pad_l}" y="{height - 8}" class="axis">{t0:%m-%d %H:%M}</text>'
            f'<text x="{pad_l + plot_w}" y="{height - 8}" class="axis" text-anchor="end">{t1:%m-%d %H:%M} UTC</text>')
    return head + axis + lines + dots + "</svg>"


def _bar(value: Any, kind: str) -> str:
    if value is None:
        return "–"
    share = max(0.0, min(1.0, float(value)))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="80" height="10" class="bar" aria-hidden="true">'
            f'<rect width="80" height="10" class="bar-bg"/><rect width="{80 * share:.1f}" height="10" '
            f'class="bar-fg"/></svg> {fmt(value, kind)}')


def _table(rows: list[dict[str, Any]], dims: list[tuple[str, str]]) -> str:
    if not rows:
        return '<p class="empty">No decisions in the last 24 hours.</p>'
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in dims)
    head += ("<th>Tickets</th><th>Automated completion</th><th>Override rate</th><th>Abstention</th>"
             "<th>p95 e2e</th><th>Cost / 1k</th>")
    body = []
    for r in rows:
        cells = "".join(f"<td>{html.escape(str(r[k]))}</td>" for k, _ in dims)
        cells += (f"<td class=num>{fmt(r['tickets'], 'int')}</td><td>{_bar(r['automation_rate'], 'pct')}</td>"
                  f"<td>{_bar(r['override_rate'], 'pct')}</td><td>{_bar(r['abstention_rate'], 'pct')}</td>"
                  f"<td class=num>{fmt(r['e2e_p95_ms'], 'ms')}</td>"
                  f"<td class=num>{fmt(r['cost_per_1k_usd'], 'usd')}</td>")
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _reviewers_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ('<p class="empty">No reviews in the console in the last 24 hours (people work the queue at '
                "the console, `triage up` prints its address).</p>")
    def minutes(v: Any) -> str:
        return "–" if v is None else f"{float(v):.1f} min"

    body = "".join(
        f"<tr><td>{html.escape(str(r['reviewer']))}</td><td class=num>{fmt(r['handled'], 'int')}</td>"
        f"<td class=num>{minutes(r['minutes_per_case'])}</td><td>{_bar(r['override_rate'], 'pct')}</td></tr>"
        for r in rows)
    return ("<table><thead><tr><th>Reviewer</th><th>Tickets handled</th><th>Human minutes per case</th>"
            f"<th>Override rate</th></tr></thead><tbody>{body}</tbody></table>")


def _link(report_path: str | None, out_dir: Path) -> str:
    if not report_path:
        return "no report file (no verdict)"
    target = Path(report_path)
    try:
        href = os.path.relpath(target, out_dir)
    except ValueError:
        href = target.as_uri()
    return f'<a href="{html.escape(href)}">Evidently report</a> <code>{html.escape(str(target))}</code>'


def _drift_section(report: dict[str, Any] | None, out_dir: Path) -> str:
    if report is None:
        return '<p class="empty">No drift report yet: the drift_report DAG writes one per window.</p>'
    status = (report.get("metrics") or {}).get("status", "ok")
    if status != "ok":
        badge, cls = "no verdict", "flat"
    elif report["drift_detected"]:
        badge, cls = "DRIFT", "bad"
    else:
        badge, cls = "no drift", "good"
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in report.get("reasons") or []) or "<li>none</li>"
    return (f'<p><span class="badge {cls}">{badge}</span> model {html.escape(str(report["model_name"]))} '
            f'v{html.escape(str(report["model_version"]))}, window {report["window_start"]:%Y-%m-%d %H:%M} to '
            f'{report["window_end"]:%Y-%m-%d %H:%M} UTC, {report["n_current"]} decisions.</p>'
            f"<ul>{reasons}</ul><p>{_link(report.get('report_path'), out_dir)}</p>")


def load(url: str, hours: int) -> dict[str, Any]:
    """Everything the page shows, read from the marts (and the latest drift_reports row)."""
    import psycopg

    with db.connect(url) as conn:
        try:
            latest = conn.execute(f"SELECT max(decided_at) AS t FROM {FCT}").fetchone()
        except psycopg.errors.UndefinedTable:
            raise DashboardError(
                f"{FCT} does not exist: build the marts first (the metrics_rollup DAG, or "
                "`dbt build` in dbt/ with the DBT_TRIAGE_* variables)"
            ) from None
        if latest is None or latest["t"] is None:
            raise DashboardError(f"{FCT} is empty: no decisions yet, or run metrics_rollup after traffic arrives")
        now = latest["t"].replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        day, prev = (now - timedelta(hours=24), now), (now - timedelta(hours=48), now - timedelta(hours=24))
        current = conn.execute(_TILE_SQL, {"start": day[0], "end": day[1]}).fetchone()
        previous = conn.execute(_TILE_SQL, {"start": prev[0], "end": prev[1]}).fetchone()
        series = conn.execute(
            f"SELECT period_start, {', '.join(k for k, _, _ in SERIES)} FROM {AGG} WHERE grain = 'hour' "
            "AND breakdown = 'overall' AND period_start >= %s AND period_start < %s ORDER BY period_start",
            (now - timedelta(hours=hours), now),
        ).fetchall()
        by_intent = conn.execute(
            _BREAKDOWN_SQL.format(dims="intent", fct=FCT), {"start": day[0], "end": day[1]}
        ).fetchall()
        by_model = conn.execute(
            _BREAKDOWN_SQL.format(dims="model_version_key, arm", fct=FCT), {"start": day[0], "end": day[1]}
        ).fetchall()
        reviewers = conn.execute(
            "SELECT reviewer, sum(tickets_handled) AS handled, sum(human_minutes) AS minutes, "
            "sum(human_minutes) / nullif(sum(tickets_handled), 0) AS minutes_per_case, "
            "sum(override_rate * tickets_handled) / nullif(sum(tickets_handled), 0) AS override_rate "
            f"FROM {REVIEWERS} WHERE period_start >= %s - interval '1 day' AND period_start < %s "
            "GROUP BY reviewer ORDER BY handled DESC", (day[0], day[1])).fetchall()
        drift = conn.execute(
            "SELECT model_name, model_version, window_start, window_end, n_current, drift_detected, reasons, "
            f"report_path, metrics FROM {qualified(T_DRIFT_REPORTS)} ORDER BY window_end DESC, id DESC LIMIT 1"
        ).fetchone()
    return {"now": now, "hours": hours, "current": current or {}, "previous": previous or {},
            "series": series, "by_intent": by_intent, "by_model": by_model, "reviewers": reviewers, "drift": drift}


def _fill_hours(rows: list[dict[str, Any]], start: datetime, end: datetime, key: str) -> list[tuple[datetime, Any]]:
    """One point per hour; an hour with no tickets has volume 0 and no rate (a gap in the line)."""
    by_hour = {r["period_start"]: r for r in rows}
    out: list[tuple[datetime, Any]] = []
    t = start
    while t < end:
        r = by_hour.get(t)
        if r is None:
            out.append((t, 0.0 if key == "tickets" else None))
        else:
            out.append((t, None if r[key] is None else float(r[key])))
        t += timedelta(hours=1)
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933;background:#f7f8fa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}.sub{color:#616e7c;margin:0 0 16px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:12px}
.tile{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:12px}
.tile .label{font-size:12px;color:#616e7c;text-transform:uppercase;letter-spacing:.04em}
.tile .value{font-size:24px;font-weight:600;margin:6px 0}.delta{font-size:12px}
.good{color:#0e7c3a}.bad{color:#b42318}.flat{color:#616e7c}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}
.chart{background:#fff;border:1px solid #e4e7eb;border-radius:8px}
.line{fill:none;stroke:#2f6fde;stroke-width:2}.dot{fill:#2f6fde}.grid{stroke:#e4e7eb}
.axis{font-size:11px;fill:#616e7c}.ctitle{font-size:13px;font-weight:600;fill:#1f2933}
table{border-collapse:collapse;background:#fff;border:1px solid #e4e7eb;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid #eef0f2;text-align:left;font-size:13px}
th{background:#f0f2f5}td.num{text-align:right}.bar-bg{fill:#eef0f2}.bar-fg{fill:#2f6fde}
.badge{font-weight:700;padding:2px 8px;border-radius:4px;border:1px solid currentColor}.empty{color:#616e7c}
"""


def render_html(data: dict[str, Any], out_dir: Path) -> str:
    now: datetime = data["now"]
    tiles = "".join(
        f'<div class="tile" id="tile-{t.key}"><div class="label">{html.escape(t.label)}</div>'
        f'<div class="value">{fmt(data["current"].get(t.key), t.fmt)}</div>'
        f'{_delta(data["current"].get(t.key), data["previous"].get(t.key), t)}</div>'
        for t in TILES
    )
    start = now - timedelta(hours=data["hours"])
    charts = "".join(line_chart(_fill_hours(data["series"], start, now, key), title, kind)
                     for key, title, kind in SERIES)
    model_rows = [dict(r) for r in data["by_model"]]
    intent_table = _table([dict(r) for r in data["by_intent"]], [("intent", "Intent")])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Triage dashboard</title><style>{_CSS}</style></head>
<body>
<h1>Triage: support-ticket triage KPIs</h1>
<p class="sub">Last 24 hours to {now:%Y-%m-%d %H:%M} UTC (the newest hour in the marts), compared with the
24 hours before. Source: the <code>{ANALYTICS_SCHEMA}</code> marts built by the metrics_rollup DAG.</p>
<section id="kpis"><h2>KPIs, last 24 h</h2><div class="tiles">{tiles}</div></section>
<section id="timeseries"><h2>Hourly, last {data["hours"]} h</h2><div class="charts">{charts}</div></section>
<section id="by-intent"><h2>By intent, last 24 h</h2>{intent_table}</section>
<section id="by-model-version"><h2>By model version (champion vs canary), last 24 h</h2>
{_table(model_rows, [("model_version_key", "Model version"), ("arm", "Arm")])}</section>
<section id="reviewers"><h2>Reviewers (throughput and handling time), last 24 h</h2>
{_reviewers_section([dict(r) for r in data["reviewers"]])}</section>
<section id="drift"><h2>Latest drift status</h2>{_drift_section(data["drift"], out_dir)}</section>
</body></html>
"""


def render_dashboard(url: str | None = None, out_path: Path | None = None, hours: int = 48) -> Path:
    """Render the dashboard from the marts to `out_path` (default `<reports>/dashboard.html`); return it."""
    settings = get_settings()
    out_path = out_path or settings.reports_path / DASHBOARD_FILE
    data = load(url or settings.db_url(), hours)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp")
    tmp.write_text(render_html(data, out_path.parent.resolve()), encoding="utf-8")
    os.replace(tmp, out_path)
    return out_path
