"""A team's labelled export (CSV, JSONL or Parquet) read into the normalised frame that training and seeding use.

Columns are mapped by a `ColumnMap`; rows that cannot teach anything are dropped and counted by reason
(`ImportReport`), never fatal. A mapping that names a column the file lacks is (`ImportDataError`).
Pure functions: no database, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ml.data import DataError
from triage.taxonomy import Taxonomy

CSV_SUFFIXES = (".csv", ".tsv")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSON_SUFFIXES = (".json",)
PARQUET_SUFFIXES = (".parquet", ".pq")
SUFFIXES = (*CSV_SUFFIXES, *JSONL_SUFFIXES, *JSON_SUFFIXES, *PARQUET_SUFFIXES)

EMPTY_TEXT = "empty text"
MISSING_LABEL = "missing label"
UNKNOWN_LABEL = "unknown label"
DUPLICATE = "duplicate"
# Each dropped row is counted once, under the first reason that applies, in this order.
DROP_REASONS = (EMPTY_TEXT, MISSING_LABEL, UNKNOWN_LABEL, DUPLICATE)

_SPACE = re.compile(r"\s+")


class ImportDataError(DataError):
    """An export that cannot be read as mapped; the message names the file, the column or row, and the fix.

    Not called ImportError: that would shadow the built-in in every module that imports it.
    """


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of the export hold the text (joined with newlines, subject first) and the labels."""

    text: list[str] = field(default_factory=lambda: ["text"])
    subject: str | None = None
    intent: str | None = "intent"
    urgency: str | None = None
    created_at: str | None = None

    @property
    def labels(self) -> dict[str, str]:
        """Head -> mapped column, for the label heads that are mapped."""
        return {h: c for h, c in (("intent", self.intent), ("urgency", self.urgency)) if c is not None}

    def flags(self) -> dict[str, str]:
        """Mapped column -> the flag that mapped it (for error messages)."""
        out = {c: "--text-col" for c in self.text}
        for col, flag in ((self.subject, "--subject-col"), (self.intent, "--intent-col"),
                          (self.urgency, "--urgency-col"), (self.created_at, "--created-at-col")):
            if col is not None:
                out[col] = flag
        return out


@dataclass
class ImportReport:
    """What happened to the rows of one export: read, kept, and dropped by reason."""

    source: str
    rows_read: int = 0
    rows_kept: int = 0
    limit: int | None = None
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def lines(self) -> list[str]:
        """One line for what was read and kept, then one per drop reason."""
        first = f" (the first {self.limit}: --limit)" if self.limit is not None else ""
        return [f"read {self.rows_read} rows from {self.source}{first}, kept {self.rows_kept}",
                *(f"dropped {n}: {reason}" for reason, n in self.dropped.items())]


