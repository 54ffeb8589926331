"""Training data: read CSV/Parquet or production labels from Postgres, validate, split, fingerprint.

Bad input stops with one line that names the row or the column and the fix (`DataError`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from triage.errors import TriageError
from triage.names import T_DECISIONS, T_FEEDBACK, T_TICKETS, qualified
from triage.taxonomy import (
    DEFAULT_OOD_LABEL,
    DEFAULT_URGENCIES,
    IntentSpec,
    Taxonomy,
    TaxonomyError,
    describe_labels,
    load_taxonomy,
)


class DataError(TriageError, ValueError):
    """The training data cannot be used as given; the message names the row or column."""


@dataclass(frozen=True)
class Dataset:
    """Texts plus one label list per head (None: no label for that head; `ood`: out of scope)."""

    texts: list[str]
    labels: dict[str, list[str | None]]
    heads: dict[str, list[str]]
    ood: list[bool]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: Sequence[int]) -> Dataset:
        return Dataset(
            texts=[self.texts[i] for i in idx],
            labels={h: [v[i] for i in idx] for h, v in self.labels.items()},
            heads=self.heads,
            ood=[self.ood[i] for i in idx],
        )

    def label_ids(self, head: str) -> list[int]:
        """Class index per row, -100 where the row has no label for this head (ignored by the loss)."""
        index = {lab: i for i, lab in enumerate(self.heads[head])}
        return [index[v] if v is not None and v in index else -100 for v in self.labels[head]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for i, t in enumerate(self.texts):
            h.update(t.encode())
            for head in self.heads:
                h.update(b"\0" + str(self.labels[head][i]).encode())
            h.update(b"\1" if self.ood[i] else b"\2")
        return h.hexdigest()

    def frame(self) -> pd.DataFrame:
        cols: dict[str, Any] = {"text": self.texts}
        for head in self.heads:
            cols[head] = self.labels[head]
        return pd.DataFrame(cols)


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as strings; DataError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist; pass a CSV or Parquet file with --data")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # pandas raises many types; the user needs one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path} ({first}); pass a UTF-8 CSV with a header row, or Parquet") from None


def from_frame(df: pd.DataFrame, *, text_col: str = "text", label_cols: Sequence[str] = ("intent", "urgency"),
               ood_label: str | None = None, source: str = "data", row_offset: int = 2,
               min_rows: int = 2, known_heads: dict[str, list[str]] | None = None) -> Dataset:
    """Validate a frame and build a Dataset. A head whose labels all appear in `known_heads` gets that
    label set in that order (a taxonomy's); any other head gets its observed labels, sorted."""
    if text_col not in df.columns:
        raise DataError(f"{source} has no text column {text_col!r} (columns: {', '.join(map(str, df.columns))}); "
                        "pass --text-col")
    present = [c for c in label_cols if c in df.columns]
    if not present:
        raise DataError(f"{source} has none of the label columns {', '.join(label_cols)} "
                        f"(columns: {', '.join(map(str, df.columns))}); pass --label-col")
    texts_raw = df[text_col].tolist()
    texts: list[str] = []
    for i, t in enumerate(texts_raw):
        if t is None or (isinstance(t, float) and pd.isna(t)) or not str(t).strip():
            raise DataError(f"{source} row {i + row_offset}: empty text in column {text_col!r}; remove or fill the row")
        texts.append(str(t))
    if not texts:
        raise DataError(f"{source} has no rows; pass a file with labelled texts")
    ood = [False] * len(texts)
    labels: dict[str, list[str | None]] = {}
    heads: dict[str, list[str]] = {}
    for col in present:
        vals: list[str | None] = [None if v is None or (isinstance(v, float) and pd.isna(v)) or not str(v).strip()
                                  else str(v).strip() for v in df[col].tolist()]
        if ood_label is not None and ood_label in vals:
            for i, v in enumerate(vals):
                if v == ood_label:
                    ood[i] = True
                    vals[i] = None
        counts = pd.Series([v for v in vals if v is not None], dtype=object).value_counts()
        if counts.empty:
            raise DataError(f"{source} column {col!r} has no labels; drop --label-col {col} or fill it")
        few = counts[counts < min_rows]
        if len(few):
            lab = few.index[0]
            raise DataError(f"{source} column {col!r}: label {lab!r} has {int(few.iloc[0])} row; every label needs "
                            "at least 2 rows (add examples or merge the label)")
        if len(counts) < 2 and min_rows >= 2:
            raise DataError(f"{source} column {col!r} has a single label {counts.index[0]!r}; a head needs 2 or more")
        known = (known_heads or {}).get(col)
        observed = set(counts.index)
        heads[col] = list(known) if known is not None and observed <= set(known) else sorted(observed)
        labels[col] = vals
    return Dataset(texts=texts, labels=labels, heads=heads, ood=ood)


def load_file(path: Path, **kwargs: Any) -> Dataset:
    return from_frame(read_frame(path), source=str(path), **kwargs)


def from_db(url: str | None, *, label_cols: Sequence[str] = ("intent", "urgency"), ood_label: str | None = None,
            limit: int | None = None) -> Dataset:
    """Production labels: each ticket's latest feedback (a confirm keeps the decision's labels) joined to
    the masked ticket text (subject + body, as the simulator and the stream classify it)."""
    from triage import db

    sql = (
        f"SELECT DISTINCT ON (f.ticket_id) f.ticket_id, "
        "concat_ws(E'\\n', nullif(t.subject_masked, ''), t.body_masked) AS text, "
        "coalesce(f.intent, CASE WHEN f.kind = 'confirm' THEN d.intent END) AS intent, "
        "coalesce(f.urgency, CASE WHEN f.kind = 'confirm' THEN d.urgency END) AS urgency "
        f"FROM {qualified(T_FEEDBACK)} f JOIN {qualified(T_TICKETS)} t ON t.ticket_id = f.ticket_id "
        f"LEFT JOIN {qualified(T_DECISIONS)} d ON d.ticket_id = f.ticket_id "
        "ORDER BY f.ticket_id, f.created_at DESC"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with db.connect(url) as conn:
        rows = conn.execute(sql).fetchall()
    if not rows:
        raise DataError("the database has no labelled tickets (triage.feedback joined to triage.tickets); "
                        "let reviewers label some or train with --data FILE")
    df = pd.DataFrame([dict(r) for r in rows])
    # Production labels are whatever reviewers said: a label seen once is dropped (it cannot be split
    # or learned), and a head left with fewer than 2 labels is not trained, instead of failing the DAG.
    usable = []
    for col in label_cols:
        if col not in df.columns:
            continue
        counts = df[col].dropna().value_counts()
        df.loc[df[col].isin(counts[counts < 2].index), col] = None
        if df[col].dropna().loc[lambda v: v != ood_label].nunique() >= 2:
            usable.append(col)
    if not usable:
        raise DataError(f"the database's labels give no head with 2 or more labels of 2+ rows each "
                        f"({len(df)} labelled tickets); wait for more feedback or train with --data FILE")
    label_cols = usable
    return from_frame(df, text_col="text", label_cols=label_cols, ood_label=ood_label, source="database",
                      row_offset=1)


def split(ds: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified on the first head's label (out-of-scope rows form their own stratum)."""
    from sklearn.model_selection import train_test_split

    first = next(iter(ds.heads))
    strata = ["__ood__" if o else str(v) for v, o in zip(ds.labels[first], ds.ood, strict=True)]
    counts = pd.Series(strata).value_counts()
    strata = [s if counts[s] >= 2 else "__rare__" for s in strata]
    idx = list(range(len(ds)))
    n_val = max(int(round(len(ds) * val_fraction)), len(set(strata)))
    if n_val >= len(ds):
        raise DataError(f"{len(ds)} rows are too few for a validation split; add rows or lower --val-fraction")
    try:
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed, stratify=strata)
    except ValueError:
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed)
    return ds.subset(sorted(tr)), ds.subset(sorted(va))


def fit_taxonomy(ds: Dataset, *, explicit: Path | None, workspace: Path | None,
                 name: str = "derived", ood_label: str | None = None) -> tuple[Taxonomy, Dataset, str]:
    """The taxonomy a model trained on `ds` carries, the dataset with its heads in taxonomy order, and
    where the taxonomy came from.

    `explicit` (`--taxonomy FILE`): every label must be in it, else DataError naming the label. Otherwise
    the workspace's taxonomy when the labels fit it, else one derived from the labels (intents sorted,
    urgencies in the usual low..critical order where they fit it).
    """
    base: Taxonomy | None = None
    source = ""
    if explicit is not None:
        try:
            base = load_taxonomy(explicit)
        except TaxonomyError as exc:
            raise DataError(str(exc)) from None
        source = str(explicit)
        for head in ("intent", "urgency"):
            if head not in ds.heads:
                continue
            known = base.heads.get(head, [])
            extra = [lab for lab in ds.heads[head] if lab not in known]
            if extra:
                raise DataError(f"{head} label {extra[0]!r} of the data is not in the taxonomy {explicit} "
                                f"({len(extra)} unknown; it knows {describe_labels(known)}); add it to the "
                                "taxonomy's intents/urgencies, or map or drop those rows")
    elif workspace is not None and workspace.is_file():
        try:
            candidate = load_taxonomy(workspace)
        except TaxonomyError:
            candidate = None
        named = [h for h in ("intent", "urgency") if h in ds.heads]  # data with other heads only: not the workspace's
        if candidate is not None and named and all(
            head in candidate.heads and set(ds.heads[head]) <= set(candidate.heads[head]) for head in named
        ):
            base, source = candidate, str(workspace)
    if base is None:
        ood = ood_label or DEFAULT_OOD_LABEL
        # The intents are the out-of-scope head's labels: `intent`, else the first head (e.g. Banking77's `category`).
        first = ds.heads.get("intent") or next((v for h, v in ds.heads.items() if h != "urgency"), [])
        if ood in first:
            raise DataError(f"intent label {ood!r} of the data is the out-of-scope label, not an intent: pass "
                            f"--ood-label {ood} so that its rows train abstention, or rename or drop those rows")
        urg = ds.heads.get("urgency", [])
        if set(urg) <= set(DEFAULT_URGENCIES):
            urg = [u for u in DEFAULT_URGENCIES if u in urg]
        base = Taxonomy(name=name, intents={i: IntentSpec() for i in sorted(first)},
                        urgencies=list(urg), out_of_scope=ood)
        source = "derived from the data's labels"
    heads = dict(ds.heads)
    for head, labels in base.heads.items():
        if head in heads:
            heads[head] = list(labels)
    stored = base
    if "urgency" not in ds.heads and base.urgencies:  # the model has no urgency head: neither does its taxonomy
        stored = base.model_copy(update={"urgencies": [], "sla_minutes": {}})
    if ood_label is not None and ood_label != stored.out_of_scope:
        stored = stored.model_copy(update={"out_of_scope": ood_label})
    return stored, Dataset(texts=ds.texts, labels=ds.labels, heads=heads, ood=ds.ood), source
