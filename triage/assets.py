"""Airflow Asset identities shared by the DAGs that produce and consume them, defined once.

Plain strings so that importing this module never imports Airflow; a DAG builds
`Asset(name=DRIFT_ASSET_NAME, uri=DRIFT_ASSET_URI)` from them.
"""

from __future__ import annotations

from typing import Final

# Updated by `drift_report` when a window crosses the drift thresholds; `retrain_classifier` schedules on it.
DRIFT_ASSET_NAME: Final = "triage_drift_detected"
DRIFT_ASSET_URI: Final = "triage://monitoring/drift_detected"

# Updated by `retrain_classifier` when it registers a candidate (extra: model, version); `canary_promotion`
# schedules on it.
CANDIDATE_ASSET_NAME: Final = "triage_candidate_registered"
CANDIDATE_ASSET_URI: Final = "triage://ml/candidate_registered"