def read_table(path: Path, limit: int | None = None) -> pd.DataFrame:
    """The export as read (strings where the format allows), its first `limit` rows only when given."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ImportDataError(f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
                              f"rename it to one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise ImportDataError(f"{path} does not exist; pass a CSV, JSONL or Parquet export")
    if limit is not None and limit < 1:
        raise ImportDataError(f"--limit {limit}: use a number of rows of at least 1, or leave it out")
    try:
        if suffix in CSV_SUFFIXES:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], nrows=limit,
                                sep="\t" if suffix == ".tsv" else ",")
        elif suffix in JSONL_SUFFIXES:
            frame = pd.read_json(path, lines=True, dtype=False, nrows=limit)
        elif suffix in JSON_SUFFIXES:
            frame = pd.read_json(path, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # pandas and pyarrow raise many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImportDataError(f"cannot read {path} as {suffix[1:]} ({first}); export UTF-8 {suffix[1:]} with "
                              "one record per row and named columns") from None
    return frame.head(limit) if limit is not None else frame


def _cell(value: Any) -> str:
    """A cell as stripped text; '' for missing values."""
    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return ""
    return str(value).strip()


def _label(value: Any) -> str | None:
    text = _cell(value)
    return text or None


def _key(text: str) -> str:
    """Texts that differ only in case and spacing are the same example."""
    return _SPACE.sub(" ", text).strip().casefold()


def check_columns(frame: pd.DataFrame, cmap: ColumnMap, source: str) -> None:
    """ImportDataError naming the first mapped column the frame lacks, its flag and the columns it has."""
    if not cmap.text:
        raise ImportDataError("no text column mapped; pass --text-col COL (repeat it to join several columns)")
    if not cmap.labels:
        raise ImportDataError("no label column mapped; pass --intent-col COL and/or --urgency-col COL")
    have = [str(c) for c in frame.columns]
    for col, flag in cmap.flags().items():
        if col not in frame.columns:
            raise ImportDataError(f"{source} has no column {col!r} ({flag} {col}); its columns are: "
                                  f"{', '.join(have) or '(none)'}; pass {flag} with one of them")


def normalise(frame: pd.DataFrame, cmap: ColumnMap, *, taxonomy: Taxonomy | None = None, source: str = "data",
              limit: int | None = None) -> tuple[pd.DataFrame, ImportReport]:
    """The frame as text, intent, urgency, created_at (those mapped), cleaned; and what was dropped why.

    Text: subject then each text column, stripped, empty parts left out, joined with a newline. Rows
    without text, without any mapped label, with a label that `taxonomy` lacks (its out-of-scope label
    counts as known), or repeating an earlier row's text (case and spacing aside) and labels are dropped.
    """
    check_columns(frame, cmap, source)
    if limit is not None:
        frame = frame.head(limit)
    report = ImportReport(source=source, rows_read=len(frame), limit=limit)
    known: dict[str, set[str]] = {}
    if taxonomy is not None:
        known = {"intent": {*taxonomy.intents, taxonomy.out_of_scope}, "urgency": set(taxonomy.urgencies)}
    created = _timestamps(frame, cmap.created_at, source) if cmap.created_at is not None else None
    parts = [c for c in (cmap.subject, *cmap.text) if c is not None]
    columns = {c: frame[c].tolist() for c in parts}
    labels = {h: frame[c].tolist() for h, c in cmap.labels.items()}
    seen: set[tuple[str, ...]] = set()
    rows: list[dict[str, Any]] = []
    for i in range(len(frame)):
        text = "\n".join(p for p in (_cell(columns[c][i]) for c in parts) if p)
        row_labels = {h: _label(v[i]) for h, v in labels.items()}
        reason = None
        if not text:
            reason = EMPTY_TEXT
        elif all(v is None for v in row_labels.values()):
            reason = MISSING_LABEL
        elif any(v is not None and h in known and v not in known[h] for h, v in row_labels.items()):
            reason = UNKNOWN_LABEL
        else:
            key = (_key(text), *(str(row_labels[h]) for h in labels))
            if key in seen:
                reason = DUPLICATE
            seen.add(key)
        if reason is not None:
            report.dropped[reason] += 1
            continue
        row: dict[str, Any] = {"text": text, **row_labels}
        if created is not None:
            row["created_at"] = created[i]
        rows.append(row)
    cols = ["text", *labels, *(["created_at"] if created is not None else [])]
    out = pd.DataFrame(rows, columns=cols)
    if created is not None:
        out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    report.rows_kept = len(out)
    return out, report


def _timestamps(frame: pd.DataFrame, col: str, source: str) -> list[pd.Timestamp | None]:
    """The created-at column as UTC timestamps (naive ones read as UTC); ImportDataError on the first bad one."""
    out: list[pd.Timestamp | None] = []
    for i, value in enumerate(frame[col].tolist()):
        if not _cell(value):
            out.append(None)
            continue
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise ImportDataError(f"{source} row {i + 1}: {col!r} value {_cell(value)[:40]!r} is not a date and "
                                  f"time; fix the value, or map another column with --created-at-col") from None
        out.append(stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC"))
    return out


def read_export(path: Path, cmap: ColumnMap, *, taxonomy: Taxonomy | None = None,
                limit: int | None = None) -> tuple[pd.DataFrame, ImportReport]:
    """`read_table` then `normalise`: an export file as the normalised frame and its report."""
    return normalise(read_table(path, limit), cmap, taxonomy=taxonomy, source=str(path), limit=limit)


def with_default_urgency(cmap: ColumnMap, columns: Iterable[Any]) -> ColumnMap:
    """The map with `urgency` mapped to a column named `urgency` when none is mapped and the file has one."""
    if cmap.urgency is None and "urgency" in list(columns):
        return replace(cmap, urgency="urgency")
    return cmap
