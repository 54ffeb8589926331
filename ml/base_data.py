"""A model's base data: every labelled row it was made from, kept with it, and the holdout no model trains on.

`train` stores the rows it was given (or `TrainingArgs.base_data`, a retrain's base plus its new labels) in the
model folder as `base_data.csv.gz` and records their fingerprint, so a retrain starts from all of them, not
from a sample, and can tell when it was handed other data. A hash of each (masked) text puts a fixed share
of the rows in the holdout: the first training and every retrain leave those rows out, so a candidate and its
champion are compared on rows that neither was trained on, and a repeated text is never on both sides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd

from ml import layout
from ml.data import Dataset, from_frame, read_frame


def in_holdout(text: str, percent: int) -> bool:
    """Whether `text` is in the holdout of `percent` % of texts (sha256 of the text: the same on every run)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100 < percent


def split_holdout(ds: Dataset, percent: int) -> tuple[Dataset, Dataset]:
    """(rows that may be trained on, holdout rows) of `ds`, each in its original order."""
    out = [in_holdout(t, percent) for t in ds.texts]
    return (ds.subset([i for i, o in enumerate(out) if not o]), ds.subset([i for i, o in enumerate(out) if o]))


def write(out_dir: Path, ds: Dataset, *, ood_label: str | None, ood_head: str) -> Path:
    """`ds` as `base_data.csv.gz` in `out_dir`: text and label columns, out-of-scope rows labelled `ood_label`
    in the `ood_head` column (as they were given)."""
    frame = ds.frame()
    if ood_label is not None and any(ds.ood):
        frame[ood_head] = [ood_label if o else v for v, o in zip(frame[ood_head], ds.ood, strict=True)]
    return write_frame(frame, out_dir / layout.BASE_DATA)


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """A base data frame as gzip-compressed CSV at `path`, the same bytes for the same rows (no timestamp)."""
    frame.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})
    return path


def read(path: Path, *, label_cols: list[str], ood_label: str | None) -> tuple[pd.DataFrame, Dataset]:
    """A stored (or given) base data file as a frame and as the Dataset whose `fingerprint()` identifies it.

    Every label is kept, even one seen once: base data is what a model was made from, not a new training file."""
    frame = read_frame(path)
    ds = from_frame(frame, label_cols=label_cols, ood_label=ood_label, source=str(path), min_rows=1)
    return frame, ds


def describe(ds: Dataset, percent: int) -> dict[str, Any]:
    """Fingerprints and sizes of a base data set and of its holdout (what a model records about them)."""
    _, holdout = split_holdout(ds, percent)
    return {"fingerprint": ds.fingerprint(), "rows": len(ds), "holdout_percent": percent,
            "holdout_fingerprint": holdout.fingerprint(), "holdout_rows": len(holdout)}
