"""Drift of one window of decisions against the champion's training sample, with Evidently.

Reference = the champion's `reference.csv` (text, intent, urgency: its training sample);
current = the decisions of the window. Checks, each with a threshold from the settings:

- text drift of the masked ticket text (Evidently's domain-classifier method: ROC AUC of a
  classifier that tells reference from current text),
- prediction drift per head (Jensen-Shannon distance of the intent / urgency distributions),
- confidence drift (normed Wasserstein distance) against the same model's earlier decisions,
  since the training sample carries no confidences,
- abstention rate, and the label mismatch rate where reviewers gave a label.

Too little data in the window gives a row that says so and no verdict.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml import registry
from triage import db
from triage.errors import TriageError
from triage.names import T_DECISIONS, T_DRIFT_REPORTS, V_LABELLED_DECISIONS, qualified
from triage.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

# The file a model folder keeps its training sample in (`ml.layout.REFERENCE`; a test checks they agree).
REFERENCE_FILE = "reference.csv"
REFERENCE_COLUMNS = ("text", "intent", "urgency")
STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient_data"

# Placeholders of masked PII (`<EMAIL_1>`, as triage.pii writes them). The reference is training text and
# the window is masked text: both are masked and stripped of placeholders alike, so that masking itself
# never reads as drift.
_PLACEHOLDER = re.compile(r"<[A-Z]{2,16}(?:_\d+)?>")


class DriftInputError(TriageError, ValueError):
    """The reference or the window cannot be used; the message names the input and the fix."""


@dataclass(frozen=True)
class DriftThresholds:
    min_rows: int = 200
    max_rows: int = 5000
    text_auc: float = 0.65
    prediction_distance: float = 0.15
    confidence_distance: float = 0.15
    abstention_max: float = 0.25
    mismatch_max: float = 0.3
    min_feedback: int = 30
    baseline_hours: int = 168

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftThresholds:
        return cls(
            min_rows=settings.drift_min_rows,
            max_rows=settings.drift_max_rows,
            text_auc=settings.drift_text_auc,
            prediction_distance=settings.drift_prediction_distance,
            confidence_distance=settings.drift_confidence_distance,
            abstention_max=settings.drift_abstention_max,
            mismatch_max=settings.drift_mismatch_max,
            min_feedback=settings.drift_min_feedback,
            baseline_hours=settings.drift_baseline_hours,
        )


@dataclass
class DriftResult:
    """One window's verdict; `as_dict()` is JSON-safe (Airflow XCom)."""

    model_name: str
    model_version: int | None
    window_start: datetime
    window_end: datetime
    n_current: int
    status: str
    drift_detected: bool = False
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    report_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["window_start"] = self.window_start.isoformat()
        out["window_end"] = self.window_end.isoformat()
        return out


def scrub(texts: list[str]) -> list[str]:
    """Texts as the drift check compares them: PII masked, placeholders removed, lower case, single spaces."""
    from triage.pii import mask_many

    return [" ".join(_PLACEHOLDER.sub(" ", r.text).lower().split()) for r in mask_many(texts)]


def load_reference(path: Path) -> pd.DataFrame:
    """The champion's training sample; raises DriftInputError naming the file and the fix."""
    import pandas as pd

    if not path.is_file():
        raise DriftInputError(
            f"reference sample {path} not found: the champion's model folder must hold {REFERENCE_FILE} "
            "(written at training time); retrain or pass --reference"
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in REFERENCE_COLUMNS if c not in frame.columns]
    if missing:
        raise DriftInputError(f"reference sample {path} lacks columns {missing}; it needs {list(REFERENCE_COLUMNS)}")
    if frame.empty:
        raise DriftInputError(f"reference sample {path} has no rows; retrain the champion to write a sample")
    return frame[list(REFERENCE_COLUMNS)]


def champion_reference(url: str, model_name: str, version: int | None = None) -> tuple[int, Path]:
    """(version, reference.csv path) of `version` of `model_name`, or of the registry's champion."""
    if version is not None:
        try:
            chosen = registry.get(url, model_name, version)
        except registry.RegistryError as exc:
            raise DriftInputError(f"model_version {version}: {exc}") from exc
    else:
        champion = registry.champion(url, model_name)
        if champion is None:
            raise DriftInputError(
                f"model {model_name!r} has no champion in the registry; promote one or pass a reference sample path"
            )
        chosen = champion
    return chosen.version, Path(chosen.artifact_path) / REFERENCE_FILE


def _window_filter(model_version: int | None) -> str:
    return "d.model_name = %(name)s" + (" AND d.model_version = %(version)s" if model_version is not None else "")


