"""Serve a model folder with onnxruntime and `tokenizers` only (no torch, no transformers).

`Classifier.load(dir).predict(texts)` returns, per text and per head, the label, the
calibrated confidence (softmax of logits / temperature), the top-3 and whether the model
abstains: on the out-of-scope head, where the model carries a distance scorer (`ml.ood`, the
default since models export their pooled features), when the text's distance to the nearest class
is above its threshold; otherwise when the confidence is below the head's threshold. Runs in the
stream environment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from ml import layout, ood
from triage.schemas import HeadPrediction, LabelScore

TOP_K = 3
# Texts are run in sub-batches of similar length so short texts are not padded to the longest.
# Measured on 2 shared cores (MiniLM int8, Banking77, batches of 32): sub-batches of 8-16 gave
# about 450-560 texts/s, sub-batches of 32-64 about 340-375 (more padding, activations out of cache).
MAX_SUB_BATCH = 16


@dataclass(frozen=True)
class BatchResult:
    """Predictions in input order, and the wall time of the whole batch."""

    predictions: list[dict[str, HeadPrediction]]
    latency_ms: float


def softmax(logits: np.ndarray[Any, Any], temperature: float = 1.0) -> np.ndarray[Any, Any]:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray[Any, Any] = e / e.sum(axis=-1, keepdims=True)
    return out


class Classifier:
    """A loaded model folder: one ONNX session, one tokenizer, every head."""

    def __init__(
        self,
        model_dir: Path,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        heads: dict[str, list[str]],
        temperatures: dict[str, float],
        thresholds: dict[str, float | None],
        max_length: int,
        scorer: ood.MahalanobisScorer | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.session = session
        self.tokenizer = tokenizer
        self.heads = heads
        self.temperatures = temperatures
        self.thresholds = thresholds
        self.max_length = max_length
        self._outputs = [f"logits_{h}" for h in heads]
        self._inputs = {i.name for i in session.get_inputs()}
        feature_out = [o for o in session.get_outputs() if o.name == ood.FEATURES_OUTPUT]
        self.has_features = bool(feature_out)
        self.hidden_size = int(feature_out[0].shape[-1]) if feature_out else 0
        self.scorer = scorer if self.has_features else None

    @classmethod
    def load(cls, model_dir: Path, threads: int = 2, int8: bool = True) -> Classifier:
        model_dir = Path(model_dir)
        layout.check_model_dir(model_dir)
        onnx_name = layout.ONNX_INT8 if int8 else layout.ONNX_FP32
        if not (model_dir / onnx_name).is_file():
            raise FileNotFoundError(f"{model_dir / onnx_name} is missing; re-export the model with `triage train`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(model_dir / onnx_name), opts, providers=["CPUExecutionProvider"])
        serving = layout.read_json(model_dir, layout.SERVING)
        max_length = int(serving.get("max_length", 128))
        tokenizer = Tokenizer.from_file(str(model_dir / layout.TOKENIZER))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        heads = layout.read_heads(model_dir)
        temps = {h: float(t) for h, t in layout.read_json(model_dir, layout.CALIBRATION)["temperature"].items()}
        raw_thr = layout.read_json(model_dir, layout.THRESHOLDS)
        thresholds = {h: (None if raw_thr.get(h) is None else float(raw_thr[h])) for h in heads}
        return cls(model_dir, session, tokenizer, heads, temps, thresholds, max_length, ood.load(model_dir))

    def logits(self, texts: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Raw (uncalibrated) logits per head, in input order."""
        return self.run(texts)[0]

    def features(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        """The pooled features per text (the graph's `features` output; models exported before it lack one)."""
        feats = self.run(texts, features=True)[1]
        if feats is None:
            raise ValueError(f"{self.model_dir}: the graph has no {ood.FEATURES_OUTPUT!r} output; re-export the "
                             "model with `triage train`")
        return feats

    def run(self, texts: Sequence[str], features: bool = False
            ) -> tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any] | None]:
        """Logits per head and, with `features`, the pooled features (None when the graph has none)."""
        n = len(texts)
        out = {h: np.zeros((n, len(labels)), dtype=np.float32) for h, labels in self.heads.items()}
        with_features = features and self.has_features
        names = [*self._outputs, ood.FEATURES_OUTPUT] if with_features else self._outputs
        feats = np.zeros((n, self.hidden_size), dtype=np.float32) if with_features else None
        if n == 0:
            return out, feats
        encs = self.tokenizer.encode_batch([t if t.strip() else "." for t in texts])
        order = sorted(range(n), key=lambda i: len(encs[i].ids))
        for start in range(0, n, MAX_SUB_BATCH):
            idx = order[start : start + MAX_SUB_BATCH]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                seq = encs[i].ids
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            results = self.session.run(names, {k: v for k, v in feeds.items() if k in self._inputs})
            for head, res in zip(self.heads, results, strict=False):
                out[head][idx] = res
            if feats is not None:
                feats[idx] = results[-1]
        return out, feats

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Calibrated probabilities per head, in input order."""
        return self._calibrated(self.logits(texts))

    def _calibrated(self, logits: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        return {h: softmax(lg, self.temperatures.get(h, 1.0)) for h, lg in logits.items()}

    def predict(self, texts: Sequence[str]) -> BatchResult:
        start = time.perf_counter()
        logits, feats = self.run(texts, features=self.scorer is not None)
        distances = self.scorer.score(feats) if self.scorer is not None and feats is not None and len(texts) else None
        preds = self.predictions(self._calibrated(logits), distances)
        return BatchResult(predictions=preds, latency_ms=(time.perf_counter() - start) * 1000.0)

    def abstained(self, head: str, confidence: np.ndarray[Any, Any],
                  distances: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        """Per row, whether the model abstains on `head`: the scorer's head by distance (when `distances` are
        given), any other head by calibrated confidence below the head's threshold."""
        if distances is not None and self.scorer is not None and head == self.scorer.head:
            threshold = self.scorer.threshold
            return distances > threshold if threshold is not None else np.zeros(len(distances), dtype=bool)
        limit = self.thresholds.get(head)
        return confidence < limit if limit is not None else np.zeros(len(confidence), dtype=bool)

    def predictions(self, probs: dict[str, np.ndarray[Any, Any]],
                    distances: np.ndarray[Any, Any] | None = None) -> list[dict[str, HeadPrediction]]:
        """Calibrated probabilities per head (rows in input order) -> label, confidence, top-3, abstained.

        With `distances` (the scorer's, per row), the scorer's head abstains above the scorer's threshold."""
        n = len(next(iter(probs.values()))) if probs else 0
        preds: list[dict[str, HeadPrediction]] = [{} for _ in range(n)]
        for head, labels in self.heads.items():
            p = probs[head]
            top = np.argsort(-p, axis=1)[:, :TOP_K]
            abstained = self.abstained(head, p.max(axis=1), distances)
            for i in range(n):
                best = int(top[i, 0])
                conf = float(min(1.0, max(0.0, p[i, best])))
                preds[i][head] = HeadPrediction(
                    label=labels[best],
                    confidence=conf,
                    top_k=[LabelScore(label=labels[int(j)], score=float(min(1.0, p[i, j]))) for j in top[i]],
                    abstained=bool(abstained[i]),
                )
        return preds
