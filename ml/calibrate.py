"""Temperature scaling, expected calibration error, and the abstention threshold (numpy only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ml.serving import softmax

Array = np.ndarray[Any, Any]


def nll(logits: Array, y: Array, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def fit_temperature(logits: Array, y: Array) -> float:
    """The T > 0 minimising validation NLL of softmax(logits / T) (golden-section search on log T)."""
    if len(y) == 0:
        return 1.0
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, y, float(np.exp(a))), nll(logits, y, float(np.exp(b)))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, y, float(np.exp(a)))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, y, float(np.exp(b)))
    return float(np.exp((lo + hi) / 2))


def ece(probs: Array, y: Array, bins: int = 15) -> float:
    """Expected calibration error with `bins` equal-width confidence bins."""
    if len(y) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(total)


def abstention_threshold(conf: Array, correct: Array, is_ood: Array,
                         target_ood_recall: float | None = None) -> dict[str, Any]:
    """Pick the confidence threshold below which the model abstains.

    Default: maximise in-scope accuracy (abstaining counts as wrong) times out-of-scope recall
    (share of out-of-scope rows abstained on). With `target_ood_recall`: the lowest threshold
    that reaches it. Returns the threshold and both rates at it.
    """
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    is_ood = np.asarray(is_ood, dtype=bool)
    ins, oos = ~is_ood, is_ood
    if not oos.any() or not ins.any():
        reason = "validation has no out-of-scope rows" if not oos.any() else "validation has no in-scope rows"
        return {"threshold": None, "in_scope_accuracy": float(correct[ins].mean()) if ins.any() else None,
                "ood_recall": None, "reason": reason}
    candidates = np.unique(np.concatenate([[0.0], conf, [1.0 + 1e-9]]))
    best: dict[str, Any] | None = None
    for t in candidates:
        answered = conf >= t
        acc = float((correct & answered)[ins].mean())
        rec = float((~answered)[oos].mean())
        if target_ood_recall is not None:
            if rec >= target_ood_recall:
                return {"threshold": float(t), "in_scope_accuracy": acc, "ood_recall": rec,
                        "objective": "target_recall"}
            continue
        score = acc * rec
        if best is None or score > best["score"] + 1e-12:
            best = {"threshold": float(t), "in_scope_accuracy": acc, "ood_recall": rec, "score": score,
                    "objective": "accuracy_x_recall"}
    if best is None:
        return {"threshold": 1.0, "in_scope_accuracy": 0.0, "ood_recall": 1.0, "objective": "target_recall"}
    return best
