"""Great Expectations gate on production labels and recent decisions.

Two suites, each expectation marked critical or not. A failed critical expectation blocks
retraining; the summary names the expectation, the column and sample row ids. Results go to
`triage.quality_results` and GX data docs (HTML) under `<reports>/gx/`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from triage import db
from triage.labels import IMPORT_REVIEWER, ROUTES
from triage.names import T_DECISIONS, T_FEEDBACK, T_QUALITY_RESULTS, qualified
from triage.settings import Settings
from triage.taxonomy import workspace_taxonomy

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

LABELS_SQL = f"""
SELECT f.event_id, f.ticket_id, f.kind, f.intent, f.urgency, f.created_at,
       d.masked_text AS text, d.ticket_id IS NOT NULL AS decision_exists
FROM {qualified(T_FEEDBACK)} f
LEFT JOIN {qualified(T_DECISIONS)} d ON d.ticket_id = f.ticket_id
WHERE f.created_at >= %(start)s AND f.created_at < %(end)s AND f.reviewer <> %(imported)s
"""
DECISIONS_SQL = f"""
SELECT ticket_id, route, intent, intent_confidence, abstained, masked_text, e2e_latency_ms
FROM {qualified(T_DECISIONS)}
WHERE decided_at >= %(start)s AND decided_at < %(end)s
"""
@dataclass(frozen=True)
class Failure:
    suite: str
    expectation: str
    column: str | None
    critical: bool
    unexpected_count: int
    sample_ids: list[str]

    def describe(self) -> str:
        where = f"{self.suite}.{self.column}" if self.column else self.suite
        rows = f" (rows: {', '.join(self.sample_ids)})" if self.sample_ids else ""
        return f"{self.expectation} on {where} failed for {self.unexpected_count} rows{rows}"


@dataclass
class QualityResult:
    run_key: str
    rows: dict[str, int]
    failures: list[Failure] = field(default_factory=list)
    docs_path: str | None = None

    @property
    def critical_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.critical]

    @property
    def success(self) -> bool:
        return not self.critical_failures

    def summary(self) -> str:
        if self.success:
            warn = f"; {len(self.failures)} non-critical warnings" if self.failures else ""
            return f"data quality passed on {self.rows}{warn}"
        return "critical data quality failure: " + "; ".join(f.describe() for f in self.critical_failures)


def label_sets(url: str, settings: Settings) -> dict[str, list[str]]:
    """Head -> the labels feedback may name: the live models' taxonomies, else the workspace's."""
    from ml.registry import live_labels

    live = live_labels(url)
    if live:
        return live
    taxonomy = workspace_taxonomy(settings.taxonomy_file)
    return {"intent": [*taxonomy.intent_names, taxonomy.out_of_scope], "urgency": list(taxonomy.urgencies)}


def _expectations(settings: Settings, labels: dict[str, list[str]]) -> dict[str, list[tuple[Any, bool]]]:
    import great_expectations as gx

    E = gx.expectations
    keep = 1.0 - settings.quality_max_duplicate_rate
    return {
        "labels": [
            (E.ExpectColumnValuesToNotBeNull(column="event_id"), True),
            (E.ExpectColumnValuesToBeUnique(column="event_id"), True),
            (E.ExpectColumnValuesToBeInSet(column="decision_exists", value_set=[True]), True),
            (E.ExpectColumnValuesToNotBeNull(column="text"), True),
            (
                E.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=settings.max_body_chars),
                True,
            ),
            (E.ExpectColumnValuesToBeInSet(column="has_pii", value_set=[False]), True),
            (E.ExpectColumnValuesToBeInSet(column="intent", value_set=labels["intent"]), True),
            # NULL passes: a taxonomy without urgencies has no urgency head.
            (E.ExpectColumnValuesToBeInSet(column="urgency", value_set=labels.get("urgency", [])), True),
            (E.ExpectColumnValuesToBeUnique(column="ticket_id", mostly=keep), False),
            (E.ExpectColumnUniqueValueCountToBeBetween(column="intent", min_value=2), False),
        ],
        "decisions": [
            (E.ExpectColumnValuesToBeUnique(column="ticket_id"), True),
            (E.ExpectColumnValuesToBeInSet(column="route", value_set=list(ROUTES)), True),
            (E.ExpectColumnValuesToBeInSet(column="has_pii", value_set=[False]), True),
            (E.ExpectColumnValuesToBeBetween(column="intent_confidence", min_value=0, max_value=1), True),
            (E.ExpectColumnValuesToNotBeNull(column="abstained"), True),
            (
                E.ExpectColumnValuesToBeBetween(
                    column="e2e_latency_ms", min_value=0, max_value=settings.quality_max_latency_ms, mostly=0.99
                ),
                False,
            ),
        ],
    }


def load_frames(url: str, start: datetime, end: datetime) -> dict[str, pd.DataFrame]:
    """Production labels and decisions of the window [start, end), with derived check columns."""
    import pandas as pd

    from triage.pii import contains_pii

    frames = {}
    with db.connect(url) as conn:
        for name, sql, text_col in (("labels", LABELS_SQL, "text"), ("decisions", DECISIONS_SQL, "masked_text")):
            rows = conn.execute(sql, {"start": start, "end": end, "imported": IMPORT_REVIEWER}).fetchall()
            frame = pd.DataFrame(rows)
            if frame.empty:
                frames[name] = frame
                continue
            # The structured kinds only: re-reading masked text with the name model would flag context
            # that masking itself changed ("Thanks, <PERSON_1>"), and this check fails the gate.
            frame["has_pii"] = [bool(t) and contains_pii(t, names=False) for t in frame[text_col].fillna("")]
            frames[name] = frame
    return frames


def validate(frames: dict[str, pd.DataFrame], settings: Settings, project_dir: Path, run_key: str,
             labels: dict[str, list[str]]) -> QualityResult:
    """Run both suites over the frames; build data docs in `project_dir`."""
    import great_expectations as gx

    context = gx.get_context(mode="file", project_root_dir=str(project_dir))
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    source = context.data_sources.add_or_update_pandas("triage")
    result = QualityResult(run_key=run_key, rows={k: len(v) for k, v in frames.items()})
    for suite_name, checks in _expectations(settings, labels).items():
        frame = frames.get(suite_name)
        if frame is None or frame.empty:
            continue
        id_col = "event_id" if suite_name == "labels" else "ticket_id"
        asset = source.add_dataframe_asset(suite_name)
        batch_def = asset.add_batch_definition_whole_dataframe(f"{suite_name}_batch")
        suite = gx.ExpectationSuite(name=suite_name)
        critical = {}
        for expectation, is_critical in checks:
            suite.add_expectation(expectation)
            critical[(expectation.expectation_type, expectation.column)] = is_critical
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{suite_name}_vd", data=batch_def, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{suite_name}_cp",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")],
                result_format={"result_format": "COMPLETE"},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        for validation in run.run_results.values():
            for r in validation.results:
                if r.success:
                    continue
                cfg = r.expectation_config
                idx = (r.result or {}).get("unexpected_index_list") or []
                ids = [str(frame.iloc[i][id_col]) for i in idx[:5] if isinstance(i, int) and i < len(frame)]
                result.failures.append(
                    Failure(
                        suite=suite_name,
                        expectation=cfg.type,
                        column=cfg.kwargs.get("column"),
                        critical=critical.get((cfg.type, cfg.kwargs.get("column")), True),
                        unexpected_count=int((r.result or {}).get("unexpected_count") or len(idx)),
                        sample_ids=ids,
                    )
                )
    sites = context.get_docs_sites_urls()
    result.docs_path = sites[0]["site_url"] if sites else None
    return result


def store(url: str, result: QualityResult) -> None:
    """Upsert one row per suite and run key into triage.quality_results."""
    with db.connect(url) as conn:
        for suite in result.rows:
            fails = [f for f in result.failures if f.suite == suite]
            crit = [f.describe() for f in fails if f.critical]
            conn.execute(
                f"INSERT INTO {qualified(T_QUALITY_RESULTS)} (suite, run_key, success, critical_failures, results,"
                " docs_path) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (suite, run_key) DO UPDATE SET"
                " success = EXCLUDED.success, critical_failures = EXCLUDED.critical_failures,"
                " results = EXCLUDED.results, docs_path = EXCLUDED.docs_path, created_at = now()",
                (
                    suite,
                    result.run_key,
                    not crit,
                    json.dumps(crit),
                    json.dumps({"rows": result.rows[suite], "failures": [f.__dict__ for f in fails]}),
                    result.docs_path,
                ),
            )


# Suites, validation definitions and checkpoints are rebuilt from `_expectations` on every run; keeping
# them would only keep what an interrupted or concurrent write left half-written (a JSONDecodeError on
# every later run). Results and data docs (`uncommitted/`) are kept.
_DERIVED = ("expectations", "validation_definitions", "checkpoints")


def _drop_derived_config(project: Path) -> None:
    for name in _DERIVED:
        shutil.rmtree(project / "gx" / name, ignore_errors=True)


def run_quality_gate(settings: Settings, start: datetime, end: datetime, run_key: str | None = None) -> QualityResult:
    """Validate the window's labels and decisions, store the result, and return it (the DAG raises on failure)."""
    url = settings.db_url()
    key = run_key or f"{start.isoformat()}/{end.isoformat()}"
    frames = load_frames(url, start, end)
    labels = label_sets(url, settings)
    project = settings.reports_path / "gx"
    project.mkdir(parents=True, exist_ok=True)
    # Great Expectations' file context rewrites its suite and checkpoint JSON on every run: two gates at
    # once (a manual data_quality run and retrain's quality_gate) corrupted each other's files.
    with FileLock(project / ".gate.lock"):
        _drop_derived_config(project)
        result = validate(frames, settings, project, key, labels)
    store(url, result)
    log.info("%s; data docs: %s", result.summary(), result.docs_path)
    return result
