"""Serve a model folder with onnxruntime and `tokenizers` only (no torch, no transformers).

`Classifier.load(dir).predict(texts)` returns, per text and per head, the label, the
calibrated confidence (softmax of logits / temperature), the top-3 and whether the model
abstains (confidence below the head's threshold). Runs in the stream environment.
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

from ml import layout
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
        return cls(model_dir, session, tokenizer, heads, temps, thresholds, max_length)

    def logits(self, texts: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Raw (uncalibrated) logits per head, in input order."""
        n = len(texts)
        out = {h: np.zeros((n, len(labels)), dtype=np.float32) for h, labels in self.heads.items()}
        if n == 0:
            return out
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
            results = self.session.run(self._outputs, {k: v for k, v in feeds.items() if k in self._inputs})
            for head, res in zip(self.heads, results, strict=True):
                out[head][idx] = res
        return out

    def probabilities(self, texts: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        """Calibrated probabilities per head, in input order."""
        return {h: softmax(lg, self.temperatures.get(h, 1.0)) for h, lg in self.logits(texts).items()}

    def predict(self, texts: Sequence[str]) -> BatchResult:
        start = time.perf_counter()
        preds = self.predictions(self.probabilities(texts))
        return BatchResult(predictions=preds, latency_ms=(time.perf_counter() - start) * 1000.0)

    def predictions(self, probs: dict[str, np.ndarray[Any, Any]]) -> list[dict[str, HeadPrediction]]:
        """Calibrated probabilities per head (rows in input order) -> label, confidence, top-3, abstained."""
        n = len(next(iter(probs.values()))) if probs else 0
        preds: list[dict[str, HeadPrediction]] = [{} for _ in range(n)]
        for head, labels in self.heads.items():
            p = probs[head]
            top = np.argsort(-p, axis=1)[:, :TOP_K]
            threshold = self.thresholds.get(head)
            for i in range(n):
                best = int(top[i, 0])
                conf = float(min(1.0, max(0.0, p[i, best])))
                preds[i][head] = HeadPrediction(
                    label=labels[best],
                    confidence=conf,
                    top_k=[LabelScore(label=labels[int(j)], score=float(min(1.0, p[i, j]))) for j in top[i]],
                    abstained=threshold is not None and conf < threshold,
                )
        return preds