def count_window(url: str, model_name: str, model_version: int | None, start: datetime, end: datetime) -> int:
    with db.connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*) AS n FROM {qualified(T_DECISIONS)} d "
            f"WHERE {_window_filter(model_version)} AND d.decided_at >= %(start)s AND d.decided_at < %(end)s",
            {"name": model_name, "version": model_version, "start": start, "end": end},
        ).fetchone()
    return int(row["n"]) if row else 0


def load_window(
    url: str, model_name: str, model_version: int | None, start: datetime, end: datetime, limit: int
) -> pd.DataFrame:
    """Decisions in [start, end) with their production label; a deterministic sample of `limit` rows."""
    import pandas as pd

    sql = (
        "SELECT d.ticket_id, d.masked_text AS text, d.intent, d.urgency, d.intent_confidence, "
        "d.urgency_confidence, d.abstained, l.label_intent "
        f"FROM {qualified(T_DECISIONS)} d "
        f"LEFT JOIN {qualified(V_LABELLED_DECISIONS)} l ON l.ticket_id = d.ticket_id "
        f"WHERE {_window_filter(model_version)} AND d.decided_at >= %(start)s AND d.decided_at < %(end)s "
        "ORDER BY md5(d.ticket_id) LIMIT %(limit)s"
    )
    with db.connect(url) as conn:
        rows = conn.execute(
            sql, {"name": model_name, "version": model_version, "start": start, "end": end, "limit": limit}
        ).fetchall()
    columns = ["ticket_id", "text", "intent", "urgency", "intent_confidence", "urgency_confidence", "abstained",
               "label_intent"]
    return pd.DataFrame(rows, columns=columns)


def load_baseline(
    url: str, model_name: str, model_version: int | None, before: datetime, hours: int, limit: int
) -> pd.DataFrame:
    """The same model's decisions in the `hours` before the window: the confidence baseline."""
    from datetime import timedelta

    import pandas as pd

    sql = (
        "SELECT d.intent_confidence, d.urgency_confidence, d.abstained "
        f"FROM {qualified(T_DECISIONS)} d WHERE {_window_filter(model_version)} "
        "AND d.decided_at >= %(start)s AND d.decided_at < %(end)s ORDER BY md5(d.ticket_id) LIMIT %(limit)s"
    )
    params = {"name": model_name, "version": model_version, "start": before - timedelta(hours=hours),
              "end": before, "limit": limit}
    with db.connect(url) as conn:
        rows = conn.execute(sql, params).fetchall()
    return pd.DataFrame(rows, columns=["intent_confidence", "urgency_confidence", "abstained"])


def _pad(frames: dict[str, pd.Series]) -> pd.DataFrame:
    """Columns of different lengths side by side (NaN below the shorter ones; Evidently drops NaN per column)."""
    import pandas as pd

    return pd.DataFrame({name: series.reset_index(drop=True) for name, series in frames.items()})


