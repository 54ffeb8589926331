"""Out-of-scope scores on the encoder's features: Mahalanobis distance to the nearest class (numpy only).

A max-softmax threshold only knows "low confidence": an unknown request that lands confidently in
a known class passes it. Distance-based scores on the fine-tuned encoder's pooled features catch far
more of those at the same false-alarm rate (Podolskiy et al., AAAI 2021). `fit` takes the features of
the training rows (as the served int8 graph computes them, so serving scores what was fitted) and
their class ids: L2-normalised features, one mean per class, one shared covariance (Ledoit-Wolf
shrinkage when scikit-learn is there, which the training environment has). The score of a text is
its smallest squared Mahalanobis distance to a class mean; above the threshold, the model abstains.

Stored with the model as `ood.npz` (the whitening transform and the whitened means) and `ood.json`
(method, head, threshold and how it was chosen); `ml.serving` loads both with no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]

OOD_ARRAYS = "ood.npz"
OOD_META = "ood.json"
FEATURES_OUTPUT = "features"  # the ONNX graph's pooled-features output
# Without out-of-scope rows in validation, the threshold is the in-scope validation score at this
# false-alarm rate: the share of answerable tickets the model would abstain on.
DEFAULT_FALSE_ALARM = 0.03


def _normalise(x: Array) -> Array:
    x = np.asarray(x, dtype=np.float64)
    norm: Array = np.linalg.norm(x, axis=1, keepdims=True)
    out: Array = x / np.clip(norm, 1e-12, None)
    return out


@dataclass(frozen=True)
class MahalanobisScorer:
    """Smallest squared Mahalanobis distance of a text's normalised features to a class mean."""

    transform: Array  # (d, d): W with W @ W.T = the precision matrix
    centres: Array  # (classes, d): the class means, whitened
    head: str
    threshold: float | None = None

    @classmethod
    def fit(cls, features: Array, y: Array, head: str) -> MahalanobisScorer:
        x = _normalise(features)
        y = np.asarray(y)
        classes = np.unique(y)
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        centred = x - means[np.searchsorted(classes, y)]
        try:
            from sklearn.covariance import LedoitWolf

            cov = LedoitWolf(assume_centered=True).fit(centred).covariance_
        except ImportError:  # pragma: no cover - serving never fits
            cov = centred.T @ centred / max(1, len(x)) + 1e-3 * np.eye(x.shape[1])
        precision = np.linalg.inv(cov)
        transform = np.linalg.cholesky((precision + precision.T) / 2)
        full = np.zeros((int(classes.max()) + 1, x.shape[1]))
        full[classes] = means @ transform
        # A class without training rows gets no centre: put it far away instead of at the origin.
        missing = np.setdiff1d(np.arange(len(full)), classes)
        full[missing] = 1e6
        return cls(transform=transform, centres=full, head=head)

    def score(self, features: Array) -> Array:
        z = _normalise(features) @ self.transform
        d2 = (z * z).sum(axis=1)[:, None] - 2.0 * z @ self.centres.T + (self.centres * self.centres).sum(axis=1)
        out: Array = d2.min(axis=1)
        return out

    def with_threshold(self, threshold: float | None) -> MahalanobisScorer:
        return replace(self, threshold=threshold)

    def save(self, model_dir: Path, meta: dict[str, Any]) -> None:
        np.savez_compressed(model_dir / OOD_ARRAYS, transform=self.transform.astype(np.float32),
                            centres=self.centres.astype(np.float32))
        (model_dir / OOD_META).write_text(json.dumps(
            {"method": "mahalanobis", "head": self.head, "threshold": self.threshold, **meta}, indent=2) + "\n",
            encoding="utf-8")


def load(model_dir: Path) -> MahalanobisScorer | None:
    """The model's distance scorer, or None where it abstains on softmax confidence (or predates scorers)."""
    meta_path, arrays_path = Path(model_dir) / OOD_META, Path(model_dir) / OOD_ARRAYS
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else None
    if meta is None or meta.get("method") != "mahalanobis" or not arrays_path.is_file():
        return None
    with np.load(arrays_path) as arrays:
        return MahalanobisScorer(transform=arrays["transform"].astype(np.float64),
                                 centres=arrays["centres"].astype(np.float64), head=str(meta["head"]),
                                 threshold=None if meta.get("threshold") is None else float(meta["threshold"]))


def auroc(in_scope: Array, out_of_scope: Array) -> float:
    """Area under the ROC curve of a score where higher means out of scope (training environment only)."""
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(out_of_scope, dtype=np.float64), np.asarray(in_scope, dtype=np.float64)
    return float(roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b]))


def fpr_at_recall(in_scope: Array, out_of_scope: Array, recall: float = 0.95) -> float:
    """Share of in-scope texts flagged at the threshold that catches `recall` of the out-of-scope ones."""
    thr = np.quantile(np.asarray(out_of_scope, dtype=np.float64), 1.0 - recall, method="lower")
    return float((np.asarray(in_scope) >= thr).mean())


def recall_at_false_alarm(in_scope: Array, out_of_scope: Array, false_alarm: float = DEFAULT_FALSE_ALARM) -> float:
    """Share of out-of-scope texts flagged at the threshold that flags `false_alarm` of the in-scope ones."""
    thr = np.quantile(np.asarray(in_scope, dtype=np.float64), 1.0 - false_alarm, method="higher")
    return float((np.asarray(out_of_scope) > thr).mean())


def detection_report(in_scope: Array, out_of_scope: Array) -> dict[str, float]:
    """AUROC, FPR at 95 % recall and recall at 3 % false alarm of one score (higher = out of scope)."""
    return {"auroc": round(auroc(in_scope, out_of_scope), 4),
            "fpr_at_95_recall": round(fpr_at_recall(in_scope, out_of_scope), 4),
            "recall_at_3pct_false_alarm": round(recall_at_false_alarm(in_scope, out_of_scope), 4)}
