"""Evaluate a model folder on labelled data through `ml.serving` (what production runs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ml.calibrate import ece
from ml.data import DataError, Dataset
from ml.serving import Classifier, softmax


def evaluate(model_dir: Path, ds: Dataset, *, int8: bool = True, threads: int = 2,
             batch_size: int = 32) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and ECE per head; with out-of-scope rows, in-scope accuracy
    and out-of-scope recall as the model abstains when served (`Classifier.abstained`); throughput of
    the model on this data."""
    from sklearn.metrics import f1_score

    clf = Classifier.load(model_dir, threads=threads, int8=int8)
    common = [h for h in ds.heads if h in clf.heads]
    if not common:
        raise DataError(f"the data's label columns ({', '.join(ds.heads)}) match none of the model's heads "
                        f"({', '.join(clf.heads)}); pass --label-col with one of them")
    start = time.perf_counter()
    logits: dict[str, list[np.ndarray[Any, Any]]] = {h: [] for h in clf.heads}
    features: list[np.ndarray[Any, Any]] = []
    for i in range(0, len(ds), batch_size):
        batch, feats = clf.run(ds.texts[i : i + batch_size], features=clf.scorer is not None)
        for h, lg in batch.items():
            logits[h].append(lg)
        if feats is not None:
            features.append(feats)
    distances = clf.scorer.score(np.concatenate(features)) if clf.scorer is not None and features else None
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"model": str(model_dir), "rows": len(ds), "onnx": "int8" if int8 else "fp32",
                              "throughput_texts_per_s": round(len(ds) / seconds, 1) if seconds else None,
                              "heads": {}}
    is_ood = np.array(ds.ood)
    for head in common:
        labels = clf.heads[head]
        index = {lab: i for i, lab in enumerate(labels)}
        unknown = sorted({v for v in ds.labels[head] if v is not None and v not in index})
        if unknown:
            raise DataError(f"label {unknown[0]!r} in column {head!r} is not one the model knows; "
                            "relabel it or pass --ood-label if it means out of scope")
        y = np.array([index[v] if v is not None else -1 for v in ds.labels[head]])
        lg = np.concatenate(logits[head]) if logits[head] else np.zeros((0, len(labels)))
        probs = softmax(lg, clf.temperatures.get(head, 1.0))
        keep = y >= 0
        pred = probs.argmax(1)
        present = sorted(set(y[keep].tolist()))
        per_class = f1_score(y[keep], pred[keep], labels=present, average=None, zero_division=0) if keep.any() else []
        r: dict[str, Any] = {
            "rows": int(keep.sum()),
            "accuracy": float((pred[keep] == y[keep]).mean()) if keep.any() else None,
            "macro_f1": float(np.mean(per_class)) if keep.any() else None,
            "per_class_f1": {labels[c]: round(float(f), 4) for c, f in zip(present, per_class, strict=True)},
            "ece": ece(probs[keep], y[keep]),
            "ece_uncalibrated": ece(softmax(lg)[keep], y[keep]),
        }
        if is_ood.any() and not ds.labels[head][int(np.argmax(is_ood))]:
            answered = ~clf.abstained(head, probs.max(1), distances)
            by_distance = clf.scorer is not None and clf.scorer.head == head
            r["abstention"] = "mahalanobis" if by_distance else "softmax"
            r["threshold"] = clf.scorer.threshold if clf.scorer is not None and by_distance else \
                clf.thresholds.get(head)
            r["in_scope_accuracy"] = float(((pred == y) & answered)[keep].mean()) if keep.any() else None
            r["ood_recall"] = float((~answered)[is_ood].mean())
            r["ood_rows"] = int(is_ood.sum())
        result["heads"][head] = r
    return result