def evaluate(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    baseline: pd.DataFrame | None,
    thresholds: DriftThresholds,
    report_path: Path | None,
) -> tuple[dict[str, Any], list[str]]:
    """Run the Evidently report; return (metrics, drift reasons) and write the HTML to `report_path`."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue, ValueDrift
    from sklearn.exceptions import ConvergenceWarning

    cur = pd.DataFrame({
        "text": pd.Series(scrub(current["text"].astype(str).tolist()), index=current.index, dtype=object),
        "intent": current["intent"].astype(object),
        "urgency": current["urgency"].astype(object),
        "intent_confidence": pd.to_numeric(current["intent_confidence"], errors="coerce"),
        "urgency_confidence": pd.to_numeric(current["urgency_confidence"], errors="coerce"),
        "abstained": current["abstained"].astype(float),
    })
    labelled = current["label_intent"].notna()
    cur["label_mismatch"] = (current["label_intent"] != current["intent"]).astype(float).where(labelled)
    ref_cols: dict[str, pd.Series] = {
        "text": pd.Series(scrub(reference["text"].astype(str).tolist()), index=reference.index, dtype=object),
        "intent": reference["intent"].astype(object),
        "urgency": reference["urgency"].astype(object),
    }
    n_feedback = int(labelled.sum())
    use_feedback = n_feedback >= thresholds.min_feedback
    # (column, method, threshold); a column with no values on either side is skipped with the reason.
    checks = [(c, m, t) for c, m, t in (("text", "abs_text_content_drift", thresholds.text_auc),
                                         ("intent", "jensenshannon", thresholds.prediction_distance),
                                         ("urgency", "jensenshannon", thresholds.prediction_distance))
              if cur[c].notna().any() and ref_cols[c].notna().any()]
    skipped: dict[str, str] = {c: "no values in the window or the reference" for c in ("text", "intent", "urgency")
                               if c not in {k for k, _, _ in checks}}
    if baseline is not None:
        ref_cols["abstained"] = baseline["abstained"].astype(float)
    for col in ("intent_confidence", "urgency_confidence"):
        base = pd.to_numeric(baseline[col], errors="coerce") if baseline is not None else pd.Series(dtype=float)
        if base.notna().sum() >= thresholds.min_rows and cur[col].notna().any():
            ref_cols[col] = base
            checks.append((col, "wasserstein", thresholds.confidence_distance))
        else:
            skipped[col] = (f"fewer than {thresholds.min_rows} baseline decisions with a confidence in the "
                            f"{thresholds.baseline_hours} h before the window, or none in the window")

    metrics_list: list[Any] = [ValueDrift(column=c, method=m, threshold=t) for c, m, t in checks]
    metrics_list.append(MeanValue(column="abstained"))
    if use_feedback:
        metrics_list.append(MeanValue(column="label_mismatch"))
    numeric = ["abstained", "label_mismatch", "intent_confidence", "urgency_confidence"]
    definition = DataDefinition(text_columns=["text"], categorical_columns=["intent", "urgency"],
                                numerical_columns=[c for c in numeric if c in cur.columns])
    ref_frame = _pad(ref_cols)
    for col in cur.columns:  # Evidently wants every current column in the reference too; none here = NaN
        if col not in ref_frame.columns:
            ref_frame[col] = float("nan") if col in numeric else None
    ref_definition = DataDefinition(text_columns=["text"], categorical_columns=["intent", "urgency"],
                                    numerical_columns=[c for c in numeric if c in ref_frame.columns])
    with warnings.catch_warnings():
        # Evidently's domain classifier (SGD) may stop at its max_iter on small windows; the AUC is still valid.
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Its column summaries divide by the count of a reference column that has no values (all NaN).
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        snapshot = Report(metrics_list).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref_frame[list(cur.columns)], data_definition=ref_definition),
        )
    values = [m.get("value") for m in snapshot.dict()["metrics"]]

    metrics: dict[str, Any] = {}
    reasons: list[str] = []
    labels = {"text": "text drift (domain classifier ROC AUC)", "intent": "intent prediction drift (Jensen-Shannon)",
              "urgency": "urgency prediction drift (Jensen-Shannon)",
              "intent_confidence": "intent confidence drift (Wasserstein, normed)",
              "urgency_confidence": "urgency confidence drift (Wasserstein, normed)"}
    for (column, method, threshold), value in zip(checks, values, strict=False):
        score = float(value)
        drifted = score >= threshold
        metrics[f"{column}_drift"] = {"score": round(score, 4), "threshold": threshold, "method": method,
                                      "drift": drifted}
        if drifted:
            reasons.append(f"{labels[column]} {score:.3f} >= {threshold}")
    for column, why in skipped.items():
        metrics[f"{column}_drift"] = {"skipped": why}
    abstention = float(cur["abstained"].mean())
    metrics["abstention_rate"] = {"value": round(abstention, 4), "threshold": thresholds.abstention_max,
                                  "drift": abstention > thresholds.abstention_max}
    if abstention > thresholds.abstention_max:
        reasons.append(f"abstention rate {abstention:.3f} > {thresholds.abstention_max}")
    if use_feedback:
        mismatch = float(cur["label_mismatch"].mean())
        metrics["label_mismatch_rate"] = {"value": round(mismatch, 4), "n_feedback": n_feedback,
                                          "threshold": thresholds.mismatch_max,
                                          "drift": mismatch > thresholds.mismatch_max}
        if mismatch > thresholds.mismatch_max:
            reasons.append(f"label mismatch rate {mismatch:.3f} over {n_feedback} reviewed > {thresholds.mismatch_max}")
    else:
        metrics["label_mismatch_rate"] = {"skipped": f"{n_feedback} reviewed decisions, fewer than "
                                                     f"{thresholds.min_feedback}", "n_feedback": n_feedback}
    metrics["n_reference"] = len(reference)
    metrics["n_sampled"] = len(current)
    metrics["n_baseline"] = 0 if baseline is None else len(baseline)
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = report_path.with_suffix(".tmp")
        snapshot.save_html(str(tmp))
        os.replace(tmp, report_path)
    if any(isinstance(v, float) and math.isnan(v) for v in values):
        raise DriftInputError(f"Evidently returned NaN scores {values}; check the window's columns")
    return metrics, reasons


def report_file(reports_dir: Path, model_name: str, start: datetime, end: datetime) -> Path:
    """Where one window's HTML report lives (stable, so a re-run overwrites it)."""
    return reports_dir / "drift" / f"{model_name}__{start:%Y%m%dT%H%M%S}__{end:%Y%m%dT%H%M%S}.html"


