"""ONNX export: dynamic axes, parity with torch, and a parity check that can fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from ml.export import ParityError, parity_check
from ml.modeling import load_trained


def test_onnx_accepts_any_batch_and_length(tiny_model: Path) -> None:
    sess = ort.InferenceSession(str(tiny_model / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    for batch, seq in ((1, 3), (7, 40), (2, 96)):
        ids = np.full((batch, seq), 5, dtype=np.int64)
        out = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert [o.shape for o in out] == [(batch, 18), (batch, 4), (batch, 32)]  # two heads, the features


def test_parity_holds_for_the_exported_model(tiny_model: Path) -> None:
    model = load_trained(tiny_model)
    texts = ["my card", "I was charged a fee twice and want a refund for it please", "help"] * 10
    report = parity_check(model, tiny_model, texts, {"intent": ["card_arrival"] * 30})
    assert report["intent"]["fp32_agreement"] >= 0.99
    assert report["intent"]["max_abs_logit_diff_fp32"] < 1e-3


def test_parity_check_fails_when_graph_and_weights_differ(tiny_model: Path) -> None:
    model = load_trained(tiny_model)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.heads.parameters():
            p.normal_(0, 1.0)
    texts = [f"ticket {i} about my card and a transfer that failed" * (1 + i % 3) for i in range(40)]
    with pytest.raises(ParityError, match="agrees with torch"):
        parity_check(model, tiny_model, texts)
