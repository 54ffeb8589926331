"""Monitoring for Triage: Evidently drift reports, the dbt metrics rollup and the HTML dashboard.

Public entry points (called by the DAGs and the CLI; each module imports its heavy
dependencies inside its functions):

- `monitoring.drift.run_drift_report` - one window's Evidently report and `drift_reports` row
- `monitoring.rollup.run_rollup` - `dbt source freshness` then `dbt build` into the `analytics` schema
- `monitoring.dashboard.render_dashboard` - a self-contained HTML page from the marts
"""

from __future__ import annotations

from triage.assets import DRIFT_ASSET_NAME, DRIFT_ASSET_URI

__all__ = ["DRIFT_ASSET_NAME", "DRIFT_ASSET_URI"]