def prune_reports(url: str, reports_dir: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Delete drift HTML reports older than `keep_days` (by file time); their rows keep the metrics.

    Each report is a few MB; at the hourly default that is about 2.5 GB a month without this. The
    rows whose file went get `report_path = NULL`, so nothing links to a missing file.
    """
    folder = reports_dir / "drift"
    if keep_days <= 0 or not folder.is_dir():
        return []
    cutoff = (now if now is not None else time.time()) - keep_days * 86_400
    gone = []
    for path in sorted(folder.glob("*.html")):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            gone.append(path)
    if gone:
        with db.connect(url) as conn:
            conn.execute(f"UPDATE {qualified(T_DRIFT_REPORTS)} SET report_path = NULL WHERE report_path = ANY(%s)",
                         ([str(p) for p in gone],))
    return gone


def record(url: str, result: DriftResult) -> None:
    """Upsert the summary row (one per model and window: re-runs replace it)."""
    from psycopg.types.json import Jsonb

    with db.connect(url) as conn:
        conn.execute(
            f"INSERT INTO {qualified(T_DRIFT_REPORTS)} (model_name, model_version, window_start, window_end, "
            "n_current, metrics, drift_detected, reasons, report_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (model_name, window_start, window_end) DO UPDATE SET model_version = EXCLUDED.model_version, "
            "n_current = EXCLUDED.n_current, metrics = EXCLUDED.metrics, drift_detected = EXCLUDED.drift_detected, "
            "reasons = EXCLUDED.reasons, report_path = EXCLUDED.report_path, created_at = now()",
            (result.model_name, result.model_version, result.window_start, result.window_end, result.n_current,
             Jsonb({"status": result.status, **result.metrics}), result.drift_detected, Jsonb(result.reasons),
             result.report_path),
        )


def run_drift_report(
    window_start: datetime,
    window_end: datetime,
    *,
    url: str | None = None,
    model_name: str | None = None,
    reference_path: Path | None = None,
    model_version: int | None = None,
    reports_dir: Path | None = None,
    thresholds: DriftThresholds | None = None,
) -> DriftResult:
    """The drift check of one window, end to end: load, evaluate, write HTML, upsert the row.

    Without `reference_path` the registry's champion gives the reference sample and the model version.
    """
    settings = get_settings()
    url = url or settings.db_url()
    model_name = model_name or settings.model_name
    thresholds = thresholds or DriftThresholds.from_settings(settings)
    reports_dir = reports_dir or settings.reports_path
    if window_end <= window_start:
        raise DriftInputError(f"window end {window_end} is not after its start {window_start}")
    if reference_path is None:
        model_version, reference_path = champion_reference(url, model_name, model_version)
    reference = load_reference(reference_path)
    if len(reference) > thresholds.max_rows:  # bounded run time; a fixed seed keeps re-runs identical
        reference = reference.sample(n=thresholds.max_rows, random_state=0)
    n_current = count_window(url, model_name, model_version, window_start, window_end)
    result = DriftResult(model_name, model_version, window_start, window_end, n_current, STATUS_OK)
    if n_current < thresholds.min_rows:
        result.status = STATUS_INSUFFICIENT
        result.reasons = [f"too little data: {n_current} decisions in the window, fewer than {thresholds.min_rows}; "
                          "no drift verdict"]
        record(url, result)
        return result
    current = load_window(url, model_name, model_version, window_start, window_end, thresholds.max_rows)
    baseline = load_baseline(url, model_name, model_version, window_start, thresholds.baseline_hours,
                             thresholds.max_rows)
    path = report_file(reports_dir, model_name, window_start, window_end)
    result.metrics, result.reasons = evaluate(reference, current, baseline, thresholds, path)
    result.drift_detected = bool(result.reasons)
    result.report_path = str(path)
    record(url, result)
    prune_reports(url, reports_dir, settings.drift_report_keep_days)
    return result


def latest_reports(url: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest drift report rows, newest window first."""
    with db.connect(url or get_settings().db_url()) as conn:
        rows = conn.execute(
            "SELECT id, model_name, model_version, window_start, window_end, n_current, drift_detected, reasons, "
            f"report_path, metrics FROM {qualified(T_DRIFT_REPORTS)} ORDER BY window_end DESC, id DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return [dict(r) for r in rows]


def summary_line(result: DriftResult) -> str:
    """One log line: the verdict, why, and where the report is."""
    verdict = {True: "DRIFT", False: "no drift"}[result.drift_detected]
    if result.status == STATUS_INSUFFICIENT:
        verdict = "no verdict"
    return json.dumps({"verdict": verdict, "n_current": result.n_current, "reasons": result.reasons,
                       "report": result.report_path})


def asset_extra(result: dict[str, Any]) -> dict[str, Any] | None:
    """The drift Asset event's extra for a window that drifted (None: emit nothing)."""
    if not result.get("drift_detected"):
        return None
    keys = ("model_name", "model_version", "window_start", "window_end", "n_current", "reasons", "report_path")
    return {k: result.get(k) for k in keys}
